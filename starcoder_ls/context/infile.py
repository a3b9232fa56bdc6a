"""The current file around the cursor: what kind of completion fits there, and which part of
the file goes into the prompt.

Positions are plain (0-based line, code point column) and clamped into the document, so a stale
or out-of-range position never raises.

Completion mode (:func:`decide_mode`):

- NONE when an identifier character follows the cursor (the user is inside a word: anything
  inserted would split it), or when the cursor sits in the indentation of a line that already
  has code after it. Comments and strings are not a reason: docstrings and comments are worth
  completing.
- MULTI_LINE when the cursor line is blank (closing brackets after the cursor allowed) and is
  the body of a block just opened: the last code line above ends with the language's block
  opener (``:`` in Python, ``{``/``(``/``[`` in brace languages, ``do``/``then`` ...), or the
  syntax tree shows the innermost block at the cursor holding only comments or a docstring.
  Also between ``{`` and ``}`` on one line, and in an empty file. Without a grammar the
  indentation decides: a cursor indented deeper than the code above and not followed by deeper
  code is a new body.
- SINGLE_LINE otherwise.

Window (:func:`window`): prefix and suffix split the token budget by ``prefix_ratio`` (an unused
share goes to the other side), cut at line boundaries with the cursor line whole on both sides.
When the prefix is cut, the file's imports and the headers of the definitions around the cursor
that fall above the cut are put back in front of it, in file order, within half the prefix
share. Line costs are estimated from their UTF-8 size and one token count of the text on each side
of the cursor; the chosen
pieces are then counted for real, and re-chosen with the measured ratio if they overflow.

While the user types, the window keeps its place: given the previous window's :class:`Anchor`
(where its prefix began, which lines above that it kept, where its suffix ended), the same
start and end are used again as long as they still fit the budget. The model's KV cache holds
the prompt up to the first changed token, so a prompt that starts the same way costs only what
was typed. A new window is chosen with ``slack`` of the budget left free, so the next move comes
only after that much more typing: large, rare jumps instead of a line at a time.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from starcoder_ls.documents import Snapshot, utf8_len
from starcoder_ls.languages.registry import GENERIC_IMPORT, GENERIC_OPENER, LanguageInfo
from starcoder_ls.types import CompletionMode, Segment

CONTEXT_SHARE = 0.5
"""At most this share of the prefix allowance goes to imports and headers."""
DEFAULT_BYTES_PER_TOKEN = 3.0
_SAMPLE = 1500
"""Characters per side measured to calibrate the estimate (a real tokenizer costs ~1 us/char)."""
_LONG_LINE = 2000
"""A cursor line half is clipped only past this many characters and the whole budget."""
_SCAN_LIMIT = 3000
"""Lines scanned upwards by the text heuristics before giving up."""
_CLOSERS = frozenset(")]};,>\"'`")
_CLOSE_ONLY = re.compile(r"^[\s)\]}>;,]*(?:end\b)?[\s)\]};,]*$")


@dataclass(frozen=True)
class Anchor:
    """Where a window was cut, in terms that survive typing below the cut and before the end."""

    cut_row: int
    cut_offset: int
    """Offset of the cut row's start (rows above it unchanged when this still matches)."""
    context: tuple[tuple[str, int], ...]
    """(kind, row) of the header and import lines kept above the cut."""
    tail: int
    """Characters from the suffix's end to the end of the document."""


@dataclass
class InFileWindow:
    prefix: str
    suffix: str
    segments: list[Segment] = field(default_factory=list)
    prefix_tokens: int = 0
    suffix_tokens: int = 0
    anchor: Anchor | None = None
    """Where this window was cut, for the next request on the same document."""


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def _strip_comment(line: str, prefix: str | None) -> str:
    """``line`` without a trailing line comment (one outside string quotes)."""
    if not prefix or prefix not in line:
        return line
    quote = ""
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
        elif line.startswith(prefix, i):
            return line[:i]
        i += 1
    return line


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _code_line_above(snap: Snapshot, line: int) -> tuple[int, str] | None:
    """The nearest line above with code: (line, code without trailing comment, right-stripped)."""
    info = snap.language
    comment = info.line_comment if info else None
    for row in range(line - 1, max(-1, line - 1 - _SCAN_LIMIT), -1):
        code = _strip_comment(snap.line_text(row), comment).rstrip()
        if code.strip():
            return row, code
    return None


def _has_code_below(snap: Snapshot, line: int) -> bool:
    return any(snap.line_text(r).strip() for r in range(line + 1, snap.line_count))


