"""The llama.cpp backend on the bundled GGUF: real generation, KV reuse, stops, cancellation,
and bad model files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from backend_helpers import special_opening
from starcoder_ls.models import BUNDLED_GGUF

from starcoder_ls.backends.llamacpp import LlamaCppBackend
from starcoder_ls.types import BackendError, CancelToken, GenerationParams, Prompt

CODE = "import os\n\n\ndef read_file(path):\n    with open(path) as f:\n"
GREEDY = GenerationParams(max_tokens=12)


def test_bundled_model_generates_and_reports_its_tokens(
    gguf_backend: Any, fim: Callable[..., Prompt]
) -> None:
    assert gguf_backend.model_id == str(BUNDLED_GGUF)
    assert gguf_backend.context_length == 512  # the GGUF's starcoder.context_length
    prompt = fim("def add(a, b):\n    ", "\n\nprint(add(1, 2))\n")
    first = gguf_backend.generate(prompt, GREEDY, CancelToken())
    assert first.text.strip()
    assert first.prompt_tokens == gguf_backend.count_tokens(prompt.text)
    assert 0 < first.completion_tokens <= GREEDY.max_tokens
    assert first.finish_reason in ("stop", "length")
    # Greedy is deterministic, and the identical prompt re-runs only its last token.
    again = gguf_backend.generate(prompt, GREEDY, CancelToken())
    assert again.text == first.text
    assert again.evaluated_tokens == 1


def test_special_tokens_in_the_prompt_are_parsed(gguf_backend: Any) -> None:
    assert gguf_backend.count_tokens("<fim_prefix>") == 1
    assert gguf_backend.count_tokens("<fim_prefix>x<fim_suffix><fim_middle>") == 4
    assert gguf_backend.count_tokens("") == 0


def test_extending_the_prompt_evaluates_only_the_new_tokens(
    gguf_backend: Any, raw: Callable[..., Prompt]
) -> None:
    first = raw(f"<fim_prefix>{CODE}        data = f.read()")
    second = raw(f"<fim_prefix>{CODE}        data = f.read()\n        return data\n")
    first_ids = gguf_backend.tokenize(first.text)
    second_ids = gguf_backend.tokenize(second.text)
    assert second_ids[: len(first_ids)] == first_ids  # the premise: a pure extension
    one = GenerationParams(max_tokens=1)  # its single token is returned, never evaluated
    gguf_backend.generate(first, one, CancelToken())
    reused = gguf_backend.generate(second, GREEDY, CancelToken())
    assert reused.evaluated_tokens == len(second_ids) - len(first_ids)
    assert reused.prompt_tokens == len(second_ids)
    # The reused cache gives what a cold run gives: run something unrelated, then again.
    gguf_backend.generate(raw("<fim_prefix>class Point:\n"), one, CancelToken())
    cold = gguf_backend.generate(second, GREEDY, CancelToken())
    assert cold.evaluated_tokens == len(second_ids) - 1  # only <fim_prefix> was shared
    assert cold.text == reused.text


def test_stop_string_cuts_the_text(gguf_backend: Any, fim: Callable[..., Prompt]) -> None:
    """A stop string ("\\n" for single-line completions) ends the text where it first appears."""
    prompt = fim("def add(a, b):\n    ", "\n\nprint(add(1, 2))\n")
    free = gguf_backend.generate(prompt, GenerationParams(max_tokens=24), CancelToken())
    assert len(free.text) > 4, free.text
    stop = free.text[len(free.text) // 2]  # whatever the model writes, cut in its middle
    cut = gguf_backend.generate(
        prompt, GenerationParams(max_tokens=24, stop=(stop,)), CancelToken()
    )
    assert cut.finish_reason == "stop"
    assert cut.text == free.text[: free.text.index(stop)]


def test_family_stop_token_ends_generation_by_id(
    gguf_backend: Any, raw: Callable[..., Prompt]
) -> None:
    text, first = special_opening(gguf_backend, GREEDY)
    stopped = gguf_backend.generate(raw(text, stop=(first,)), GREEDY, CancelToken())
    # Stopped by id before the token was kept: a stop found in the decoded text would have
    # counted the token it came from.
    assert (stopped.text, stopped.completion_tokens, stopped.finish_reason) == ("", 0, "stop")
    assert gguf_backend.stop_ids(("<|endoftext|>", "<fim_pad>", "<file_sep>", "\n")) >= {
        gguf_backend.tokenize(t)[0] for t in ("<|endoftext|>", "<fim_pad>", "<file_sep>")
    }
    assert gguf_backend.tokenize("\n")[0] not in gguf_backend.stop_ids(("\n",))


def test_cancel_stops_generation_between_tokens(
    gguf_backend: Any, fim: Callable[..., Prompt], cancel_after: Callable[[int], CancelToken]
) -> None:
    prompt = fim("def add(a, b):\n    ", "\n")
    params = GenerationParams(max_tokens=24)
    full = gguf_backend.generate(prompt, params, CancelToken())
    assert full.completion_tokens > 4
    # Look 1 is before the prompt's only evaluation chunk; looks 2.. come before each token.
    cut = gguf_backend.generate(prompt, params, cancel_after(5))
    assert cut.finish_reason == "cancelled"
    assert cut.completion_tokens == 3
    assert full.text.startswith(cut.text)
    before = CancelToken()
    before.cancel()
    nothing = gguf_backend.generate(fim("import sys\n"), params, before)
    assert (nothing.text, nothing.evaluated_tokens, nothing.finish_reason) == ("", 0, "cancelled")
    # The cache stays usable after a cancellation.
    assert gguf_backend.generate(prompt, params, CancelToken()).text == full.text


def test_context_is_capped_and_long_prompts_keep_their_end(fim: Callable[..., Prompt]) -> None:
    # llama.cpp aborts the process past a learned-position model's trained context.
    big = LlamaCppBackend(BUNDLED_GGUF, n_ctx=100_000, n_threads=1)
    assert big.context_length == 512
    big.close()
    with pytest.raises(BackendError, match="closed"):  # not a crash on freed memory
        big.count_tokens("x = 1")
    small = LlamaCppBackend(BUNDLED_GGUF, n_ctx=96, n_threads=1)
    try:
        assert small.context_length == 96
        prompt = fim("x = 1\n" * 100, "\n")
        ids = small.tokenize(prompt.text)
        assert len(ids) > 96
        out = small.generate(prompt, GenerationParams(max_tokens=8), CancelToken())
        assert out.prompt_tokens == 96 - 8
        assert out.completion_tokens > 0
        # The left end of the prefix went; the leading <fim_prefix> sentinel stayed.
        assert small._llm.input_ids[0] == ids[0]
        assert list(small._llm.input_ids[1:20]) == ids[len(ids) - 87 : len(ids) - 68]
    finally:
        small.close()


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not found"),
        (b"hello, not a model\n", "not a GGUF file"),
        (b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64, "cannot load"),
        ("truncated", "cannot load"),
    ],
)
def test_missing_or_corrupt_file_is_a_backend_error(
    tmp_path: Path, content: bytes | str | None, message: str
) -> None:
    path = tmp_path / "model.gguf"
    if content == "truncated":
        path.write_bytes(BUNDLED_GGUF.read_bytes()[:4096])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(BackendError, match=message) as info:
        LlamaCppBackend(path, n_threads=1)
    assert str(path) in str(info.value)


def test_coming_back_to_a_file_reuses_its_saved_cache(fim: Callable[..., Prompt]) -> None:
    # Two files, one request in each, then back to the first with one more character typed:
    # its KV was saved when the second file's prompt took the cache, and is put back.
    left = "".join(f"def left_{i}(x):\n    return x + {i}\n\n" for i in range(25))
    right = "".join(f"class Right{i}:\n    value = {i}\n\n" for i in range(25))
    backend = LlamaCppBackend(BUNDLED_GGUF, n_threads=1)
    try:
        first = backend.generate(fim(left, "\n"), GREEDY, CancelToken())
        other = backend.generate(fim(right, "\n"), GREEDY, CancelToken())
        back = backend.generate(fim(left + "d", "\n"), GREEDY, CancelToken())
        assert first.prompt_tokens > 200 and other.evaluated_tokens > 200
        assert back.evaluated_tokens <= 6, back.evaluated_tokens
        assert backend.restored == 1
        # And once more to the second file: saved too, when the first took the cache back.
        again = backend.generate(fim(right, "\n"), GREEDY, CancelToken())
        assert again.evaluated_tokens <= 2 and backend.restored == 2
        # The text is what the model gives from scratch.
        fresh = LlamaCppBackend(BUNDLED_GGUF, n_threads=1)
        try:
            assert fresh.generate(fim(left + "d", "\n"), GREEDY, CancelToken()).text == back.text
        finally:
            fresh.close()
    finally:
        backend.close()
