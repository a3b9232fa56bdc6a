"""The stdio reader survives damaged input: the real server process, bytes written to its
stdin by hand. After each damaged frame, the next requests are answered (the reader
resynchronises on the next header), and the log says in one line what was skipped."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def frame(body: bytes | dict[str, Any], header: bytes | None = None) -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    if header is None:
        header = b"Content-Length: %d\r\n\r\n" % len(data)
    return header + data


def request(rid: int, method: str = "workspace/executeCommand", params: Any = None) -> dict:
    if params is None:
        params = {"command": "starcoder.stats", "arguments": []}
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}


class Server:
    """``python -m starcoder_ls`` on pipes; a thread collects what it writes."""

    def __init__(self, log: Path) -> None:
        self.log = log
        env = {**os.environ, "STARCODER_LS_STATE_DIR": str(log.parent / "state")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "starcoder_ls", "--log-level", "INFO", "--log-file", str(log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.write(frame(request(0, "initialize", {"processId": None, "capabilities": {}})))
        assert self.wait_for(0) is not None
        self.write(frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))

    def _read(self) -> None:
        try:
            self._read_all()
        except (OSError, ValueError):  # the test closed the pipe on purpose
            return

    def _read_all(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = 0
            while True:
                line = out.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            self.messages.put(json.loads(out.read(length)))

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def wait_for(self, rid: int, timeout: float = 10.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if msg.get("id") == rid and "method" not in msg:
                return msg
        return None

    def answered(self, ids: range, timeout: float = 10.0) -> int:
        for rid in ids:
            self.write(frame(request(rid)))
        return sum(self.wait_for(rid, timeout) is not None for rid in ids)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.write(frame(request(999_999, "shutdown", None)))
            self.wait_for(999_999, 5)
            self.write(frame({"jsonrpc": "2.0", "method": "exit"}))
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "server.log")
    yield s
    s.stop()


BODY = json.dumps(request(100)).encode()
DID_OPEN = json.dumps(
    {
        "jsonrpc": "2.0",
        "method": "textDocument/didOpen",
        "params": {
            "textDocument": {
                "uri": "file:///big.py",
                "languageId": "python",
                "version": 1,
                "text": "x = 1\n" * 400_000,  # 2.4 MB
            }
        },
    }
).encode()

DAMAGED = [
    # (case, bytes, is the damaged message itself answered?, what the log says)
    ("header line over 1 MiB", b"X-Junk: " + b"a" * (1 << 20) + b"\r\n" + frame(BODY), True, "header block over"),
    ("no Content-Length", frame(BODY, b"Content-Type: application/json\r\n\r\n"), False, "without Content-Length"),
    ("negative", frame(BODY, b"Content-Length: -5\r\n\r\n"), False, "not a byte count"),
    ("non-numeric", frame(BODY, b"Content-Length: lots\r\n\r\n"), False, "not a byte count"),
    ("lower-case", frame(BODY, b"content-length: %d\r\n\r\n" % len(BODY)), True, ""),
    ("LF only", frame(BODY, b"Content-Length: %d\n\n" % len(BODY)), True, ""),
    ("too short", frame(BODY, b"Content-Length: %d\r\n\r\n" % (len(BODY) - 10)), False, "not JSON"),
    ("1.5 MB short on a 2.4 MB didOpen", frame(DID_OPEN, b"Content-Length: %d\r\n\r\n" % (len(DID_OPEN) - 1_500_000)), False, "not JSON"),
    ("Content-Length 10^12", frame(BODY, b"Content-Length: 1000000000000\r\n\r\n"), False, "over the limit"),
    ("garbage between frames", b"hello, world\r\n" + frame(BODY), True, "before a header"),
    ("not JSON", frame(b"{this is not json}"), False, "not JSON"),
]  # fmt: skip


@pytest.mark.parametrize(
    "damaged, answered, says", [pytest.param(d, a, s, id=c) for c, d, a, s in DAMAGED]
)
def test_a_damaged_frame_costs_that_frame_only(
    server: Server, damaged: bytes, answered: bool, says: str
) -> None:
    server.write(damaged)
    assert (server.wait_for(100, 3.0 if answered else 0.5) is not None) == answered
    assert server.answered(range(1, 6)) == 5
    assert server.proc.poll() is None
    log = server.log.read_text()
    assert says in log
    assert "Traceback" not in log


def test_an_overstated_content_length_is_recovered_when_the_bytes_stop(server: Server) -> None:
    """A client that says 40 bytes too many and then waits for its answer gets it (about a
    second later), and the session goes on."""
    server.write(frame(BODY, b"Content-Length: %d\r\n\r\n" % (len(BODY) + 40)))
    assert server.wait_for(100, 5.0) is not None
    assert server.answered(range(1, 6)) == 5
    assert "larger than its" in server.log.read_text()


def test_an_overstated_content_length_followed_by_the_next_frame(server: Server) -> None:
    server.write(frame(BODY, b"Content-Length: %d\r\n\r\n" % (len(BODY) + 5)) + frame(request(7)))
    assert server.wait_for(100, 5.0) is not None
    assert server.wait_for(7, 5.0) is not None


def test_input_that_ends_inside_a_message_exits_with_one_line(tmp_path: Path) -> None:
    s = Server(tmp_path / "server.log")
    s.write(b'Content-Length: 500\r\n\r\n{"jsonrpc":')
    assert s.proc.stdin is not None
    s.proc.stdin.close()
    assert s.proc.wait(10) == 0
    assert "stdin ended inside a message" in (tmp_path / "server.log").read_text()


# ------------------------------------------------------------------ the session around frames


def test_requests_after_shutdown_get_invalid_request_and_exit_is_clean(tmp_path: Path) -> None:
    s = Server(tmp_path / "server.log")
    s.write(frame(request(50, "shutdown", None)))
    assert s.wait_for(50) is not None
    s.write(frame(request(51)))
    answer = s.wait_for(51)
    assert answer is not None and answer["error"]["code"] == -32600
    assert "shutting down" in answer["error"]["message"]
    s.write(frame({"jsonrpc": "2.0", "method": "exit"}))
    assert s.proc.wait(10) == 0


def test_cancelling_a_finished_request_is_not_a_warning(server: Server) -> None:
    assert server.answered(range(1, 4)) == 3
    for rid in range(1, 4):  # as editors do when the answer arrived before the cancel
        server.write(frame({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": rid}}))
    assert server.answered(range(4, 6)) == 2
    log = server.log.read_text()
    assert "WARNING" not in log, log


def test_a_client_that_leaves_before_the_shutdown_reply_costs_one_log_line(
    tmp_path: Path,
) -> None:
    log = tmp_path / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "starcoder_ls", "--log-level", "INFO", "--log-file", str(log)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "STARCODER_LS_STATE_DIR": str(tmp_path / "state")},
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(frame(request(0, "initialize", {"processId": None, "capabilities": {}})))
    proc.stdin.flush()
    header = proc.stdout.readline()
    while proc.stdout.readline() not in (b"\r\n", b""):
        pass
    proc.stdout.read(int(header.split(b":")[1]))  # the initialize answer: the server is up
    proc.stdout.close()  # the editor is gone: nobody reads the answers any more
    proc.stdin.write(frame(request(60, "shutdown", None)))
    proc.stdin.write(frame({"jsonrpc": "2.0", "method": "exit"}))
    proc.stdin.flush()
    assert proc.wait(10) == 0
    text = log.read_text()
    assert "the client has gone away" in text
    assert "Traceback" not in text and "BrokenPipeError" not in text


def test_keystrokes_in_a_10_mb_document_do_not_block_the_server(server: Server) -> None:
    """Each keystroke (a didChange) followed by a request: the answer comes in milliseconds,
    not after the whole document was reprocessed."""
    uri = "file:///tmp/huge.py"
    text = "x = 1\n" * (10 * 1024 * 1024 // 6)
    doc = {"uri": uri, "languageId": "python", "version": 1, "text": text}
    server.write(
        frame({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": doc}})
    )
    assert server.answered(range(1, 2), timeout=30) == 1
    took = []
    for i in range(20):
        at = {"line": 800_000, "character": i}
        change = {
            "textDocument": {"uri": uri, "version": i + 2},
            "contentChanges": [{"range": {"start": at, "end": at}, "text": "y"}],
        }
        started = time.perf_counter()
        server.write(
            frame({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": change})
        )
        assert server.answered(range(100 + i, 101 + i)) == 1
        took.append(time.perf_counter() - started)
    assert sorted(took)[10] < 0.05, f"median {sorted(took)[10] * 1000:.0f} ms per keystroke"
