"""The deterministic test backend, through ``create_backend`` as the server builds it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from starcoder_ls.backends import create_backend
from starcoder_ls.backends.testing import TestBackend
from starcoder_ls.settings import Settings
from starcoder_ls.types import BackendError, CancelToken, GenerationParams, Prompt

PARAMS = GenerationParams()


def make(spec: str = "") -> TestBackend:
    backend = create_backend(Settings(backend="test", model=spec))
    assert isinstance(backend, TestBackend)
    return backend


def test_default_reply_depends_on_the_cursor_line(fim: Callable[..., Prompt]) -> None:
    backend = make()
    assert backend.generate(fim("def f():\n    "), PARAMS, CancelToken()).text == "pass"
    assert backend.generate(fim("def f():\n"), PARAMS, CancelToken()).text == "pass"
    assert backend.generate(fim("x = "), PARAMS, CancelToken()).text == "None"
    assert backend.calls == 3
    assert backend.prompts[-1].fim.prefix == "x = "


def test_same_prompt_same_answer_and_reply_option(fim: Callable[..., Prompt]) -> None:
    backend = make("test:reply=return%20a%20%2B%20b%0Aprint(1)")
    prompt = fim("def add(a, b):\n    ")
    first = backend.generate(prompt, PARAMS, CancelToken())
    assert first.text == "return a + b\nprint(1)"
    again = backend.generate(prompt, PARAMS, CancelToken())
    assert (again.text, again.prompt_tokens, again.completion_tokens) == (
        first.text,
        first.prompt_tokens,
        first.completion_tokens,
    )
    single = backend.generate(prompt, GenerationParams(stop=("\n",)), CancelToken())
    assert (single.text, single.finish_reason) == ("return a + b", "stop")
    assert first.prompt_tokens == backend.count_tokens(prompt.text) > 0


def test_latency_is_waited_and_cancel_ends_it(fim: Callable[..., Prompt]) -> None:
    backend = make("latency_ms=300")
    start = time.perf_counter()
    done = backend.generate(fim("x = "), PARAMS, CancelToken())
    assert time.perf_counter() - start >= 0.3
    assert done.latency_ms >= 300
    cancel = CancelToken()
    threading.Timer(0.05, cancel.cancel).start()
    start = time.perf_counter()
    cut = backend.generate(fim("x = "), PARAMS, cancel)
    assert time.perf_counter() - start < 0.25
    assert (cut.text, cut.finish_reason) == ("", "cancelled")
    assert (backend.calls, backend.cancelled) == (2, 1)


def test_error_option_and_log_file(tmp_path: Path, fim: Callable[..., Prompt]) -> None:
    log = tmp_path / "calls.jsonl"
    backend = make(f"test:error=server%20down&log={log}")
    with pytest.raises(BackendError, match="server down"):
        backend.generate(fim("x = "), PARAMS, CancelToken())
    slow = make(f"latency_ms=30&log={log}")
    done = slow.generate(fim("y = "), PARAMS, CancelToken())
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["call"], r["finish_reason"], r["prefix_tail"]) for r in lines] == [
        (1, "error", "x = "),
        (1, "stop", "y = "),
    ]
    # The logged time is the generation's own, as returned to the caller.
    assert 30 <= lines[1]["latency_ms"] == round(done.latency_ms, 3)


@pytest.mark.parametrize(
    "spec, message",
    [("latency=5", "bad option"), ("latency_ms=fast", "must be a number"), ("ctx=-1", "negative")],
)
def test_bad_spec_is_a_backend_error(spec: str, message: str) -> None:
    with pytest.raises(BackendError, match=message):
        make(spec)


def test_model_id_and_context_come_from_the_spec() -> None:
    assert make().model_id == "test"
    backend = make("ctx=4096&latency_ms=1")
    assert (backend.model_id, backend.context_length) == ("test:ctx=4096&latency_ms=1", 4096)
