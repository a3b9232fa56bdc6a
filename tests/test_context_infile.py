"""In-file context: the completion mode at a position and the prefix/suffix window, on real
tree-sitter parses (and on the plain-text fallback)."""

from __future__ import annotations

import statistics
import time
from bisect import bisect_right
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starcoder_ls.context.infile import InFileWindow, _Lines, decide_mode, window
from starcoder_ls.documents import Document, Snapshot
from starcoder_ls.types import CompletionMode

NONE, SINGLE, MULTI = CompletionMode.NONE, CompletionMode.SINGLE_LINE, CompletionMode.MULTI_LINE


def cheap(text: str) -> int:
    return len(text) // 3


def at(language: str | None, marked: str) -> tuple[Snapshot, int, int]:
    """A snapshot of ``marked`` without its "█" and the (line, column) where "█" was."""
    offset = marked.index("█")
    snap = Snapshot.from_text(marked.replace("█", "", 1), language_id=language)
    line = bisect_right(snap.line_starts, offset) - 1
    return snap, line, offset - snap.line_starts[line]


MODES = [
    # inside a word: nothing to insert
    ("python", "def fo█o():\n", NONE),
    ("python", "print(█x)\n", NONE),
    ("javascript", "let a = █$b;\n", NONE),
    # in the indentation of a line that has code
    ("python", "def f():\n  █  return 1\n", NONE),
    # end of a non-empty line, or only closers after the cursor
    ("python", "x = foo(█\n", SINGLE),
    ("python", 'print("█")\n', SINGLE),
    ("python", "def f():\n    return █\n", SINGLE),
    ("python", "# compute the █\n", SINGLE),
    ("python", 'def f():\n    """Return █\n', SINGLE),
    ("python", "x = 1\n█\n", SINGLE),
    ("python", "def f():\n    x = 1\n    █\n", SINGLE),
    # a block just opened
    ("python", "def f(a):\n    █", MULTI),
    ("python", "class A:\n    def f(self):\n        █\n", MULTI),
    ("python", "for x in y:  # every item\n    █\n", MULTI),
    ("python", "if a:\n    pass\nelse:\n\n    █\n", MULTI),
    ("python", 'def f():\n    """Doc."""\n    █\n', MULTI),
    ("python", "x = [\n    █\n]\n", MULTI),
    ("javascript", "function f() {\n  █\n}\n", MULTI),
    ("javascript", "function f() {\n  // soon\n  █\n}\n", MULTI),
    ("javascript", "function f() {█}\n", MULTI),
    ("javascript", "if (a) {\n█}\n", MULTI),
    ("typescript", "class A {\n  m(): void {\n    █\n", MULTI),
    ("go", "func f() {\n\t█\n}\n", MULTI),
    ("rust", "fn f() {\n    █\n}\n", MULTI),
    ("java", "class A {\n  void m() {\n    █\n  }\n}\n", MULTI),
    ("c", "int main(void) {\n  █\n}\n", MULTI),
    ("ruby", "def m(a)\n  █\nend\n", MULTI),
    ("ruby", "items.each do |x|\n  █\nend\n", MULTI),
    ("lua", "function f(a)\n  █\nend\n", MULTI),
    ("shellscript", "if true; then\n  █\nfi\n", MULTI),
    ("python", "█", MULTI),  # an empty file
    ("python", "█\nimport os\n", SINGLE),
    # CRLF documents
    ("python", "def f():\r\n    █\r\n", MULTI),
    ("python", "x = 1\r\ny = fo█o\r\n", NONE),
    # no grammar: the opener and the indentation decide
    ("weird-lang", "section:\n  █\n", MULTI),
    ("weird-lang", "main =\n    █\n", MULTI),
    ("weird-lang", "main =\n    █\n    other\n", SINGLE),
    ("weird-lang", "main =\n█\n", SINGLE),
]


@pytest.mark.parametrize(("language", "marked", "expected"), MODES)
def test_decide_mode(language: str, marked: str, expected: CompletionMode) -> None:
    snap, line, column = at(language, marked)
    assert decide_mode(snap, line, column) is expected


def test_decide_mode_on_huge_text_uses_text_rules() -> None:
    body = "x = 1\n" * 400_000  # over the parse limit: no tree
    snap = Snapshot.from_text(body + "def f():\n    \n", language_id="python")
    assert snap.tree is None
    assert decide_mode(snap, 400_001, 4) is MULTI


