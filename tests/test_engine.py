"""The completion pipeline end to end with the deterministic test backend: mode decision, cache,
forward typing, cancellation, backend lifecycle and the prompt it sends."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from starcoder_ls.backends.testing import TestBackend
from starcoder_ls.documents import Snapshot
from starcoder_ls.engine import CompletionEngine, LineTokenCounter, _steady, relative_path
from starcoder_ls.settings import CacheSettings, Settings
from starcoder_ls.types import BackendError, CancelToken, CompletionMode, Segment

URI = "file:///work/proj/pkg/mod.py"
PATH = "/work/proj/pkg/mod.py"


def snap(text: str, uri: str = URI) -> Snapshot:
    return Snapshot.from_text(text, uri=uri, path=uri.removeprefix("file://"), language_id="python")


def engine(model: str = "test", **kw: object) -> CompletionEngine:
    return CompletionEngine(Settings(backend="test", model=model, **kw))  # type: ignore[arg-type]


def calls(eng: CompletionEngine) -> int:
    backend = eng.backend()
    assert isinstance(backend, TestBackend)
    return backend.calls


def test_an_empty_block_body_completes_to_pass() -> None:
    eng = engine()
    c = eng.complete(snap("def f():\n    \n"), 1, 4)
    assert c is not None
    assert (c.text, c.line, c.character) == ("pass", 1, 4)
    assert c.mode is CompletionMode.MULTI_LINE
    assert c.cached is False and c.model == "test" and c.prompt_tokens > 0 and c.request_id


def test_inside_a_word_only_an_invoked_request_completes() -> None:
    eng = engine()
    doc = snap("value = foo\n")
    assert eng.complete(doc, 0, 9) is None
    assert calls(eng) == 0
    c = eng.complete(doc, 0, 9, invoked=True)
    assert c is not None and c.text == "None" and c.mode is CompletionMode.SINGLE_LINE
    assert calls(eng) == 1


def test_an_empty_prompt_asks_no_model() -> None:
    """A left-to-right model at the start of a file has nothing to continue: no backend call
    (a server would refuse the empty prompt), where a FIM model still sees the suffix."""
    doc = snap("\nimport os\n")
    plain = engine("reply=x", family="left-to-right")
    assert plain.complete(doc, 0, 0, invoked=True) is None
    assert calls(plain) == 0
    fim = engine("reply=x", family="starcoder")
    done = fim.complete(doc, 0, 0, invoked=True)
    assert done is not None and done.text == "x" and calls(fim) == 1


def test_the_same_request_again_makes_no_backend_call(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    eng = engine(f"test:log={log}")
    doc = snap("def f():\n    \n")
    first = eng.complete(doc, 1, 4)
    again = eng.complete(doc, 1, 4)
    # The document was closed and reopened: only the completion cache can answer now.
    eng.forward.forget(URI)
    reopened = eng.complete(doc, 1, 4)
    assert first is not None and again is not None and reopened is not None
    assert first.text == again.text == reopened.text == "pass"
    assert (first.cached, again.cached, reopened.cached) == (False, True, True)
    assert "source" not in reopened.extra and reopened.raw == "pass"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["finish_reason"] for r in records] == ["stop"]
    assert calls(eng) == 1


def test_without_the_cache_every_request_reaches_the_backend() -> None:
    eng = engine(cache=CacheSettings(enabled=False))
    doc = snap("def f():\n    \n")
    for _ in range(2):
        eng.forward.forget(URI)
        c = eng.complete(doc, 1, 4)
        assert c is not None and not c.cached
    assert calls(eng) == 2


def test_typing_the_start_of_a_shown_completion_serves_the_rest() -> None:
    eng = engine("test:reply=return%20value")
    shown = eng.complete(snap("def f(value):\n    \n"), 1, 4)
    assert shown is not None and shown.text == "return value"
    typed = eng.complete(snap("def f(value):\n    ret\n"), 1, 7)
    assert typed is not None
    assert (typed.text, typed.character, typed.cached) == ("urn value", 7, True)
    assert calls(eng) == 1
    # A keystroke that leaves the shown text behind asks the backend again.
    other = eng.complete(snap("def f(value):\n    rex\n"), 1, 7)
    assert other is not None and other.text == "return value"
    assert calls(eng) == 2


def test_a_request_cancelled_before_it_starts_never_generates() -> None:
    eng = engine()
    token = CancelToken()
    token.cancel()
    assert eng.complete(snap("def f():\n    \n"), 1, 4, cancel=token) is None
    assert calls(eng) == 0


def test_cancelling_while_generating_stops_the_generation() -> None:
    eng = engine("test:latency_ms=5000")
    token = CancelToken()
    timer = threading.Timer(0.05, token.cancel)
    timer.start()
    t0 = time.monotonic()
    try:
        result = eng.complete(snap("def f():\n    \n"), 1, 4, cancel=token)
    finally:
        timer.cancel()
    assert result is None
    assert time.monotonic() - t0 < 2.0
    backend = eng.backend()
    assert isinstance(backend, TestBackend)
    assert (backend.calls, backend.cancelled) == (1, 1)
    assert len(eng.cache) == 0, "a cancelled generation must not be cached"


def test_a_new_model_recreates_the_backend_a_new_temperature_does_not() -> None:
    eng = engine("test:reply=a")
    first = eng.backend()
    eng.update_settings(Settings(backend="test", model="test:reply=a", temperature=0.7))
    assert eng.backend() is first
    eng.update_settings(Settings(backend="test", model="test:reply=b", temperature=0.7))
    second = eng.backend()
    assert second is not first and second.model_id == "test:reply=b"
    c = eng.complete(snap("x = \n"), 0, 4)
    assert c is not None and c.text == "b"


def test_a_disabled_language_gets_nothing() -> None:
    eng = engine(languages={"python": False})
    assert eng.complete(snap("def f():\n    \n"), 1, 4) is None
    assert eng.complete(snap("def f():\n    \n"), 1, 4, invoked=True) is None
    assert calls(eng) == 0
    eng.update_settings(Settings(backend="test", model="test", languages={"*": False}))
    assert eng.complete(snap("def f():\n    \n"), 1, 4) is None
    eng.update_settings(
        Settings(backend="test", model="test", languages={"*": False, "python": True})
    )
    assert eng.complete(snap("def f():\n    \n"), 1, 4) is not None


def test_a_backend_failure_propagates_as_backend_error() -> None:
    eng = engine("test:error=server%20down")
    with pytest.raises(BackendError, match="server down"):
        eng.complete(snap("def f():\n    \n"), 1, 4)


def test_an_unknown_backend_option_is_a_backend_error() -> None:
    eng = engine("test:latency=5")
    with pytest.raises(BackendError, match="bad option"):
        eng.complete(snap("def f():\n    \n"), 1, 4)


def test_the_bundled_family_prompt_is_psm_and_reports_relative_paths() -> None:
    eng = engine(family="starcoder-ls")
    text = "import os\n\n\ndef f():\n    \n\n\nX = 1\n"
    built = eng.build_prompt(snap(text), 4, 4, root=Path("/work/proj"))
    p = built.prompt.text
    assert built.mode is CompletionMode.MULTI_LINE and built.prompt.family == "starcoder-ls"
    pre, suf, mid = p.index("<fim_prefix>"), p.index("<fim_suffix>"), p.index("<fim_middle>")
    assert pre < suf < mid and p.endswith("<fim_middle>")
    assert p[pre + len("<fim_prefix>") : suf] == "import os\n\n\ndef f():\n    "
    assert p[suf + len("<fim_suffix>") : mid] == "\n\n\nX = 1\n"
    assert "pkg/mod.py" in p[:pre]
    kinds = {seg.kind: seg for seg in built.prompt.segments}
    assert {"prefix", "suffix"} <= set(kinds)
    assert all(seg.path == "pkg/mod.py" for seg in built.prompt.segments)
    assert kinds["prefix"].tokens > 0
    assert (built.prefix, built.suffix) == ("import os\n\n\ndef f():\n    ", "\n\n\nX = 1\n")
    without_root = eng.build_prompt(snap(text), 4, 4)
    assert all(seg.path == "mod.py" for seg in without_root.prompt.segments)


def test_relative_path_outside_the_root_is_the_file_name() -> None:
    assert relative_path(PATH, Path("/work/proj")) == "pkg/mod.py"
    assert relative_path(PATH, Path("/elsewhere")) == "mod.py"
    assert relative_path(None, Path("/work")) is None


def test_a_context_too_small_for_max_tokens_is_a_clear_error() -> None:
    eng = engine("test:ctx=96", max_tokens=64)
    with pytest.raises(BackendError, match=r"context \(96 tokens\).*maxTokens=64"):
        eng.build_prompt(snap("def f():\n    \n"), 1, 4)
    with pytest.raises(BackendError, match="lower maxTokens"):
        eng.complete(snap("def f():\n    \n"), 1, 4)
    eng.update_settings(Settings(backend="test", model="test:ctx=96", max_tokens=16))
    assert eng.complete(snap("def f():\n    \n"), 1, 4) is not None


def test_line_token_counter_sums_lines_and_counts_each_distinct_line_once() -> None:
    seen: list[str] = []

    def count(text: str) -> int:
        seen.append(text)
        return len(text.split()) + 1

    counter = LineTokenCounter(count, max_lines=4)
    text = "a b\nc\n\na b\nlast line here"
    expected = sum(count(line) for line in text.splitlines(keepends=True))
    seen.clear()
    assert counter(text) == expected
    assert sorted(seen) == sorted({"a b\n", "c\n", "\n", "last line here"})
    seen.clear()
    assert counter(text) == expected and seen == []  # all cached
    # Past max_lines the cache starts over; totals stay exact.
    more = "x\ny\nz\nw\n" + text
    assert counter(more) == sum(count(line) for line in more.splitlines(keepends=True))
    assert counter(text) == expected
    assert counter("") == 0


def _seg(path: str, text: str, kind: str = "definition") -> Segment:
    return Segment(kind, path, 1, 1, text, tokens=10)


def test_other_files_context_holds_while_it_has_what_the_names_near_the_cursor_need() -> None:
    a, b, c = (_seg(f"{n}.py", f"def {n}(): ...\n") for n in "abc")
    similar, recent = _seg("s.py", "x = 1\n", "similar"), _seg("r.py", "y = 2\n", "recent")
    before = [a, b, similar]
    # The imports and definitions found now are all there: the old list, as it was, whatever
    # similar or recently edited code retrieval would now add.
    assert _steady(before, [b, recent], 100) is before
    assert _steady(before, [a, b], 100) is before
    assert _steady(before, [], 100) is before  # retrieval found nothing this time
    # A definition that is not there yet: switch, unless the cursor is still near where the
    # context was chosen (the user is typing there).
    assert _steady(before, [a, c, similar], 100) == [a, c, similar]
    assert _steady(before, [a, c, similar], 100, near=True) is before
    # An edited file: its segment is new; and after any edit elsewhere, what is found now.
    edited = _seg("b.py", "def b(x): ...\n")
    assert _steady(before, [edited], 100) == [edited]
    assert _steady(before, [a, b, recent], 100, near=True, changed=True) == [a, b, recent]
    # No room for it any more, or none at all.
    assert _steady(before, [b, c], 25) == [b, c]
    assert _steady(before, [b, c], 0) == []
    empty: list[Segment] = []
    assert _steady(empty, [], 0) is empty


def test_typing_reuses_the_prompt_start_and_the_models_cache() -> None:
    # The bundled model in process, a real method typed into a real file of this repository:
    # each keystroke's prompt starts like the last one, so the model evaluates a few tokens
    # beyond what PSM's suffix costs, not the whole window.
    from starcoder_ls.models import BUNDLED_GGUF

    from starcoder_ls.backends.llamacpp import LlamaCppBackend
    from starcoder_ls.documents import Document

    backend = LlamaCppBackend(BUNDLED_GGUF)
    engine = CompletionEngine(Settings(max_tokens=4, cache=CacheSettings(enabled=False)),
                              backend_factory=lambda s: backend)  # fmt: skip
    source = (Path(__file__).resolve().parents[1] / "starcoder_ls" / "engine.py").read_text()
    start = source.index("    def _remember_prompt(")
    end = source.index("\n    def ", start + 1) + 1
    doc = Document("file:///w/engine.py", "python", 1, source[:start] + "\n" + source[end:])
    line, col = source[:start].count("\n"), 0
    evaluated, suffix_tokens = [], []
    try:
        for ch in source[start:end].rstrip("\n"):
            doc.apply_change(ch, ((line, col), (line, col)))
            line, col = (line + 1, 0) if ch == "\n" else (line, col + 1)
            snap = doc.snapshot()
            built = engine.build_prompt(snap, line, col, exact=False)
            gen = backend.generate(built.prompt, engine.params(built.mode), CancelToken())
            evaluated.append(gen.evaluated_tokens)
            suffix_tokens.append(backend.count_tokens(built.suffix))
    finally:
        engine.close()
    steady = evaluated[1:]
    # PSM re-evaluates the suffix after the cursor each time; the rest comes from the cache.
    over = [e - s for e, s in zip(steady, suffix_tokens[1:], strict=True)]
    assert sorted(over)[len(over) // 2] <= 4, over
    # The window moves in a few large jumps (a new start costs the whole prompt), not with
    # every line typed (9 jumps over these 333 keystrokes when it was cut anew each time).
    jumps = sum(1 for x in over if x > 50)
    assert jumps <= 3, over
