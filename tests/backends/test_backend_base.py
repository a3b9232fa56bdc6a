"""The rules every backend shares: stop strings, UTF-8 at token boundaries, prompt fitting,
sampling, and backend selection."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from starcoder_ls.backends import create_backend
from starcoder_ls.backends.base import (
    TokenStream,
    common_prefix_len,
    cut_at_stop,
    decode_loop,
    fit_prompt,
    sample_token,
    stop_strings,
    utf8_complete,
)
from starcoder_ls.settings import Settings
from starcoder_ls.types import BackendError, CancelToken, GenerationParams


def test_stop_strings_request_first_without_duplicates_or_empties() -> None:
    assert stop_strings(("<|endoftext|>", "\n"), ("\n", "", "\n\n")) == (
        "\n",
        "\n\n",
        "<|endoftext|>",
    )
    assert cut_at_stop("a = 1\nb = 2<file_sep>", ("<file_sep>", "\n")) == ("a = 1", True)
    assert cut_at_stop("a = 1", ("\n",)) == ("a = 1", False)


def test_incomplete_utf8_tail_is_held_back() -> None:
    snake = "🐍".encode()
    assert utf8_complete(b"x = '" + snake[:2]) == "x = '"
    assert utf8_complete(b"x = '" + snake) == "x = '🐍"
    assert utf8_complete("é".encode()[:1]) == ""
    assert utf8_complete(b"ok\xff") == "ok\ufffd"  # invalid, not incomplete: shown as such


def test_fit_prompt_cuts_the_left_end_and_keeps_the_sentinel() -> None:
    ids = list(range(100))
    assert fit_prompt(ids, 512, 64, keep_first=True) == (ids, 64)
    kept, max_tokens = fit_prompt(ids, 80, 16, keep_first=True)
    assert (len(kept), max_tokens) == (64, 16)
    assert kept[0] == 0 and kept[1:] == ids[-63:]
    assert fit_prompt(ids, 80, 16, keep_first=False)[0] == ids[-64:]
    assert fit_prompt(ids, 80, 500, keep_first=False)[1] == 40  # generation capped at half


def test_sampling_is_greedy_at_zero_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = np.array([0.1, 3.0, 2.9, -1.0], dtype=np.float32)
    assert sample_token(logits, 0.0, 1.0, rng) == 1
    # A tiny nucleus leaves only the top token even when sampling.
    assert {sample_token(logits, 1.0, 0.01, rng) for _ in range(20)} == {1}
    assert {sample_token(logits, 1.0, 1.0, rng) for _ in range(200)} >= {0, 1, 2}
    assert common_prefix_len([1, 2, 3], [1, 2, 4, 5]) == 2


def test_create_backend_picks_by_name() -> None:
    assert create_backend(Settings(backend="test")).name == "test"
    remote = create_backend(Settings(backend="tgi", url="http://127.0.0.1:9"))
    assert (remote.name, remote.model_id) == ("tgi", "http://127.0.0.1:9/generate")
    remote.close()
    with pytest.raises(BackendError, match="unknown backend"):
        create_backend(Settings(backend="nonsense"))


def test_local_models_run_in_a_worker_process() -> None:
    from starcoder_ls.models import BUNDLED_GGUF

    from starcoder_ls.backends.worker import WorkerBackend

    pytest.importorskip("llama_cpp")
    backend = create_backend(Settings(backend="llamacpp", model=str(BUNDLED_GGUF), n_threads=1))
    try:
        assert isinstance(backend, WorkerBackend)
        assert backend.info is not None and backend.info.pid != os.getpid()
        assert backend.model_id == str(BUNDLED_GGUF)
    finally:
        backend.close()


def _scripted(tokens: list[int], pieces: dict[int, str]) -> tuple[list[np.ndarray], Any]:
    """Logits that make greedy sampling pick ``tokens`` in order, and a renderer."""
    rows = []
    for t in tokens:
        row = np.zeros(16, dtype=np.float32)
        row[t] = 1.0
        rows.append(row)
    return rows, lambda ids: "".join(pieces[i] for i in ids)


@pytest.mark.parametrize(
    "pieces, stops, shown, final",
    [
        # "<e" could start the stop "<eot>": held back until it is clearly not one.
        ({1: "a", 2: "<e", 3: "x", 4: "b"}, ("<eot>",), ["a", "", "<ex", "b"], "a<exb"),
        # ... and dropped when it is one.
        ({1: "a", 2: "<e", 3: "ot>", 4: "b"}, ("<eot>",), ["a", "", ""], "a"),
        # Half a character (the replacement character) waits for its other half.
        ({1: "a", 2: "\ufffd", 3: "é", 4: "b"}, (), ["a", "", "é", "b"], "aéb"),
    ],
)
def test_token_stream_shows_only_text_no_later_token_takes_back(
    pieces: dict[int, str], stops: tuple[str, ...], shown: list[str], final: str
) -> None:
    rows, text_of = _scripted([1, 2, 3, 4], pieces)

    def render(ids: list[int]) -> str:  # a renderer that, like a real one, fixes a half char
        text = text_of(ids)
        return text.replace("\ufffdé", "é")

    stream = TokenStream(
        render,
        stop_ids=frozenset(),
        stops=stops,
        params=GenerationParams(max_tokens=4),
        room=100,
    )
    got = []
    for row in rows:
        token = stream.push(row)
        got.append(stream.new_text())
        if token is None:
            break
    assert got == shown
    assert stream.text == final
    assert "".join(got) == final


def test_decode_loop_streams_what_it_returns() -> None:
    rows, text_of = _scripted([1, 2, 3, 0], {1: "ret", 2: "urn ", 3: "a"})
    pieces: list[str] = []
    following = iter(rows[1:])
    result = decode_loop(
        rows[0],
        lambda token: next(following),
        text_of,
        stop_ids=frozenset({0}),
        stops=(),
        params=GenerationParams(max_tokens=10),
        room=100,
        cancel=CancelToken(),
        on_text=pieces.append,
    )
    assert result.finish_reason == "stop"
    assert result.text == "return a" == "".join(pieces)
    assert len(pieces) == 3


@pytest.mark.parametrize(("after_text", "want"), [(False, ""), (True, "\n    x = 1")])
def test_a_newline_stop_can_wait_for_the_first_code(after_text: bool, want: str) -> None:
    """On a blank line a model may open with a line break before the code it means."""
    rows, text_of = _scripted([1, 2, 3, 1, 4], {1: "\n", 2: "    ", 3: "x = 1", 4: "y"})
    following = iter(rows[1:])
    result = decode_loop(
        rows[0],
        lambda token: next(following),
        text_of,
        stop_ids=frozenset(),
        stops=("\n",),
        params=GenerationParams(max_tokens=10, stop_after_text=after_text),
        room=100,
        cancel=CancelToken(),
    )
    assert result.text == want and result.finish_reason == "stop"


@pytest.mark.parametrize(
    ("text", "block", "want"),
    [
        ("return a\n\n\ndef g():\n    pass", 4, "return a\n\n"),  # the next top-level def
        ("x = 1\n    y = 2\n", 4, ""),  # still inside the block (no dedented line yet)
        ("x = 1\n}\n\nfunction g() {", 4, "x = 1\n}\n"),  # a closer is the block's own
        ("x = 1\nde", 4, "x = 1"),  # decided at the first character of the line
        ("x = 1\n  \n", 4, ""),  # blank lines never end the block
        ("def f():\n    pass", 0, ""),  # at column 0 nothing is left of the block
        # -1: the block is where the first code is indented (cursor at column 0).
        ("\n    return a\n\n\ndef g():", -1, "\n    return a\n\n"),
        ("x = 1\ny = 2", -1, ""),
    ],
)
def test_dedent_ends_a_multi_line_generation(text: str, block: int, want: str) -> None:
    from starcoder_ls.backends.base import dedent_at

    cut = dedent_at(text, 0, block)
    assert (text[:cut] if cut != -1 else "") == want