@pytest.mark.parametrize(("line", "column"), [(-1, 0), (0, -5), (99, 99), (1, 10_000)])
def test_positions_out_of_range_are_clamped(line: int, column: int) -> None:
    snap = Snapshot.from_text("def f():\n    return 1\n", language_id="python")
    decide_mode(snap, line, column)
    w = window(snap, line, column, budget_tokens=100, prefix_ratio=0.5, count_tokens=cheap)
    assert w.prefix + w.suffix == snap.text


# -- window ------------------------------------------------------------------------------------


def python_file(methods: int, body: int = 12) -> str:
    head = "import os\nimport sys\nfrom typing import (\n    Any,\n    Callable,\n)\n\n\n"
    parts = [head, "class Engine(Base):\n", '    """Runs things."""\n\n']
    for m in range(methods):
        parts.append(
            f"    def method_{m}(self, value: int,\n                 other: Any) -> int:\n"
        )
        parts += [f"        value = value * {i} + other  # step {i}\n" for i in range(body)]
        parts.append("        return value\n\n")
    return "".join(parts)


def cursor_in_last_method(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    row = max(i for i, s in enumerate(lines) if s.startswith("        value = value * 5"))
    return row, len(lines[row])


def test_whole_file_fits() -> None:
    text = "import os\n\ndef f(a):\n    return a\n"
    snap = Snapshot.from_text(text, language_id="python")
    w = window(snap, 3, 12, budget_tokens=1000, prefix_ratio=0.75, count_tokens=cheap)
    assert (w.prefix, w.suffix) == ("import os\n\ndef f(a):\n    return a", "\n")
    assert [(s.kind, s.start_line, s.end_line, s.path) for s in w.segments] == [
        ("prefix", 1, 4, ""),
        ("suffix", 4, 5, ""),
    ]


def check_shape(snap: Snapshot, line: int, column: int, w: InFileWindow) -> None:
    start = snap.line_starts[line]
    cursor = start + column
    kept = next(s for s in w.segments if s.kind == "prefix")
    assert w.prefix.endswith(kept.text)
    assert kept.text == snap.text[snap.line_starts[kept.start_line - 1] : cursor]
    assert snap.text[cursor:].startswith(w.suffix)
    assert w.suffix.startswith(snap.text[cursor : snap.line_starts[line + 1]])  # whole line
    assert w.suffix == snap.text[cursor:] or w.suffix.endswith("\n")  # cut at a line end


def test_prefix_cut_keeps_imports_and_enclosing_headers_in_order() -> None:
    text = python_file(40)
    snap = Snapshot.from_text(text, language_id="python")
    line, column = cursor_in_last_method(text)
    w = window(snap, line, column, budget_tokens=300, prefix_ratio=0.75, count_tokens=cheap)
    check_shape(snap, line, column, w)
    assert [(s.kind, s.start_line, s.end_line) for s in w.segments[:2]] == [
        ("import", 1, 6),
        ("header", 9, 9),
    ]
    assert w.prefix.startswith(text[: text.index("\n\n")] + "\nclass Engine(Base):\n        ")
    assert w.prefix_tokens + w.suffix_tokens <= 300
    # A tighter budget: the method's two-line signature is cut too and comes back; the
    # headers go first, then the imports that still fit (the multi-line one does not).
    w = window(snap, line, column, budget_tokens=120, prefix_ratio=0.75, count_tokens=cheap)
    check_shape(snap, line, column, w)
    signature = "    def method_39(self, value: int,\n                 other: Any) -> int:\n"
    assert [(s.kind, s.text) for s in w.segments[:3]] == [
        ("import", "import os\nimport sys\n"),
        ("header", "class Engine(Base):\n"),
        ("header", signature),
    ]
    assert w.prefix.startswith("import os\nimport sys\nclass Engine(Base):\n" + signature)
    assert w.prefix_tokens + w.suffix_tokens <= 120


def test_headers_inside_the_kept_prefix_are_not_repeated() -> None:
    text = python_file(3, body=4)
    snap = Snapshot.from_text(text, language_id="python")
    line, column = snap.line_count - 3, 0
    w = window(snap, line, column, budget_tokens=10_000, prefix_ratio=0.75, count_tokens=cheap)
    assert [s.kind for s in w.segments] == ["prefix", "suffix"]
    assert w.prefix.count("class Engine") == 1


def test_ratio_and_unused_share() -> None:
    text = python_file(60)
    snap = Snapshot.from_text(text, language_id="python")
    middle = cursor_in_last_method(text)[0] // 2
    w = window(snap, middle, 0, budget_tokens=400, prefix_ratio=0.25, count_tokens=cheap)
    assert 70 <= w.prefix_tokens <= 101 and 270 <= w.suffix_tokens <= 301
    # near the top the prefix needs little: the suffix takes the rest of the budget
    w = window(snap, 3, 0, budget_tokens=400, prefix_ratio=0.75, count_tokens=cheap)
    assert w.prefix == text[: snap.line_starts[3]]
    assert w.suffix_tokens > 400 * 0.25 + 50
    assert w.prefix_tokens + w.suffix_tokens <= 400
    # near the end the suffix needs little: the prefix takes the rest
    last = snap.line_count - 1
    w = window(snap, last, 0, budget_tokens=400, prefix_ratio=0.25, count_tokens=cheap)
    assert w.suffix == "" and w.prefix_tokens > 300


def test_crlf_documents_keep_their_line_endings() -> None:
    text = python_file(30).replace("\n", "\r\n")
    snap = Snapshot.from_text(text, language_id="python")
    line, column = cursor_in_last_method(text.replace("\r\n", "\n"))
    w = window(snap, line, column, budget_tokens=300, prefix_ratio=0.75, count_tokens=cheap)
    check_shape(snap, line, column, w)
    assert [s.kind for s in w.segments][:2] == ["import", "header"]
    for part in (w.prefix, w.suffix):
        assert part.count("\n") == part.count("\r\n") > 3


def test_brace_language_headers() -> None:
    body = "".join(f"    total += step({i});\n" for i in range(200))
    text = (
        "import { step } from './step';\n\nexport class Sum {\n  run(total) {\n"
        + body + "    return total;\n  }\n}\n"
    )  # fmt: skip
    snap = Snapshot.from_text(text, language_id="typescript")
    w = window(snap, 150, 4, budget_tokens=200, prefix_ratio=0.6, count_tokens=cheap)
    assert [s.kind for s in w.segments] == ["import", "header", "prefix", "suffix"]
    assert w.prefix.startswith(
        "import { step } from './step';\nexport class Sum {\n  run(total) {\n"
    )


def test_plain_text_fallback_finds_headers_by_indentation() -> None:
    body = "".join(f"    step {i}\n" for i in range(200))
    text = "import util\n\nsection main:\n  task run:\n" + body.replace("    ", "      ")
    snap = Snapshot.from_text(text, language_id="weird-lang")
    assert snap.language is None and snap.tree is None
    w = window(snap, 150, 6, budget_tokens=150, prefix_ratio=0.75, count_tokens=cheap)
    assert [s.kind for s in w.segments] == ["import", "header", "prefix", "suffix"]
    assert w.prefix.startswith("import util\nsection main:\n  task run:\n      step ")


def test_budget_holds_with_a_real_tokenizer() -> None:
    from starcoder_ls.models import BUNDLED_HF
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(BUNDLED_HF / "tokenizer.json"))

    def count(s: str) -> int:
        return len(tok.encode(s, add_special_tokens=False).ids)

    text = python_file(60).replace("# step 3", "# étape trois, 第三步") + "s = '😀'\n" * 200
    snap = Snapshot.from_text(text, language_id="python")
    line, column = cursor_in_last_method(text)
    for budget, ratio in ((120, 0.75), (480, 0.5), (1500, 0.6)):
        w = window(snap, line, column, budget_tokens=budget, prefix_ratio=ratio, count_tokens=count)
        check_shape(snap, line, column, w)
        assert w.prefix_tokens + w.suffix_tokens <= budget
        assert w.prefix_tokens == sum(s.tokens for s in w.segments if s.kind != "suffix")
        assert count(w.prefix) + count(w.suffix) <= budget + 4  # joins merge a few tokens
        if budget < 1500:  # (the largest one reaches the emoji lines, which cost 4x per byte)
            assert w.prefix_tokens + w.suffix_tokens >= budget * 0.8  # and the budget is used


