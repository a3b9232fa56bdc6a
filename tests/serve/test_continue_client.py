"""Continue against ``starcoder-ls serve``, with Continue's own client code: its published
OpenAI adapter (``@continuedev/openai-adapters``, pinned in ``continue/package.json``) run by
Node, as Continue's autocomplete runs it. FIM requests go to ``POST /v1/fim/completions``
(Mistral's FIM API, streamed, read as chat-completion chunks); plain completions to
``POST /v1/completions``. Both must give the served model's own greedy completion."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import ServeProcess, keyed_serve

from starcoder_ls.backends.http_dialects import openai_body
from starcoder_ls.backends.llamacpp import LlamaCppBackend
from starcoder_ls.prompt.templates import get_template, render
from starcoder_ls.types import CancelToken, FimInput, GenerationParams, Prompt

CLIENT = Path(__file__).resolve().parent / "continue"
KEY = "sk-continue-test-4d2c9b"
PREFIX = "import os\n\n\ndef read_config(path):\n    "
SUFFIX = "\n\n\ndef main():\n    pass\n"


@pytest.fixture(scope="module")
def node_client() -> Path:
    """Continue's adapter installed from npm (once, from the lock file)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed to run Continue's client (Node 20+)")
    if not (CLIENT / "node_modules" / "@continuedev" / "openai-adapters").is_dir():
        ci = subprocess.run(
            ["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund"],
            cwd=CLIENT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if ci.returncode != 0:
            pytest.skip(f"npm ci failed (no registry?): {ci.stderr[-400:]}")
    return CLIENT / "client.mjs"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    proc = keyed_serve("llamacpp", tmp_path_factory.mktemp("serve"), KEY)
    yield proc
    proc.stop()


def continue_client(node_client: Path, url: str, key: str, **request: Any) -> Any:
    """What Continue's adapter got from the server at ``url`` (or the error it raised)."""
    done = subprocess.run(
        ["node", str(node_client), f"{url}/v1/", key, "", json.dumps(request)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def greedy(reference: LlamaCppBackend, prefix: str, suffix: str, n: int) -> str:
    template = get_template("starcoder-ls")
    fim = FimInput(prefix=prefix, suffix=suffix)
    text = render(fim, "starcoder-ls")
    prompt = Prompt(text=text, family="starcoder-ls", stop=template.stop, fim=fim)
    return reference.generate(prompt, GenerationParams(max_tokens=n), CancelToken()).text


def test_continue_fim_and_completions_get_the_models_completion(
    node_client: Path, server: ServeProcess, reference: LlamaCppBackend
) -> None:
    out = continue_client(
        node_client, server.url, KEY, prefix=PREFIX, suffix=SUFFIX, max_tokens=24, stop=[]
    )
    assert "error" not in out, out
    expected = greedy(reference, PREFIX, SUFFIX, 24)
    assert expected.strip()
    # Streamed as chat-completion chunks: the role first, text in deltas, a finish reason last.
    chunks = out["fim"]["chunks"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert out["fim"]["text"] == expected
    # The same prompt through OpenAI's completions route with a suffix.
    assert out["completion"]["text"] == expected
    # Not streamed: one chat completion, with usage, as Mistral's API answers.
    whole = httpx.post(
        f"{server.url}/v1/fim/completions",
        json={"prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 24, "temperature": 0},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=60,
    ).json()
    assert whole["object"] == "chat.completion"
    assert whole["choices"][0]["message"] == {"role": "assistant", "content": expected}
    assert whole["usage"]["completion_tokens"] <= 24 < whole["usage"]["total_tokens"]


def test_continue_stop_words_and_a_wrong_key(
    node_client: Path, server: ServeProcess, reference: LlamaCppBackend
) -> None:
    expected = greedy(reference, PREFIX, SUFFIX, 24)
    word = expected.strip().split()[1] if len(expected.split()) > 1 else expected.strip()[:2]
    out = continue_client(
        node_client, server.url, KEY, prefix=PREFIX, suffix=SUFFIX, max_tokens=24, stop=[word]
    )
    assert out["fim"]["text"] == expected[: expected.index(word)]
    assert out["fim"]["chunks"][-1]["choices"][0]["finish_reason"] == "stop"
    refused = continue_client(
        node_client, server.url, "sk-wrong", prefix=PREFIX, suffix=SUFFIX, max_tokens=8, stop=[]
    )
    assert "401" in refused["error"] or "API key" in refused["error"], refused


class Capture:
    """A loopback server that records each request body and answers it validly (a text
    completion, or a one-chunk FIM stream)."""

    def __init__(self) -> None:
        self.bodies: dict[str, dict[str, Any]] = {}
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                bodies[self.path] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path.endswith("/fim/completions"):
                    chunk = {"object": "chat.completion.chunk", "choices": [
                        {"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}]}  # fmt: skip
                    data = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
                else:
                    answer = {"object": "text_completion", "choices": [
                        {"index": 0, "text": "x", "finish_reason": "stop"}]}  # fmt: skip
                    data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_the_openai_dialect_asks_as_continue_does(node_client: Path) -> None:
    # What Continue's adapter sends to /v1/completions, beside what the starcoder-ls client's
    # openai dialect sends for the same request: the same fields, of the same types (the
    # dialect adds top_p, which the adapter passes on when it is set).
    capture = Capture()
    try:
        request = {"prefix": PREFIX, "suffix": SUFFIX, "max_tokens": 16, "stop": ["\n\n"]}
        assert "error" not in continue_client(node_client, capture.url, KEY, **request)
    finally:
        capture.httpd.shutdown()
    theirs = capture.bodies["/v1/completions"]
    assert capture.bodies["/v1/fim/completions"]["suffix"] == SUFFIX
    prompt = Prompt(text=PREFIX, family="starcoder", stop=(), fim=FimInput(PREFIX, SUFFIX))
    ours = openai_body(prompt, GenerationParams(max_tokens=16, stop=("\n\n",)), "m")
    assert set(ours) - {"top_p"} <= set(theirs)
    for key in set(ours) & set(theirs):
        assert type(ours[key]) is type(theirs[key]) or {type(ours[key]), type(theirs[key])} <= {
            int,
            float,
        }, key
    assert ours["stop"] == theirs["stop"] and ours["stream"] is theirs["stream"] is False
