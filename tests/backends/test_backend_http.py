"""The HTTP backend's connection behaviour against a real local server: errors a user can act
on, bounded retries, timeouts, cancellation that reaches the server, and the API key kept out
of every message and log line."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from starcoder_ls.backends.http import HttpBackend
from starcoder_ls.types import BackendError, CancelToken, GenerationParams, Prompt

KEY = "sk-test-9f8e7d6c5b4a"
OK = (200, {"content": "return a + b", "tokens_evaluated": 9, "tokens_predicted": 4})
PARAMS = GenerationParams(max_tokens=16)


def backend_for(url: str, **options: Any) -> HttpBackend:
    """The llama.cpp server dialect: the simplest answer shape; the transport is the same for
    every dialect."""
    options.setdefault("timeout_ms", 3000)
    return HttpBackend("llamacpp-server", url=url, **options)


@pytest.fixture
def prompt(fim: Callable[..., Prompt]) -> Prompt:
    return fim("def add(a, b):\n    ", "\n")


def test_api_key_goes_in_the_header_and_nowhere_else(
    fake_server: Any,
    prompt: Prompt,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("MY_COMPLETION_KEY", KEY)
    caplog.set_level(logging.DEBUG)  # httpx and httpcore log every request at debug level
    backend = backend_for(fake_server.url, api_key_env="MY_COMPLETION_KEY", retries=1)
    fake_server.handler = lambda seen, conn: OK
    assert backend.generate(prompt, PARAMS, CancelToken()).text == "return a + b"
    assert fake_server.seen[-1].headers["authorization"] == f"Bearer {KEY}"
    # A server that echoes the header back in its errors, refusing, then failing.
    for status, says in ((401, "MY_COMPLETION_KEY is set but was refused"), (500, "2 attempts")):
        fake_server.handler = lambda seen, conn, status=status: (
            status,
            {"error": f"bad credentials: {seen.headers['authorization']}"},
        )
        with pytest.raises(BackendError, match=says) as info:
            backend.generate(prompt, PARAMS, CancelToken())
        assert KEY not in str(info.value)
        assert "bad credentials: Bearer ***" in str(info.value)
    assert KEY not in caplog.text
    assert KEY not in repr(backend.__dict__)
    backend.close()


@pytest.mark.parametrize(
    "env, hint",
    [
        ({}, "set apiKeyEnv to the name of an environment variable"),
        ({"api_key_env": "MISSING_KEY_VAR"}, "MISSING_KEY_VAR is not set"),
    ],
)
def test_unauthorized_says_what_to_do(
    fake_server: Any,
    prompt: Prompt,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    hint: str,
) -> None:
    monkeypatch.delenv("MISSING_KEY_VAR", raising=False)
    fake_server.handler = lambda seen, conn: (401, {"error": "Authorization header is missing"})
    backend = backend_for(fake_server.url, retries=3, **env)
    with pytest.raises(BackendError, match="HTTP 401") as info:
        backend.generate(prompt, PARAMS, CancelToken())
    assert hint in str(info.value)
    assert "Authorization header is missing" in str(info.value)
    assert len(fake_server.seen) == 1  # a refusal is not retried
    backend.close()


def test_server_errors_are_retried_a_bounded_number_of_times(
    fake_server: Any, prompt: Prompt
) -> None:
    fake_server.handler = lambda seen, conn: (500, {"error": "CUDA out of memory"})
    backend = backend_for(fake_server.url, retries=2)
    with pytest.raises(BackendError, match=r"HTTP 500 .* after 3 attempts: CUDA out of memory"):
        backend.generate(prompt, PARAMS, CancelToken())
    assert len(fake_server.seen) == 3
    fake_server.seen.clear()
    fake_server.handler = lambda seen, conn: (400, {"error": {"message": "n_predict too big"}})
    with pytest.raises(BackendError, match=r"HTTP 400 from .*: n_predict too big"):
        backend.generate(prompt, PARAMS, CancelToken())
    assert len(fake_server.seen) == 1
    backend.close()


def test_busy_server_is_retried_and_then_answers(fake_server: Any, prompt: Prompt) -> None:
    answers = iter([(503, {"error": "Model is loading"}, {"Retry-After": "0.1"}), (429, {}), OK])
    fake_server.handler = lambda seen, conn: next(answers)
    backend = backend_for(fake_server.url, retries=2)
    start = time.perf_counter()
    out = backend.generate(prompt, PARAMS, CancelToken())
    assert (out.text, out.prompt_tokens, len(fake_server.seen)) == ("return a + b", 9, 3)
    assert time.perf_counter() - start >= 0.1 + 0.5  # Retry-After, then the second backoff
    backend.close()


def test_connection_refused_is_reported_quickly(free_port: int, prompt: Prompt) -> None:
    backend = backend_for(f"http://127.0.0.1:{free_port}", retries=1)
    start = time.perf_counter()
    with pytest.raises(BackendError, match=f"cannot reach http://127.0.0.1:{free_port}/infill"):
        backend.generate(prompt, PARAMS, CancelToken())
    assert time.perf_counter() - start < 2.0
    backend.close()


def test_slow_server_times_out_and_is_disconnected(fake_server: Any, prompt: Prompt) -> None:
    fake_server.handler = lambda seen, conn: OK if conn.generate_for(5.0) else None
    backend = backend_for(fake_server.url, timeout_ms=300, retries=2)
    start = time.perf_counter()
    with pytest.raises(BackendError, match=r"no answer from .* within 300 ms"):
        backend.generate(prompt, PARAMS, CancelToken())
    assert time.perf_counter() - start < 1.0
    assert len(fake_server.seen) == 1  # a timeout already spent the budget: no retry
    _wait_for(lambda: fake_server.disconnects == 1)
    backend.close()


def test_cancel_closes_the_request_so_the_server_stops(fake_server: Any, prompt: Prompt) -> None:
    backend = backend_for(fake_server.url, timeout_ms=10_000)
    # A first exchange leaves a kept-alive connection: cancelling must find that socket too.
    fake_server.handler = lambda seen, conn: OK
    backend.generate(prompt, PARAMS, CancelToken())
    fake_server.handler = lambda seen, conn: OK if conn.generate_for(5.0) else None
    for _ in range(2):  # on the reused connection, then on a fresh one
        cancel = CancelToken()
        threading.Timer(0.2, cancel.cancel).start()
        start = time.perf_counter()
        out = backend.generate(prompt, PARAMS, cancel)
        assert out.finish_reason == "cancelled"
        assert time.perf_counter() - start < 1.0
    _wait_for(lambda: fake_server.disconnects == 2)
    assert fake_server.connections == 2
    # And the backend carries on.
    fake_server.handler = lambda seen, conn: OK
    assert backend.generate(prompt, PARAMS, CancelToken()).text == "return a + b"
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.generate(prompt, PARAMS, CancelToken())


def test_request_waiting_for_its_turn_can_be_cancelled(fake_server: Any, prompt: Prompt) -> None:
    fake_server.handler = lambda seen, conn: OK if conn.generate_for(1.0) else None
    backend = backend_for(fake_server.url)
    first = threading.Thread(target=backend.generate, args=(prompt, PARAMS, CancelToken()))
    first.start()
    _wait_for(lambda: len(fake_server.seen) == 1)
    cancel = CancelToken()
    threading.Timer(0.1, cancel.cancel).start()
    start = time.perf_counter()
    assert backend.generate(prompt, PARAMS, cancel).finish_reason == "cancelled"
    assert time.perf_counter() - start < 0.5
    first.join()
    assert len(fake_server.seen) == 1  # the cancelled one never went out
    backend.close()


@pytest.mark.parametrize(
    "answer, message",
    [
        ((200, b"<html>502 Bad Gateway</html>"), "not JSON"),
        ((200, {"generated_text": "x"}), "unexpected shape .* right backend"),
        ((404, {"error": "File Not Found"}), "HTTP 404 .* right backend"),
    ],
)
def test_wrong_server_or_garbage_answer(
    fake_server: Any, prompt: Prompt, answer: Any, message: str
) -> None:
    fake_server.handler = lambda seen, conn: answer
    backend = backend_for(fake_server.url)
    with pytest.raises(BackendError, match=message):
        backend.generate(prompt, PARAMS, CancelToken())
    backend.close()


@pytest.mark.parametrize(
    "kind, options, message",
    [
        ("llamacpp-server", {"url": "ftp://host/x"}, "http:// or https://"),
        ("ollama", {"url": "http://localhost:11434"}, "needs a model name"),
        ("openai", {"url": "https://h", "ca_bundle": "/no/such/ca.pem"}, "does not exist"),
        ("carrier-pigeon", {}, "unknown remote backend"),
    ],
)
def test_bad_configuration_is_a_backend_error(
    kind: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(BackendError, match=message):
        HttpBackend(kind, **options)


def test_credentials_in_the_url_are_not_shown(free_port: int, prompt: Prompt) -> None:
    backend = backend_for(f"http://user:hunter2@127.0.0.1:{free_port}", retries=0)
    with pytest.raises(BackendError) as info:
        backend.generate(prompt, PARAMS, CancelToken())
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in backend.model_id
    backend.close()


def _wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.01)


def test_a_newline_stop_after_text_is_applied_here_not_by_the_server(
    fake_server: Any, prompt: Prompt
) -> None:
    reply = {"content": "\n    x = 1\n    y = 2", "tokens_evaluated": 9, "tokens_predicted": 8}
    fake_server.handler = lambda seen, conn: (200, reply)
    backend = backend_for(fake_server.url)
    params = GenerationParams(max_tokens=16, stop=("\n",), stop_after_text=True)
    out = backend.generate(prompt, params, CancelToken())
    assert out.text == "\n    x = 1"
    sent = fake_server.seen[-1].body
    assert "\n" not in sent.get("stop", [])  # the server would have ended at the first byte
    backend.close()


def test_the_team_server_is_sent_the_newline_stop_with_stop_after_text(
    fake_server: Any, prompt: Prompt
) -> None:
    """starcoder-ls serve honours ``stop_after_text`` itself, so it stops a single line on a
    blank line after the first code instead of generating to the token limit."""
    reply = {"choices": [{"text": "\n    x = 1", "finish_reason": "stop"}], "usage": {}}
    fake_server.handler = lambda seen, conn: (200, reply)
    backend = HttpBackend("starcoder-ls", url=fake_server.url, retries=0)
    params = GenerationParams(max_tokens=16, stop=("\n",), stop_after_text=True)
    assert backend.generate(prompt, params, CancelToken()).text == "\n    x = 1"
    sent = fake_server.seen[-1].body
    assert "\n" in sent["stop"] and sent["stop_after_text"] is True
    backend.generate(prompt, GenerationParams(max_tokens=16, stop=("\n",)), CancelToken())
    assert "stop_after_text" not in fake_server.seen[-1].body  # only where it is asked for
    backend.close()