def counting(counter: Callable[[str], int]) -> tuple[Callable[[str], int], list[int]]:
    calls: list[int] = []

    def wrapped(s: str) -> int:
        calls.append(len(s))
        return counter(s)

    return wrapped, calls


def test_token_counter_is_called_sparingly() -> None:
    text = python_file(330)  # about 5,000 lines
    snap = Snapshot.from_text(text, language_id="python")
    line, column = cursor_in_last_method(text)
    count, calls = counting(cheap)
    window(snap, line, column, budget_tokens=1536, prefix_ratio=0.75, count_tokens=count)
    assert len(calls) <= 8
    assert sum(calls) < 40_000  # the text around the cursor, never the whole file


def test_window_is_fast_on_a_5000_line_file_right_after_an_edit() -> None:
    text = python_file(330)
    doc = Document("file:///engine.py", "python", 1, text)
    doc.tree()
    line, column = cursor_in_last_method(text)
    assert doc.line_count > 5000
    times = []
    for i in range(40):
        doc.apply_change("x", ((line, column), (line, column)))
        snap = doc.snapshot()
        t0 = time.perf_counter()
        window(snap, line, column + i + 1, budget_tokens=1536, prefix_ratio=0.75,
               count_tokens=cheap)  # fmt: skip
        times.append(time.perf_counter() - t0)
    p95 = statistics.quantiles(times, n=20)[-1]
    print(f"window() on {doc.line_count} lines: p50 {statistics.median(times) * 1e3:.2f} ms, "
          f"p95 {p95 * 1e3:.2f} ms")  # fmt: skip
    assert p95 < 0.05


