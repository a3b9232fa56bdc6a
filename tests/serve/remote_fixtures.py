"""Stand-ins and helpers for the end-to-end tests of the remote backends through the language
server (``test_lsp_remote_e2e.py``).

* ``FakeRemote``: one loopback HTTP server that speaks three wire formats the way their real
  servers document them, and validates each request as they would: text-generation-inference
  (``POST /generate``), Ollama (``POST /api/generate``) and the Hugging Face inference API
  (``POST /models/<owner>/<name>``, TGI's body, a list as the answer, a token required). A
  request the real server would refuse gets the real server's status and error shape, so a
  client that sends it gets no completion. Every request is recorded for the tests to inspect.
* ``LlamaCppPythonServer``: ``python -m llama_cpp.server`` (llama-cpp-python's own
  OpenAI-compatible server) on a free loopback port, its output in a file.
* ``LlamaServer``: llama.cpp's own ``llama-server``, as ``scripts/build_llama_server.py``
  built it, on a free loopback port.
* ``Background``: a slow start (a server loading a model) on a thread, so that it overlaps
  with the tests that run meanwhile.
* ``counter``: one sample of a Prometheus text exposition.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import httpx
from wire_formats import OLLAMA_FIELDS, OLLAMA_OPTIONS

# ----------------------------------------------------------------------------- the wire formats

TGI_TOP_LEVEL = {"inputs", "parameters", "stream"}
TGI_PARAMETERS = {
    "adapter_id", "best_of", "decoder_input_details", "details", "do_sample",
    "frequency_penalty", "grammar", "max_new_tokens", "repetition_penalty", "return_full_text",
    "seed", "stop", "temperature", "top_k", "top_n_tokens", "top_p", "truncate", "typical_p",
    "watermark",
}  # fmt: skip
"""text-generation-inference's ``GenerateRequest`` and ``GenerateParameters``."""
TGI_MAX_STOP_SEQUENCES = 4
"""TGI's default ``--max-stop-sequences``."""
TGI_MAX_NEW_TOKENS = 1024
"""A modest ``--max-total-tokens`` budget for the answer."""
HF_TOP_LEVEL = {*TGI_TOP_LEVEL, "options"}
"""The inference API also takes ``options: {use_cache, wait_for_model}``."""