def _anchor(snap: Snapshot, above: tuple[int, str] | None) -> tuple[int, int] | None:
    """tree-sitter point of the last code character of a line (where its scope is found)."""
    if above is None:
        return None
    row, code = above
    return snap.point(row, len(code) - 1)


def decide_mode(snapshot: Snapshot, line: int, character: int) -> CompletionMode:
    """How much the model may write at the position (rules in the module docstring)."""
    line, character = snapshot.clamp(line, character)
    text = snapshot.line_text(line)
    before, after = text[:character], text[character:]
    if after and _is_word_char(after[0]):
        return CompletionMode.NONE
    rest = after.strip()
    if not before.strip():
        if rest and not set(rest) <= _CLOSERS:
            return CompletionMode.NONE
        if _opens_block(snapshot, line, character):
            return CompletionMode.MULTI_LINE
        return CompletionMode.SINGLE_LINE
    if before.rstrip().endswith("{") and rest.startswith("}"):
        return CompletionMode.MULTI_LINE
    return CompletionMode.SINGLE_LINE


def _opens_block(snap: Snapshot, line: int, column: int) -> bool:
    info = snap.language
    above = _code_line_above(snap, line)
    if snap.tree is not None and info is not None:
        from starcoder_ls.languages.syntax import empty_block_at

        cursor = snap.point(line, column)
        if empty_block_at(snap.tree.root_node, info, cursor, _anchor(snap, above), column):
            return True
    if above is None:
        return not _has_code_below(snap, line)
    code = above[1]
    opener = info.block_opener if info is not None else GENERIC_OPENER
    if opener.search(code) or (info and info.block_start and info.block_start.search(code)):
        return True
    if snap.tree is None and column > _indent(code):
        below = next(
            (
                snap.line_text(r)
                for r in range(line + 1, snap.line_count)
                if snap.line_text(r).strip()
            ),
            None,
        )
        return below is None or _indent(below) <= _indent(code)
    return False


# -- the window --------------------------------------------------------------------------------