def test_a_minified_line_longer_than_the_budget_is_clipped() -> None:
    text = "var a=" + "1+" * 200_000 + "1;\n"
    snap = Snapshot.from_text(text, language_id="javascript")
    w = window(snap, 0, 200_000, budget_tokens=100, prefix_ratio=0.5, count_tokens=cheap)
    assert len(w.prefix) + len(w.suffix) <= 4_000
    assert text[:200_000].endswith(w.prefix) and text[200_000:].startswith(w.suffix)
    # between ordinary lines too: what is kept stays contiguous with the cursor
    snap = Snapshot.from_text("a = 1\n" * 50 + text + "b = 2\n" * 50, language_id="javascript")
    w = window(snap, 50, 200_000, budget_tokens=3000, prefix_ratio=0.5, count_tokens=cheap)
    assert snap.text[: snap.line_starts[50] + 200_000].endswith(w.prefix)
    assert snap.text[snap.line_starts[50] + 200_000 :].startswith(w.suffix)


def test_degenerate_inputs() -> None:
    empty = Snapshot.from_text("", language_id="python")
    w = window(empty, 0, 0, budget_tokens=100, prefix_ratio=0.75, count_tokens=cheap)
    assert (w.prefix, w.suffix) == ("", "")
    assert [s.kind for s in w.segments] == ["prefix", "suffix"]
    snap = Snapshot.from_text("a = 1\nb = 2\nc = 3\n", language_id="python")
    w = window(snap, 1, 3, budget_tokens=0, prefix_ratio=2.0, count_tokens=cheap)
    assert (w.prefix, w.suffix) == ("b =", " 2\n")  # the cursor line is always whole


def test_header_of_a_definition_whose_body_is_still_empty() -> None:
    """Typing the first indentation of a new method's body: tree-sitter gives the body block
    no children there, which must not break the header lookup."""
    from starcoder_ls.documents import Document

    before = "class A:\n    def g(self):\n        return 1\n\n"
    after = "\n    def h(self):\n        return 2\n"
    doc = Document("file:///t.py", "python", 1, before + after)
    doc.snapshot()
    line, col = before.count("\n"), 0
    for ch in "    def f(self, x):\n     ":
        doc.apply_change(ch, ((line, col), (line, col)))
        line, col = (line + 1, 0) if ch == "\n" else (line, col + 1)
        result = window(
            doc.snapshot(), line, col, budget_tokens=40, prefix_ratio=0.75, count_tokens=len
        )
    assert result.prefix.startswith("class A:") and result.prefix.endswith("\n     ")


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.integers(0, 90), min_size=1, max_size=40),
    line=st.integers(0, 45),
    limit=st.integers(0, 400),
    bpt=st.sampled_from([1.0, 2.5, 3.3, 4.0]),
)
def test_ascii_line_arithmetic_matches_the_row_by_row_walk(
    rows: list[int], line: int, limit: int, bpt: float
) -> None:
    """ASCII rows are costed by binary search over line starts; the general (UTF-8) path walks
    row by row. Both must choose the same rows."""
    text = "\n".join("x" * n for n in rows)
    snap = Document("file:///t.txt", "plaintext", 1, text).snapshot()
    line = min(line, len(rows) - 1)
    fast, slow = _Lines(snap), _Lines(snap)
    assert fast.ascii
    slow.ascii = False
    allowance = limit + 0.37  # away from exact ties, where float sums may round either way
    assert fast.fit_up(line, allowance, bpt) == slow.fit_up(line, allowance, bpt)
    assert fast.fit_down(line, allowance, bpt) == slow.fit_down(line, allowance, bpt)
    for rng in (range(line - 1, -1, -1), range(line + 1, fast.n)):
        full, capped = fast.need(rng, allowance, bpt), slow.need(rng, allowance, bpt)
        # Past the cap only comparisons with amounts up to the cap are meaningful.
        assert (full <= allowance) == (capped <= allowance)
        if capped <= allowance:
            assert full == pytest.approx(capped)


