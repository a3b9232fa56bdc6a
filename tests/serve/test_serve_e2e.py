"""``starcoder-ls serve`` end to end, over real HTTP on loopback: keys, both completion APIs
(whole and streamed) with the bundled model, limits and bad input, the queue, cancellation
when a client goes away, timeouts, metrics, TLS and a graceful shutdown."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import ServeProcess
from serve_helpers import key_file as write_key_file
from starcoder_ls.models import BUNDLED_GGUF

from starcoder_ls.backends.llamacpp import LlamaCppBackend
from starcoder_ls.prompt.templates import render
from starcoder_ls.types import CancelToken, FimInput, GenerationParams, Prompt, Segment

KEY = "team-key-0123456789abcdef"
OTHER_KEY = "second-key-fedcba9876543210"
AUTH = {"Authorization": f"Bearer {KEY}"}
PREFIX = "def add(a, b):\n    return "
CLEAN_EXIT = (0, -signal.SIGTERM)
"""uvicorn ends by raising the signal it stopped for again, as a process stopped by it would."""
SUFFIX = "\n\n\ndef sub(a, b):\n    return a - b\n"


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_key_file(tmp_path_factory.mktemp("keys"), KEY)


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory, key_file: Path) -> Iterator[ServeProcess]:
    """The bundled GGUF model behind a key."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    server = ServeProcess(
        ["--backend", "llamacpp", "--api-key-file", str(key_file), "--body-timeout", "1"], log=log
    )
    yield server
    server.stop()


def expected(
    backend: LlamaCppBackend, text: str, max_tokens: int, stop: tuple[str, ...] = ()
) -> str:
    from starcoder_ls.prompt.templates import get_template

    prompt = Prompt(
        text=text,
        family="starcoder-ls",
        stop=get_template("starcoder-ls").stop,
        fim=FimInput(prefix="", suffix=""),
    )
    params = GenerationParams(max_tokens=max_tokens, stop=stop)
    return backend.generate(prompt, params, CancelToken()).text


def post(server: ServeProcess, route: str, body: Any, **kw: Any) -> httpx.Response:
    kw.setdefault("headers", AUTH)
    return httpx.post(f"{server.url}{route}", json=body, timeout=30, **kw)


def events(response: httpx.Response) -> list[Any]:
    out = []
    for line in response.text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def metric(server: ServeProcess, name: str, **labels: str) -> float:
    text = httpx.get(f"{server.url}/metrics", headers=AUTH, timeout=10).text
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


# ---------------------------------------------------------------------------- keys


