"""Fixtures for the backend tests: the bundled model loaded once per session, FIM prompts in its
format, a cancel token that fires at a chosen point, and a real local HTTP server standing in
for the remote completion servers (which cannot run here)."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from starcoder_ls.types import CancelToken, FimInput, Prompt

STARCODER_STOPS = ("<|endoftext|>", "<fim_pad>", "<file_sep>")


@pytest.fixture
def fim() -> Callable[..., Prompt]:
    return fim_prompt


@pytest.fixture
def raw() -> Callable[..., Prompt]:
    return raw_prompt


@pytest.fixture
def cancel_after() -> Callable[[int], CancelToken]:
    return CancelAfter


def fim_prompt(prefix: str, suffix: str = "", stop: tuple[str, ...] = STARCODER_STOPS) -> Prompt:
    """A StarCoder PSM prompt, the format the bundled model was trained on."""
    return Prompt(
        text=f"<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>",
        family="starcoder",
        stop=stop,
        fim=FimInput(prefix=prefix, suffix=suffix),
    )


def raw_prompt(text: str, stop: tuple[str, ...] = STARCODER_STOPS) -> Prompt:
    return Prompt(text=text, family="starcoder", stop=stop, fim=FimInput(prefix=text, suffix=""))


class CancelAfter(CancelToken):
    """Cancelled from the ``n``-th time a backend looks at it on: the server cancelling a
    request at a precise point of a generation, without depending on timing."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.looks = 0

    @property
    def cancelled(self) -> bool:
        self.looks += 1
        if self.looks >= self.n:
            self.cancel()
        return super().cancelled


@pytest.fixture(scope="session")
def gguf_backend() -> Iterator[Any]:
    from starcoder_ls.backends import create_local_backend as create_backend
    from starcoder_ls.settings import Settings

    backend = create_backend(Settings(backend="llamacpp", n_threads=1))
    yield backend
    backend.close()


# ------------------------------------------------------------------ fake server


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


Answer = tuple[int, Any, dict[str, str]]
"""Status, body (JSON-serialisable, or bytes sent as they are) and extra headers."""
Handler = Callable[[Seen, "Conn"], "Answer | tuple[int, Any] | None"]


class Conn:
    """What a handler may do with the client connection while it "generates"."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def generate_for(self, seconds: float) -> bool:
        """Stay busy up to ``seconds``; False as soon as the client disconnects (which is how a
        real server learns to abort the generation)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            readable, _, _ = select.select([self.sock], [], [], 0.01)
            if readable:
                try:
                    if self.sock.recv(1, socket.MSG_PEEK) == b"":
                        return False
                except OSError:
                    return False
        return True


class FakeServer:
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.handler: Handler = lambda seen, conn: (200, {})
        self.get_routes: dict[str, tuple[int, Any]] = {
            # What llama-server says of itself (its GET /props, abridged).
            "/props": (
                200,
                {"default_generation_settings": {"n_ctx": 4096}, "model_path": "m.gguf"},
            )
        }
        """Answers to GET requests, by path (404 for the rest); they are not in ``seen``."""
        self.gets: list[str] = []
        self.disconnects = 0
        self.connections = 0
        server = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
            disable_nagle_algorithm = True  # as real servers do; else 40 ms delayed-ACK stalls

            def setup(self) -> None:
                super().setup()
                server.connections += 1

            def do_GET(self) -> None:
                server.gets.append(self.path)
                status, payload = server.get_routes.get(self.path, (404, {"error": "not found"}))
                self._send(status, payload)

            def _send(
                self, status: int, payload: Any, headers: dict[str, str] | None = None
            ) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    server.disconnects += 1

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                seen = Seen(
                    "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                server.seen.append(seen)
                answer = server.handler(seen, Conn(self.connection))
                if answer is None:  # the client went away
                    server.disconnects += 1
                    self.close_connection = True
                    return
                status, payload, *extra = answer
                self._send(status, payload, extra[0] if extra else None)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    server = FakeServer()
    yield server
    server.close()


@pytest.fixture
def free_port() -> int:
    """A local port with nothing listening (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