class _Lines:
    """Line geometry and estimated token costs of one snapshot."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.starts = snap.line_starts
        self.n = len(self.starts)
        self.size = len(snap.text)
        self.ascii = snap.text.isascii()
        self._bytes: dict[int, int] = {}

    def bytes(self, row: int) -> int:
        """UTF-8 size of a row: byte-level tokenizers cost by bytes, not characters."""
        nxt = self.starts[row + 1] if row + 1 < self.n else self.size
        if self.ascii:
            return nxt - self.starts[row]
        size = self._bytes.get(row)
        if size is None:
            size = self._bytes[row] = utf8_len(self.snap.text[self.starts[row] : nxt])
        return size

    def text(self, first: int, last: int) -> str:
        """Rows first..last inclusive, terminators kept."""
        end = self.starts[last + 1] if last + 1 < self.n else self.size
        return self.snap.text[self.starts[first] : end]

    def _end(self, row: int) -> int:
        return self.starts[row + 1] if row + 1 < self.n else self.size

    def fit_up(self, line: int, limit: float, bpt: float) -> int:
        """First row of the longest run ending just above ``line`` that fits ``limit``."""
        if self.ascii:  # a row's cost is its length: one binary search over the line starts
            return bisect_left(self.starts, self.starts[line] - limit * bpt, 0, line)
        row, spent = line, 0.0
        while row > 0:
            cost = self.bytes(row - 1) / bpt
            if spent + cost > limit:
                break
            spent += cost
            row -= 1
        return row

    def fit_down(self, line: int, limit: float, bpt: float) -> int:
        """Last row of the longest run starting just below ``line`` that fits ``limit``."""
        if line + 1 >= self.n:
            return line
        if self.ascii:
            reach = self.starts[line + 1] + limit * bpt
            if self.size <= reach:
                return self.n - 1
            # rows r whose end (the next row's start) is within reach: r + 1 < bisect_right
            return max(line, bisect_right(self.starts, reach) - 2)
        row, spent = line, 0.0
        while row + 1 < self.n:
            cost = self.bytes(row + 1) / bpt
            if spent + cost > limit:
                break
            spent += cost
            row += 1
        return row

    def need(self, rows: range, cap: float, bpt: float) -> float:
        """Cost of ``rows`` (consecutive, either direction), summed only until it passes
        ``cap`` (so a caller may only compare the result with amounts up to ``cap``)."""
        if self.ascii:
            if not rows:
                return 0.0
            first, last = min(rows[0], rows[-1]), max(rows[0], rows[-1])
            return (self._end(last) - self.starts[first]) / bpt
        total = 0.0
        for row in rows:
            total += self.bytes(row) / bpt
            if total > cap:
                break
        return total


def window(
    snapshot: Snapshot,
    line: int,
    character: int,
    *,
    budget_tokens: int,
    prefix_ratio: float,
    count_tokens: Callable[[str], int],
    anchor: Anchor | None = None,
    slack: float = 0.0,
    keep_within: float | None = None,
) -> InFileWindow:
    """Prefix and suffix around the cursor within ``budget_tokens`` (rules in the module
    docstring): the ``anchor``'s while it fits ``keep_within`` tokens (default: the budget),
    otherwise a new cut that leaves ``slack`` of the budget free. Segment lines are 1-based
    and inclusive; their ``path`` is left empty."""
    snap = snapshot
    line, character = snap.clamp(line, character)
    lines = _Lines(snap)
    start, _, nxt = snap.line_span(line)
    cur = start + character
    head, tail = snap.text[start:cur], snap.text[cur:nxt]
    budget = max(0.0, float(budget_tokens))
    if anchor is not None:
        within = budget if keep_within is None else max(0.0, float(keep_within))
        kept = _kept(
            snap, lines, line, cur, head, anchor, within, budget * prefix_ratio, count_tokens
        )
        if kept is not None:
            return kept
    budget *= 1.0 - min(0.5, max(0.0, slack))
    ratio = min(1.0, max(0.0, float(prefix_ratio)))
    p_share, s_share = budget * ratio, budget * (1.0 - ratio)
    text = snap.text
    p_bpt = _calibrate(text[max(0, cur - min(int(p_share * 4), _SAMPLE)) : cur], count_tokens)
    s_bpt = _calibrate(text[cur : cur + min(int(s_share * 4), _SAMPLE)], count_tokens)

    # A cursor line longer than the whole budget (minified code) is the one thing cut mid-line.
    if len(head) > max(budget * p_bpt, _LONG_LINE):
        head = head[-int(max(budget * p_bpt, _LONG_LINE)) :]
    clipped_tail = len(tail) > max(budget * s_bpt, _LONG_LINE)
    if clipped_tail:
        tail = tail[: int(max(budget * s_bpt, _LONG_LINE))]
    # (clipping by characters while costs are in bytes only makes the clip more generous)

    prefix = _Prefix(snap, lines, line, character, head)
    last_row = line

    def suffix_pieces(bpt: float, allowance: float) -> list[Piece]:
        nonlocal last_row
        last_row = lines.fit_down(line, allowance, bpt) if allowance > 0 else line
        if clipped_tail:
            last_row = line
        body = lines.text(line + 1, last_row) if last_row > line else ""
        return [("suffix", line, last_row, tail + body)]

    def settle_prefix(limit: float) -> tuple[list[Piece], list[int]]:
        return _settle(prefix.pieces, limit, head, p_bpt, count_tokens)

    def settle_suffix(limit: float) -> tuple[list[Piece], list[int]]:
        return _settle(suffix_pieces, limit, tail, s_bpt, count_tokens)

    # The side that needs less than its share is settled first and the other side gets what it
    # really left over; otherwise the prefix goes first and the suffix gets the remainder.
    need_up = lines.need(range(line - 1, -1, -1), budget, p_bpt) + utf8_len(head) / p_bpt
    need_down = lines.need(range(line + 1, lines.n), budget, s_bpt) + utf8_len(tail) / s_bpt
    if need_down <= s_share and need_up > p_share:
        s_pieces, s_tokens = settle_suffix(budget)
        pieces, p_tokens = settle_prefix(budget - sum(s_tokens))
    else:
        pieces, p_tokens = settle_prefix(budget if need_up <= p_share else p_share)
        s_pieces, s_tokens = settle_suffix(budget - sum(p_tokens))
    suffix_text = s_pieces[0][3]
    segments = [
        Segment(kind, "", first + 1, last + 1, text, tokens)
        for (kind, first, last, text), tokens in zip(pieces, p_tokens, strict=True)
    ]
    segments.append(Segment("suffix", "", line + 1, last_row + 1, suffix_text, s_tokens[0]))
    cut = pieces[-1][1]
    return InFileWindow(
        prefix="".join(p[3] for p in pieces),
        suffix=suffix_text,
        segments=segments,
        prefix_tokens=sum(p_tokens),
        suffix_tokens=s_tokens[0],
        anchor=Anchor(
            cut_row=cut,
            cut_offset=lines.starts[cut],
            context=tuple(
                (k, r) for k, first, last, _ in pieces[:-1] for r in range(first, last + 1)
            ),
            tail=len(snap.text) - (cur + len(suffix_text)),
        ),
    )


def _kept(
    snap: Snapshot,
    lines: _Lines,
    line: int,
    cur: int,
    head: str,
    anchor: Anchor,
    budget: float,
    prefix_share: float,
    count: Callable[[str], int],
) -> InFileWindow | None:
    """The window cut where ``anchor`` says, or None when that no longer holds: the rows above
    the cut changed, the cursor left the span, the text no longer fits ``budget``, or the kept
    prefix has become much shorter than the file above the cursor could give."""
    cut, starts = anchor.cut_row, lines.starts
    end = len(snap.text) - anchor.tail
    if not (0 <= cut <= line and starts[cut] == anchor.cut_offset and cur <= end):
        return None
    if cur - starts[line] != len(head) or any(r >= cut for _, r in anchor.context):
        return None  # a clipped cursor line, or context rows that are no longer above the cut
    if end < len(snap.text) and snap.text[end - 1 : end] != "\n" and end != lines._end(line):
        return None  # the suffix no longer ends at a line break
    pieces = _prefix_pieces(lines, anchor.context, cut, line, head)
    suffix_text = snap.text[cur:end]
    p_tokens = [count(p[3]) for p in pieces]
    s_tokens = count(suffix_text)
    if sum(p_tokens) + s_tokens > budget:
        return None
    if cut > 0 and sum(p_tokens) < 0.5 * prefix_share:
        return None  # much more of the file above would fit now: cut anew
    last_row = bisect_right(starts, max(cur, end - 1)) - 1 if end > cur else line
    segments = [
        Segment(kind, "", first + 1, last + 1, text, tokens)
        for (kind, first, last, text), tokens in zip(pieces, p_tokens, strict=True)
    ]
    segments.append(Segment("suffix", "", line + 1, last_row + 1, suffix_text, s_tokens))
    return InFileWindow(
        prefix="".join(p[3] for p in pieces),
        suffix=suffix_text,
        segments=segments,
        prefix_tokens=sum(p_tokens),
        suffix_tokens=s_tokens,
        anchor=anchor,
    )


Piece = tuple[str, int, int, str]
"""(kind, first row, last row, text)."""


def _prefix_pieces(
    lines: _Lines, context: Sequence[tuple[str, int]], cut: int, line: int, head: str
) -> list[Piece]:
    """The prefix's pieces: the ``(kind, row)`` lines kept above ``cut`` (in row order), runs
    of one kind joined, then the rows from ``cut`` to the cursor."""
    out: list[Piece] = []
    for kind, row in context:
        if out and out[-1][0] == kind and out[-1][2] == row - 1:
            k, first, _, _ = out[-1]
            out[-1] = (k, first, row, lines.text(first, row))
        else:
            out.append((kind, row, row, lines.text(row, row)))
    body = lines.text(cut, line - 1) if cut < line else ""
    out.append(("prefix", cut, line, body + head))
    return out


def _calibrate(sample: str, count: Callable[[str], int]) -> float:
    """UTF-8 bytes per token, measured once on the text one side of the window will cover."""
    if len(sample) < 64:
        return DEFAULT_BYTES_PER_TOKEN
    return max(0.5, utf8_len(sample) / max(1, count(sample)))


def _settle(
    choose: Callable[[float, float], list[Piece]],
    limit: float,
    fixed: str,
    bpt: float,
    count: Callable[[str], int],
) -> tuple[list[Piece], list[int]]:
    """Choose pieces (given bytes per token and an allowance) within ``limit`` tokens, count
    them for real, and choose again with the measured ratio while they overflow or leave more
    than a tenth of the limit unused; the fullest choice that fits wins. The cursor line half
    (``fixed``) is always kept."""
    best: tuple[list[Piece], list[int]] | None = None
    fixed_size = utf8_len(fixed)
    for attempt in range(4):
        pieces = choose(bpt, limit - fixed_size / bpt)
        if best is not None and pieces == best[0]:
            break
        tokens = [count(p[3]) for p in pieces]
        total = sum(tokens)
        size = sum(utf8_len(p[3]) for p in pieces)
        if total <= limit or size <= fixed_size:
            if best is None or total > sum(best[1]):
                best = pieces, tokens
            measured = size / max(1, total)
            if total >= 0.9 * limit or size <= fixed_size or measured <= bpt:
                break
            bpt = measured  # the estimate was too pessimistic: take more with the real ratio
        else:
            bpt = size / total * (0.97**attempt)
    if best is not None:
        return best
    # Repeated overflow (a tokenizer far from linear on this text): the cursor line half alone,
    # which is what choosing with a vanishing allowance gives.
    pieces = choose(bpt, 0.0)
    return pieces, [count(p[3]) for p in pieces]


class _Prefix:
    """Chooses the prefix pieces: imports and headers above the cut, then the kept lines."""

    def __init__(self, snap: Snapshot, lines: _Lines, line: int, column: int, head: str) -> None:
        self.snap, self.lines, self.line, self.column, self.head = snap, lines, line, column, head
        self._context: list[tuple[str, int, int]] | None = None

    def pieces(self, bpt: float, allowance: float) -> list[Piece]:
        lines, line = self.lines, self.line
        clipped = len(self.head) < self.column  # a clipped line admits no lines before it
        cut = lines.fit_up(line, allowance, bpt) if allowance > 0 and not clipped else line
        chosen: dict[int, str] = {}
        if cut > 0 and allowance > 0:
            cap = allowance * CONTEXT_SHARE
            for _ in range(8):
                chosen = self._choose_context(cut, cap, bpt)
                spent = sum(lines.bytes(r) for r in chosen) / bpt
                new_cut = max(cut, lines.fit_up(line, allowance - spent, bpt))
                if new_cut == cut:
                    break
                cut = new_cut
        context = [(chosen[row], row) for row in sorted(chosen)]
        return _prefix_pieces(lines, context, cut, line, self.head)

    def _choose_context(self, cut: int, cap: float, bpt: float) -> dict[int, str]:
        """Rows above ``cut`` worth keeping: enclosing headers (innermost first), then imports
        in file order, each whole or not at all, within ``cap``."""
        chosen: dict[int, str] = {}
        spent = 0.0
        for kind, first, last in self.context():
            rows = [r for r in range(first, min(last, cut - 1) + 1) if r not in chosen]
            cost = sum(self.lines.bytes(r) for r in rows) / bpt
            if rows and spent + cost <= cap:
                spent += cost
                chosen.update(dict.fromkeys(rows, kind))
        return chosen

    def context(self) -> list[tuple[str, int, int]]:
        """(kind, first row, last row) of headers, innermost first, then imports in order."""
        if self._context is None:
            self._context = [("header", a, b) for a, b in reversed(self._headers())]
            self._context += [("import", a, b) for a, b in self._imports()]
        return self._context

    def _headers(self) -> list[tuple[int, int]]:
        snap, line, info = self.snap, self.line, self.snap.language
        text = snap.line_text(line)
        indent = self.column if not self.head.strip() else _indent(text)
        if snap.tree is not None and info is not None:
            from starcoder_ls.languages.syntax import enclosing_headers

            above = _code_line_above(snap, line) if not self.head.strip() else None
            trailing = len(self.head) - len(self.head.rstrip())
            anchor = (
                snap.point(line, self.column - trailing - 1)
                if self.head.strip()
                else _anchor(snap, above)
            )
            found = enclosing_headers(
                snap.tree.root_node, info, snap.point(line, self.column), anchor, indent
            )
            return [(snap.line_of_point(a), snap.line_of_point(b)) for a, b in found]
        return _indent_headers(snap, line, indent)

    def _imports(self) -> list[tuple[int, int]]:
        snap, info = self.snap, self.snap.language
        if snap.tree is not None and info is not None and info.import_types:
            from starcoder_ls.languages.syntax import import_ranges

            found = import_ranges(snap.tree.root_node, info, snap.point(self.line, 0))
            return [(snap.line_of_point(a), snap.line_of_point(b)) for a, b in found]
        pattern = info.import_line if info is not None and info.import_line else GENERIC_IMPORT
        rows: list[tuple[int, int]] = []
        for m in pattern.finditer(snap.text, 0, snap.line_starts[self.line]):
            row = bisect_right(snap.line_starts, m.start()) - 1
            if not rows or rows[-1][0] != row:
                rows.append((row, row))
        return rows


def _indent_headers(snap: Snapshot, line: int, indent: int) -> list[tuple[int, int]]:
    """Headers by indentation, for text without a tree: each less-indented code line above."""
    info: LanguageInfo | None = snap.language
    comment = info.line_comment if info else None
    out: list[tuple[int, int]] = []
    for row in range(line - 1, max(-1, line - 1 - _SCAN_LIMIT), -1):
        if indent == 0:
            break
        code = _strip_comment(snap.line_text(row), comment)
        if not code.strip() or _CLOSE_ONLY.match(code):
            continue
        level = _indent(code)
        if level < indent:
            out.append((row, row))
            indent = level
    out.reverse()
    return out