def test_keys_missing_wrong_and_right(llama: ServeProcess) -> None:
    body = {"prompt": "import os\n", "max_tokens": 4}
    missing = post(llama, "/v1/completions", body, headers={})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in missing.json()["error"]["message"]
    wrong = post(llama, "/v1/completions", body, headers={"Authorization": "Bearer nope-" + KEY})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "invalid API key"
    basic = post(llama, "/v1/completions", body, headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401
    assert post(llama, "/v1/completions", body).status_code == 200
    # A key in the URL is refused, and the access log masks it.
    in_url = httpx.get(f"{llama.url}/v1/models?api_key={KEY}&limit=2")
    assert in_url.status_code == 401
    assert "a key in the URL is not accepted" in in_url.json()["error"]["message"]
    deadline = time.monotonic() + 2
    while "/v1/models?api_key=***&limit=2" not in llama.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "/v1/models?api_key=***&limit=2" in llama.output()
    for route in ("/v1/models", "/metrics"):
        assert httpx.get(f"{llama.url}{route}").status_code == 401
        assert httpx.get(f"{llama.url}{route}", headers=AUTH).status_code == 200
    assert httpx.get(f"{llama.url}/health").json()["status"] == "ok"  # for load balancers
    assert KEY not in llama.output()
    assert "nope-" not in llama.output()


def test_key_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(KEY + "\n")
    server = ServeProcess(
        ["--backend", "test", "--api-key-file", str(keys)],
        log=tmp_path / "serve.log",
        env={"STARCODER_LS_API_KEYS": "from-the-environment-0001"},
    )
    try:
        models = f"{server.url}/v1/models"

        def status(key: str) -> int:
            return httpx.get(models, headers={"Authorization": f"Bearer {key}"}).status_code

        assert (status(KEY), status(OTHER_KEY), status("from-the-environment-0001")) == (
            200,
            401,
            200,
        )
        time.sleep(1.1)  # a new modification time, and past the once-a-second look
        keys.write_text(OTHER_KEY + "\n")
        deadline = time.monotonic() + 5
        while status(OTHER_KEY) != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (status(KEY), status(OTHER_KEY)) == (401, 200)
    finally:
        server.stop()


def test_an_emptied_key_file_never_opens_the_server(tmp_path: Path) -> None:
    """Emptying (or deleting) the key file keeps the last keys in force and says so in the log;
    a key written back afterwards is taken as usual."""
    keys = write_key_file(tmp_path, KEY)
    server = ServeProcess(
        ["--backend", "test", "--api-key-file", str(keys)], log=tmp_path / "serve.log"
    )
    models = f"{server.url}/v1/models"

    def status(key: str | None) -> int:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.get(models, headers=headers).status_code

    try:
        assert (status(None), status(KEY)) == (401, 200)
        time.sleep(1.1)
        keys.write_text("")  # `: > keys`
        deadline = time.monotonic() + 3
        while "now holds no key" not in server.output() and time.monotonic() < deadline:
            status(None)  # a request makes the server look at the file
            time.sleep(0.2)
        assert "now holds no key; keeping the 1 key(s) in force" in server.output()
        assert (status(None), status("x" * 20), status(KEY)) == (401, 401, 200)
        keys.unlink()
        time.sleep(1.1)
        assert (status(None), status(KEY)) == (401, 200)
        assert "cannot read the API key file" in server.output()
        keys.write_text(OTHER_KEY + "\n")
        deadline = time.monotonic() + 5
        while status(OTHER_KEY) != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (status(None), status(KEY), status(OTHER_KEY)) == (401, 401, 200)
        assert KEY not in server.output() and OTHER_KEY not in server.output()
    finally:
        server.stop()


# ------------------------------------------------------------------ the two APIs


def test_openai_completion_is_the_models_greedy_output(
    llama: ServeProcess, reference: LlamaCppBackend
) -> None:
    answer = post(
        llama,
        "/v1/completions",
        {"prompt": "import os\nimport ", "max_tokens": 12, "temperature": 0},
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["object"] == "text_completion"
    assert data["model"] == "starcoder-ls-tiny"
    assert data["choices"][0]["text"] == expected(reference, "import os\nimport ", 12)
    assert data["choices"][0]["finish_reason"] in ("stop", "length")
    assert data["usage"]["completion_tokens"] > 0
    assert data["usage"]["total_tokens"] == (
        data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"]
    )


def test_suffix_makes_a_fim_prompt_in_the_models_format(
    llama: ServeProcess, reference: LlamaCppBackend
) -> None:
    body = {"prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 16, "temperature": 0, "stop": ["\n"]}
    text = post(llama, "/v1/completions", body).json()["choices"][0]["text"]
    fim = render(FimInput(prefix=PREFIX, suffix=SUFFIX), "starcoder-ls")
    assert text == expected(reference, fim, 16, ("\n",))
    assert "\n" not in text


def test_openai_stream_carries_the_same_text(llama: ServeProcess) -> None:
    body = {"prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 24, "temperature": 0}
    whole = post(llama, "/v1/completions", body).json()
    stream = post(
        llama,
        "/v1/completions",
        {**body, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert stream.headers["content-type"].startswith("text/event-stream")
    got = events(stream)
    assert got[-1] == "[DONE]"
    usage = got[-2]
    assert usage["choices"] == [] and usage["usage"] == whole["usage"]
    chunks = got[:-2]
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]
    assert len(chunks) > 2  # it came in pieces


def test_n_choices_and_seeded_sampling(llama: ServeProcess) -> None:
    body = {"prompt": "def ", "max_tokens": 8, "temperature": 1.5, "n": 3, "seed": 7}
    first = post(llama, "/v1/completions", body).json()
    again = post(llama, "/v1/completions", body).json()
    assert [c["index"] for c in first["choices"]] == [0, 1, 2]
    assert [c["text"] for c in first["choices"]] == [c["text"] for c in again["choices"]]
    assert post(llama, "/v1/completions", {**body, "n": 5}).status_code == 400  # --max-n 4


def test_infill_builds_the_prompt_from_its_parts(
    llama: ServeProcess, reference: LlamaCppBackend
) -> None:
    extra = [{"filename": "calc/util.py", "text": "def mul(a, b):\n    return a * b\n"}]
    body = {
        "input_prefix": PREFIX,
        "input_suffix": SUFFIX,
        "input_extra": extra,
        "n_predict": 12,
        "temperature": 0,
    }
    data = post(llama, "/infill", body).json()
    fim = FimInput(
        prefix=PREFIX,
        suffix=SUFFIX,
        extra=(Segment("extra", "calc/util.py", 1, 3, extra[0]["text"]),),
    )
    assert data["content"] == expected(reference, render(fim, "starcoder-ls"), 12)
    assert data["stop"] is True
    assert data["stop_type"] in ("eos", "limit")
    assert data["tokens_predicted"] > 0 and data["tokens_evaluated"] > 0
    stream = events(post(llama, "/infill", {**body, "stream": True}))
    assert stream[-1]["stop"] is True and stream[-1]["content"] == ""
    assert all(e["stop"] is False for e in stream[:-1])
    assert "".join(e["content"] for e in stream) == data["content"]


def test_models_lists_the_served_model(llama: ServeProcess) -> None:
    data = httpx.get(f"{llama.url}/v1/models", headers=AUTH).json()
    (entry,) = data["data"]
    assert entry["id"] == "starcoder-ls-tiny"
    assert entry["context_length"] == 512
    assert entry["family"] == "starcoder-ls"
    # The name from /v1/models and the model file's path both select it.
    for name in (entry["id"], str(BUNDLED_GGUF)):
        body = {"model": name, "prompt": "x", "max_tokens": 1}
        assert post(llama, "/v1/completions", body).status_code == 200


def test_the_client_learns_family_and_context_from_the_server(llama: ServeProcess) -> None:
    """A client that knows the team server's URL but not its model still builds prompts in the
    right format and size."""
    from starcoder_ls.backends.http import HttpBackend
    from starcoder_ls.engine import CompletionEngine
    from starcoder_ls.settings import Settings

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEAM_KEY", KEY)
        mp.delenv("LATE_KEY", raising=False)
        backend = HttpBackend("starcoder-ls", url=llama.url, api_key_env="TEAM_KEY")
        unknown = HttpBackend("starcoder-ls", url=llama.url, api_key_env="LATE_KEY")
        try:
            assert (backend.family, backend.context_length, backend.model_id) == (
                "starcoder-ls",
                512,
                "starcoder-ls-tiny",
            )
            engine = CompletionEngine(Settings(backend="starcoder-ls"))
            assert engine.family(backend) == "starcoder-ls"
            # Refused (no key yet): the settings' defaults stand, and completing says why...
            assert unknown.family is None and unknown.context_length == 8192
            assert engine.family(unknown) == "starcoder"
            # ... until the server can be asked again (every 30 s; at once here).
            mp.setenv("LATE_KEY", KEY)
            mp.setattr("starcoder_ls.backends.http.DESCRIBE_EVERY_S", 0.0)
            assert engine.family(unknown) == "starcoder-ls"
            assert unknown.context_length == 512
        finally:
            backend.close()
            unknown.close()


# ------------------------------------------------------------------- bad input

BAD_BODIES: list[tuple[str, bytes, int, str]] = [
    ("/v1/completions", b"{not json", 400, "not valid JSON"),
    ("/v1/completions", b"[1, 2]", 400, "must be a JSON object"),
    ("/v1/completions", b"", 400, "body is empty"),
    ("/v1/completions", b'{"prompt": "\xff\xfe"}', 400, "not valid UTF-8"),
    ("/v1/completions", b'{"prompt": 42}', 400, "prompt must be a string"),
    ("/v1/completions", b'{"prompt": ""}', 400, "prompt is empty"),
    ("/v1/completions", b'{"prompt": [1, 2, 3]}', 400, "token-id"),
    ("/v1/completions", b'{"prompt": "x", "max_tokens": -1}', 400, "max_tokens must be between"),
    ("/v1/completions", b'{"prompt": "x", "max_tokens": 1e12}', 400, "max_tokens must be between"),
    ("/v1/completions", b'{"prompt": "x", "max_tokens": "8"}', 400, "must be an integer"),
    ("/v1/completions", b'{"prompt": "x", "temperature": -1}', 400, "temperature must be in"),
    ("/v1/completions", b'{"prompt": "x", "top_p": 0}', 400, "top_p must be in (0"),
    ("/v1/completions", b'{"prompt": "x", "stop": [1]}', 400, "stop must be a string or a list"),
    ("/v1/completions", b'{"prompt": "x", "stream": "yes"}', 400, "stream must be true or false"),
    ("/v1/completions", b'{"prompt": "x", "echo": true}', 400, "echo is not supported"),
    ("/v1/completions", b'{"prompt": "x", "model": "gpt-4"}', 404, "is not served here"),
    ("/v1/completions", b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
    ("/v1/completions", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, 400, "nested too deeply"),
    ("/v1/fim/completions", b'{"suffix": "x"}', 400, "prompt must be a string"),
    ("/v1/fim/completions", b'{"prompt": "", "suffix": ""}', 400, "both empty"),
    ("/v1/fim/completions", b'{"prompt": "x", "min_tokens": 4}', 400, "min_tokens is not"),
    ("/v1/fim/completions", b'{"prompt": "x", "max_tokens": 0}', 400, "max_tokens must be"),
    ("/v1/fim/completions", b'{"prompt": "x", "max_completion_tokens": 0}', 400, "max_completion"),
    ("/v1/fim/completions", b'{"prompt": "x", "random_seed": "a"}', 400, "random_seed must be"),
    ("/v1/fim/completions", b'{"prompt": "x", "model": "codestral"}', 404, "is not served here"),
    ("/infill", b'{"input_prefix": 3}', 400, "input_prefix must be a string"),
    ("/infill", b'{"input_extra": [{"filename": 1}]}', 400, "input_extra[0]"),
    ("/infill", b"{}", 400, "all empty"),
    ("/infill", b'{"input_prefix": "x", "n_indent": -1}', 400, "n_indent must be between"),
    ("/infill", b'{"input_prefix": "x", "response_fields": [1]}', 400, "response_fields must be"),
]


@pytest.mark.parametrize("route, raw, status, says", BAD_BODIES)
def test_bad_input_gets_a_clear_4xx(
    llama: ServeProcess, route: str, raw: bytes, status: int, says: str
) -> None:
    answer = httpx.post(
        f"{llama.url}{route}", content=raw, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]["message"]


def test_answers_are_not_held_for_the_clients_delayed_ack(llama: ServeProcess) -> None:
    # Without TCP_NODELAY on accepted connections, an answer written in two pieces (headers,
    # then body) waits for the client's delayed ACK: about 40 ms on every request.
    with httpx.Client(base_url=llama.url, headers=AUTH, trust_env=False) as client:
        client.get("/health")
        took = []
        for _ in range(15):
            start = time.perf_counter()
            assert client.get("/health").status_code == 200
            took.append(time.perf_counter() - start)
    assert sorted(took)[len(took) // 2] < 0.02, took


def test_size_limits_and_slow_bodies(llama: ServeProcess) -> None:
    huge = {"prompt": "x" * (2 << 20)}
    too_big = post(llama, "/v1/completions", huge)
    assert too_big.status_code == 413
    assert "limit" in too_big.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"prompt": "'
        for _ in range(40):
            yield b"x" * 65536

    chunked = httpx.post(f"{llama.url}/v1/completions", content=chunks(), headers=AUTH)
    assert chunked.status_code == 413

    # A client that sends its body a byte at a time (slow loris) is cut off after the body
    # timeout (1 s here), and others are served meanwhile.
    with socket.create_connection(("127.0.0.1", llama.port)) as slow:
        slow.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 100\r\n\r\n{"
        )
        start = time.monotonic()
        ok = post(llama, "/v1/completions", {"prompt": "x", "max_tokens": 2})
        assert ok.status_code == 200 and time.monotonic() - start < 1.0
        slow.settimeout(5)
        head = slow.recv(4096)
        assert head.startswith(b"HTTP/1.1 408"), head
        assert 0.9 < time.monotonic() - start < 4
    assert post(llama, "/v1/completions", {"prompt": "x", "max_tokens": 2}).status_code == 200


def test_unknown_routes_and_methods(llama: ServeProcess) -> None:
    answer = httpx.get(f"{llama.url}/v2/everything", headers=AUTH)
    assert answer.status_code == 404
    assert "POST /v1/completions" in answer.json()["error"]["message"]
    assert httpx.get(f"{llama.url}/v1/completions", headers=AUTH).status_code == 405


def test_a_failing_backend_gives_500_and_the_server_goes_on(tmp_path: Path) -> None:
    server = ServeProcess(
        ["--backend", "test", "--model", "error=the%20GPU%20fell%20off"], log=tmp_path / "log"
    )
    try:
        for _ in range(2):
            answer = httpx.post(f"{server.url}/v1/completions", json={"prompt": "x"})
            assert answer.status_code == 500
            assert "the GPU fell off" in answer.json()["error"]["message"]
        assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
        assert metric(server, "starcoder_ls_requests_total", status="500") == 2
    finally:
        assert server.stop() in CLEAN_EXIT


# ------------------------------------------- queue, disconnects, timeouts, drain


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[ServeProcess]:
    """One slot, one queue place, and generations that take 3 s (cancellable)."""
    server = ServeProcess(
        ["--backend", "test", "--model", "latency_ms=3000", "--max-queue", "1"],
        log=tmp_path / "serve.log",
    )
    yield server
    server.stop()


def _in_background(
    url: str, body: dict[str, Any], results: list[Any], **kw: Any
) -> threading.Thread:
    def run() -> None:
        try:
            results.append(httpx.post(url, json=body, **kw))
        except httpx.HTTPError as exc:
            results.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_full_queue_answers_429_with_retry_after(slow: ServeProcess) -> None:
    url = f"{slow.url}/v1/completions"
    results: list[Any] = []
    threads = [_in_background(url, {"prompt": "x"}, results, timeout=30) for _ in range(2)]
    _until(lambda: httpx.get(f"{slow.url}/health").json()["queue_depth"] == 1)
    refused = httpx.post(url, json={"prompt": "x"})
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "busy" in refused.json()["error"]["message"]
    for thread in threads:
        thread.join()
    assert [r.status_code for r in results] == [200, 200]  # the two admitted ones are not lost


def test_client_disconnect_frees_the_slot(slow: ServeProcess) -> None:
    url = f"{slow.url}/v1/completions"
    for stream in (False, True):
        start = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url, json={"prompt": "x", "stream": stream}, timeout=0.5)
        _until(lambda: httpx.get(f"{slow.url}/health").json()["running"] == 0, timeout=2)
        assert time.monotonic() - start < 2.5  # well before the 3 s generation would end
    assert metric(slow, "starcoder_ls_cancelled_total", reason="disconnect") == 2


def test_disconnect_stops_a_batched_generation_at_the_next_token(tmp_path: Path) -> None:
    """The real model, batched: a stream the client abandons after its first event stops
    generating, where the same request left alone runs to its token limit."""
    server = ServeProcess(
        ["--backend", "transformers", "--threads", "1", "--max-batch", "4"], log=tmp_path / "log"
    )
    body = {"prompt": "x = [", "max_tokens": 256, "temperature": 0, "stop": []}
    url = f"{server.url}/v1/completions"
    try:
        whole = httpx.post(url, json=body, timeout=60).json()
        assert whole["usage"]["completion_tokens"] == 256  # it runs to the limit (half the context)
        before = metric(server, "starcoder_ls_completion_tokens_total")
        with httpx.stream("POST", url, json={**body, "stream": True}, timeout=60) as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    break  # the first event: now hang up
        _until(lambda: metric(server, "starcoder_ls_cancelled_total", reason="disconnect") == 1)
        _until(lambda: httpx.get(f"{server.url}/health").json()["running"] == 0)
        assert metric(server, "starcoder_ls_completion_tokens_total") - before < 128
    finally:
        server.stop()


def test_request_timeout_stops_the_generation(tmp_path: Path) -> None:
    server = ServeProcess(
        ["--backend", "test", "--model", "latency_ms=20000", "--request-timeout", "0.5"],
        log=tmp_path / "log",
    )
    try:
        start = time.monotonic()
        answer = httpx.post(f"{server.url}/v1/completions", json={"prompt": "x"}, timeout=10)
        assert answer.status_code == 504
        assert "--request-timeout" in answer.json()["error"]["message"]
        assert time.monotonic() - start < 3
        _until(lambda: httpx.get(f"{server.url}/health").json()["running"] == 0, timeout=2)
    finally:
        server.stop()


def test_shutdown_drains_running_requests(tmp_path: Path) -> None:
    server = ServeProcess(["--backend", "test", "--model", "latency_ms=1500"], log=tmp_path / "log")
    results: list[Any] = []
    thread = _in_background(f"{server.url}/v1/completions", {"prompt": "x"}, results, timeout=30)
    _until(lambda: httpx.get(f"{server.url}/health").json()["running"] == 1)
    server.terminate()
    thread.join()
    assert results[0].status_code == 200, results[0]
    assert server.stop() in CLEAN_EXIT
    assert "Shutting down" in server.output()


def test_metrics_move_with_requests(llama: ServeProcess) -> None:
    before = metric(llama, "starcoder_ls_requests_total", route="/v1/completions", status="200")
    tokens = metric(llama, "starcoder_ls_completion_tokens_total")
    post(llama, "/v1/completions", {"prompt": "import ", "max_tokens": 5})
    assert (
        metric(llama, "starcoder_ls_requests_total", route="/v1/completions", status="200")
        == before + 1
    )
    assert metric(llama, "starcoder_ls_completion_tokens_total") > tokens
    assert metric(llama, "starcoder_ls_request_seconds_count", route="/v1/completions") >= 1
    assert metric(llama, "starcoder_ls_batch_size_count") >= 1
    assert metric(llama, "starcoder_ls_queue_depth") == 0


# --------------------------------------------------------------- start-up checks


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starcoder_ls", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args, says",
    [
        (["--host", "0.0.0.0", "--backend", "test"], "without API keys"),
        (["--api-key-file", "/nonexistent/keys", "--backend", "test"], "cannot read"),
        (["--tls-cert", "/nonexistent.pem", "--backend", "test"], "go together"),
        (["--max-batch", "0", "--backend", "test"], "--max-batch must be at least 1"),
        (["--backend", "llamacpp", "--model", "/nonexistent.gguf"], "nonexistent.gguf"),
    ],
)
def test_start_up_errors_are_plain(args: list[str], says: str) -> None:
    done = _serve(*args)
    assert done.returncode == 2
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_short_keys_are_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("hunter2\n")
    done = _serve("--backend", "test", "--api-key-file", str(keys))
    assert done.returncode == 2 and "at least 16" in done.stderr
    assert "hunter2" not in done.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    server = ServeProcess(
        ["--backend", "test", "--tls-cert", str(cert), "--tls-key", str(key)],
        log=tmp_path / "log",
        scheme="https",
        verify=ssl.create_default_context(cafile=str(cert)),
    )
    try:
        from starcoder_ls.backends.http import HttpBackend

        backend = HttpBackend("starcoder-ls", url=server.url, ca_bundle=str(cert))
        prompt = Prompt(text="x = ", family="starcoder", stop=(), fim=FimInput("x = ", ""))
        assert backend.generate(prompt, GenerationParams(), CancelToken()).text == "None"
        backend.close()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/health")  # not trusted without the certificate
    finally:
        server.stop()


def test_the_transformers_batch_evaluates_only_what_a_keystroke_added(tmp_path: Path) -> None:
    """Through HTTP, on the continuous-batching engine: the next keystroke's prompt starts from
    the finished request's kept keys and values (llama-server's ``timings``: ``cache_n`` taken
    from them, ``prompt_n`` evaluated)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    source = (Path(sysconfig.get_paths()["stdlib"]) / "json" / "decoder.py").read_text()[:1000]
    server = ServeProcess(
        ["--backend", "transformers", "--threads", "1", "--max-batch", "4"],
        log=tmp_path / "serve.log",
    )
    try:
        answers = [
            post(server, "/infill", {"input_prefix": prefix, "n_predict": 4}).json()
            for prefix in (source, source + "    def decode_all(self")
        ]
    finally:
        server.stop()
    first, typed = (answer["timings"] for answer in answers)
    assert first["cache_n"] == 0 and first["prompt_n"] > 200
    assert typed["cache_n"] >= first["prompt_n"] - 2 and 0 < typed["prompt_n"] <= 12