class Refused(Exception):
    """A request the real server refuses: the status and the body it answers with."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(s, str) for s in value)


def check_tgi(body: Any, top_level: set[str] = TGI_TOP_LEVEL) -> dict[str, Any]:
    """TGI's request validation (``router/src/validation.rs``): 422 with ``{error,
    error_type}``. Fields outside the documented ones are refused too, so that a misspelt
    parameter cannot pass unnoticed. Returns the parameters."""

    def refuse(message: str) -> Refused:
        return Refused(422, {"error": message, "error_type": "validation"})

    if not isinstance(body, dict):
        raise refuse("Failed to deserialize the JSON body into the target type")
    if extra := set(body) - top_level:
        raise refuse(f"unknown fields {sorted(extra)}")
    inputs = body.get("inputs")
    if not isinstance(inputs, str):
        raise refuse("missing field `inputs`")
    if not inputs:
        raise refuse("`inputs` cannot be empty")
    if body.get("stream", False) is not False:
        raise refuse("this stand-in answers /generate only (no token stream)")
    p = body.get("parameters", {})
    if not isinstance(p, dict):
        raise refuse("`parameters` must be an object")
    if extra := set(p) - TGI_PARAMETERS:
        raise refuse(f"unknown parameters {sorted(extra)}")
    for name in ("do_sample", "details", "return_full_text", "decoder_input_details"):
        if name in p and not isinstance(p[name], bool):
            raise refuse(f"`{name}` must be a boolean")
    temperature, top_p, top_k = p.get("temperature"), p.get("top_p"), p.get("top_k")
    if temperature is not None and not (_is_number(temperature) and temperature > 0):
        raise refuse("`temperature` must be strictly positive")
    if top_p is not None and not (_is_number(top_p) and 0 < top_p < 1):
        raise refuse("`top_p` must be > 0.0 and < 1.0")
    if top_k is not None and not (_is_int(top_k) and top_k > 0):
        raise refuse("`top_k` must be strictly positive")
    new = p.get("max_new_tokens")
    if new is not None and (not _is_int(new) or new <= 0):
        raise refuse("`max_new_tokens` must be strictly positive")
    if new is not None and new > TGI_MAX_NEW_TOKENS:
        raise refuse(f"`max_new_tokens` must be <= {TGI_MAX_NEW_TOKENS}. Given: {new}")
    stop = p.get("stop", [])
    if not _is_strings(stop):
        raise refuse("`stop` must be a list of strings")
    if len(stop) > TGI_MAX_STOP_SEQUENCES:
        raise refuse(
            f"`stop` supports up to {TGI_MAX_STOP_SEQUENCES} stop sequences. Given: {len(stop)}"
        )
    return p


def check_ollama(body: Any, models: set[str]) -> dict[str, Any]:
    """Ollama's ``/api/generate`` checks: 400 ``{error}`` for a malformed body, 404 for a model
    that is not pulled. Returns the options."""
    if not isinstance(body, dict):
        raise Refused(400, {"error": "invalid request body"})
    if extra := set(body) - OLLAMA_FIELDS:
        raise Refused(400, {"error": f"unknown fields {sorted(extra)}"})
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise Refused(400, {"error": "model is required"})
    if model not in models:
        raise Refused(404, {"error": f"model '{model}' not found, try pulling it first"})
    if not isinstance(body.get("prompt", ""), str):
        raise Refused(400, {"error": "prompt must be a string"})
    for name in ("raw", "stream"):
        if name in body and not isinstance(body[name], bool):
            raise Refused(400, {"error": f"{name} must be a boolean"})
    options = body.get("options", {})
    if not isinstance(options, dict):
        raise Refused(400, {"error": "options must be an object"})
    if extra := set(options) - OLLAMA_OPTIONS:
        raise Refused(400, {"error": f"invalid options {sorted(extra)}"})
    for name in ("num_predict", "top_k", "seed", "num_ctx"):
        if name in options and not _is_int(options[name]):
            raise Refused(400, {"error": f"option {name} must be an integer"})
    for name in ("temperature", "top_p", "min_p"):
        if name in options and not _is_number(options[name]):
            raise Refused(400, {"error": f"option {name} must be a number"})
    if "stop" in options and not _is_strings(options["stop"]):
        raise Refused(400, {"error": "option stop must be a list of strings"})
    return options


# -------------------------------------------------------------------------- the stand-in server


@dataclass
class Seen:
    """One request as the stand-in received it, and what it answered."""

    path: str
    headers: dict[str, str]
    body: Any
    status: int = 0


@dataclass
class FakeRemote:
    """TGI, Ollama and the Hugging Face inference API on one loopback port."""

    reply: str = "return a + b"
    ollama_models: set[str] = field(default_factory=lambda: {"starcoder2:3b"})
    hf_token_prefix: str = "hf_"
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        remote = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real servers do
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw
                seen = Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                remote.seen.append(seen)
                try:
                    seen.status, answer, kind = 200, *remote.answer(seen)
                except Refused as exc:
                    seen.status, answer, kind = exc.status, exc.body, "application/json"
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(seen.status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def answer(self, seen: Seen) -> tuple[Any, str]:
        """The body and content type for a request the server accepts (raises ``Refused``)."""
        if seen.headers.get("content-type", "").split(";")[0] != "application/json":
            raise Refused(415, {"error": "Expected request with `Content-Type: application/json`"})
        if seen.path == "/generate":
            params = check_tgi(seen.body)
            return self._tgi_answer(seen.body["inputs"], params), "application/json"
        if seen.path == "/api/generate":
            check_ollama(seen.body, self.ollama_models)
            return self._ollama_answer(seen.body)
        if re.fullmatch(r"/models/[\w.-]+(/[\w.-]+)?", seen.path):
            token = seen.headers.get("authorization", "")
            if not token.startswith(f"Bearer {self.hf_token_prefix}"):
                raise Refused(401, {"error": "Invalid credentials in Authorization header"})
            params = check_tgi(seen.body, HF_TOP_LEVEL)
            answer = self._tgi_answer(seen.body["inputs"], params, full_by_default=True)
            return [answer], "application/json"
        raise Refused(404, {"error": f"no route {seen.path}"})

    def _tgi_answer(
        self, inputs: str, params: dict[str, Any], *, full_by_default: bool = False
    ) -> dict[str, Any]:
        text = self.reply
        # TGI's default is false, the inference API's true: the prompt comes back in front.
        full = params.get("return_full_text", full_by_default)
        answer: dict[str, Any] = {"generated_text": inputs + text if full else text}
        if params.get("details"):
            answer["details"] = {
                "finish_reason": "eos_token",
                "generated_tokens": len(text.split()),
                "seed": None,
            }
        return answer

    def _ollama_answer(self, body: dict[str, Any]) -> tuple[Any, str]:
        done = {
            "model": body["model"],
            "created_at": "2025-01-01T00:00:00.000000Z",
            "response": self.reply,
            "done": True,
            "done_reason": "stop",
            "total_duration": 1000,
            "load_duration": 10,
            "prompt_eval_count": len(str(body.get("prompt", "")).split()),
            "prompt_eval_duration": 100,
            "eval_count": len(self.reply.split()),
            "eval_duration": 200,
        }
        if body.get("stream", True) is False:
            return done, "application/json"
        # Ollama streams by default: one JSON object per line, the text in pieces.
        lines = [
            {"model": body["model"], "created_at": done["created_at"], "response": w, "done": False}
            for w in re.findall(r"\S+\s*", self.reply)
        ]
        lines.append({**done, "response": ""})
        ndjson = "".join(json.dumps(x) + "\n" for x in lines).encode()
        return ndjson, "application/x-ndjson"

    def requests(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# -------------------------------------------------------------------- llama-cpp-python's server


P = TypeVar("P", bound="ServerProcess")


class ServerProcess:
    """A server program on a free loopback port, its output in a file; ready once ``ready``
    (a GET path) answers 200."""

    name = "server"
    ready = "/health"

    def __init__(self, command: list[str], *, port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(command, stdout=self._out, stderr=subprocess.STDOUT)

    def wait_ready(self: P, timeout: float = 60.0) -> P:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}{self.ready}", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} not ready in {timeout} s:\n{self.output()}")

    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


class LlamaCppPythonServer(ServerProcess):
    """``python -m llama_cpp.server`` with one GGUF model, on a free loopback port."""

    name = "llama_cpp.server"
    ready = "/v1/models"

    def __init__(self, model: Path, *, port: int, log: Path, n_ctx: int = 512) -> None:
        super().__init__(
            [
                sys.executable, "-m", "starcoder_ls.backends.cpu_select", "run", "llama_cpp.server", "--model", str(model),
                "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
                "--n_threads", "1",
            ],
            port=port,
            log=log,
        )  # fmt: skip


# ------------------------------------------------------------------------ llama.cpp's llama-server


def llama_server_binary() -> Path:
    """The ``llama-server`` built for this machine; skips the test, saying why, when there is
    none (no C++ toolchain, or the build has not run)."""
    import pytest

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    try:
        import build_llama_server
    finally:
        sys.path.pop(0)
    if reason := build_llama_server.unavailable_reason():
        pytest.skip(reason)
    return build_llama_server.launch_dir() / "llama-server"


class LlamaServer(ServerProcess):
    """``llama-server -m MODEL`` on a free loopback port with the given extra flags."""

    name = "llama-server"

    def __init__(self, model: Path, *, port: int, log: Path, flags: tuple[str, ...] = ()) -> None:
        super().__init__(
            [str(llama_server_binary()), "-m", str(model), "--host", "127.0.0.1",
             "--port", str(port), "-t", "1", "--no-webui", *flags],
            port=port,
            log=log,
        )  # fmt: skip

    def infill(self, body: dict[str, Any]) -> tuple[int, Any]:
        response = httpx.post(f"{self.url}/infill", json=body, timeout=60, trust_env=False)
        return response.status_code, response.json()


# ---------------------------------------------------------------------------------- slow starts


class Stoppable(Protocol):
    def stop(self) -> Any: ...


S = TypeVar("S", bound=Stoppable)


class Background(Generic[S]):
    """A server started on a thread: ``result()`` waits for it (and raises what its start
    raised); ``stop()`` stops it once it is up, whether or not anyone waited for it."""

    def __init__(self, start: Callable[[], S]) -> None:
        self._future: Future[S] = Future()
        self._thread = threading.Thread(target=self._run, args=(start,), daemon=True)
        self._thread.start()

    def _run(self, start: Callable[[], S]) -> None:
        try:
            self._future.set_result(start())
        except BaseException as exc:
            self._future.set_exception(exc)

    def result(self, timeout: float = 300.0) -> S:
        return self._future.result(timeout)

    def stop(self) -> None:
        self._thread.join()
        if self._future.exception() is None:
            self._future.result().stop()


# -------------------------------------------------------------------------------------- metrics


def counter(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition (0 when it is absent)."""
    for line in exposition.splitlines():
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line.strip())
        if not m or m[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m[2] or ""))
        if found == labels:
            return float(m[3])
    return 0.0