def _typed(snap: Snapshot, line: int, col: int, text: str) -> tuple[Snapshot, int, int]:
    doc = Document("file:///t.py", "python", 1, snap.text)
    for ch in text:
        doc.apply_change(ch, ((line, col), (line, col)))
        line, col = (line + 1, 0) if ch == "\n" else (line, col + 1)
    return doc.snapshot(), line, col


def test_the_window_keeps_its_start_and_end_while_typing_and_jumps_rarely() -> None:
    body = "".join(f"def helper_{i}(value):\n    return value * {i}\n\n\n" for i in range(150))
    snap = Snapshot.from_text(body + "\n" + body, language_id="python")
    line, col = body.count("\n"), 0
    typed = "".join(f"total_{i} = helper_{i}(total_{i - 1}) + {i}\n" for i in range(1, 40))
    win = window(
        snap, line, col, budget_tokens=600, prefix_ratio=0.75, count_tokens=cheap, slack=0.2
    )
    starts, jumps = {win.anchor}, 0
    for ch in typed:
        snap, line, col = _typed(snap, line, col, ch)
        new = window(
            snap, line, col, budget_tokens=600, prefix_ratio=0.75, count_tokens=cheap,
            anchor=win.anchor, slack=0.2,
        )  # fmt: skip
        assert new.prefix_tokens + new.suffix_tokens <= 600
        if new.anchor != win.anchor:
            jumps += 1
        else:
            # The same start and end: the prompt only grew by what was typed.
            assert new.prefix == win.prefix + ch and new.suffix == win.suffix
        starts.add(new.anchor)
        win = new
    # About 450 tokens of prefix: a jump after each ~20% of the budget typed, not per line.
    assert 1 <= jumps <= 8, jumps
    assert jumps == len(starts) - 1
    # Without an anchor the cut moves with nearly every line typed.
    fresh = {
        window(*_typed(Snapshot.from_text(body + "\n" + body), body.count("\n"), 0, typed[:n]),
               budget_tokens=600, prefix_ratio=0.75, count_tokens=cheap).segments[-2].start_line
        for n in range(0, len(typed), 10)
    }  # fmt: skip
    assert len(fresh) > 4 * jumps


def test_an_anchor_that_no_longer_holds_is_not_used() -> None:
    text = "".join(f"x_{i} = {i}\n" for i in range(400))
    snap = Snapshot.from_text(text, language_id="python")
    win = window(snap, 300, 0, budget_tokens=300, prefix_ratio=0.75, count_tokens=cheap, slack=0.2)
    assert win.anchor is not None and win.anchor.cut_row > 0
    # The cursor moved above the cut: a new window around it.
    up = window(snap, 50, 0, budget_tokens=300, prefix_ratio=0.75, count_tokens=cheap,
                anchor=win.anchor)  # fmt: skip
    assert up.anchor != win.anchor and up.segments[-1].start_line == 51
    # A line inserted above the cut moves the rows: the anchor's offset no longer matches.
    edited = Snapshot.from_text("import os\n" + text, language_id="python")
    moved = window(edited, 301, 0, budget_tokens=300, prefix_ratio=0.75, count_tokens=cheap,
                   anchor=win.anchor)  # fmt: skip
    assert moved.anchor != win.anchor
    # The same request again keeps it (and gives the same text).
    again = window(snap, 300, 0, budget_tokens=300, prefix_ratio=0.75, count_tokens=cheap,
                   anchor=win.anchor)  # fmt: skip
    assert (again.anchor, again.prefix, again.suffix) == (win.anchor, win.prefix, win.suffix)
    # A smaller budget than the kept text needs: cut anew.
    small = window(snap, 300, 0, budget_tokens=100, prefix_ratio=0.75, count_tokens=cheap,
                   anchor=win.anchor)  # fmt: skip
    assert small.prefix_tokens + small.suffix_tokens <= 100 and small.anchor != win.anchor
