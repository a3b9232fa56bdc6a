"""Open documents: the text exactly as the client sent it, positions in the negotiated encoding,
and a tree-sitter tree kept in step with the text by incremental edits.

Three coordinate systems meet here. LSP positions are (line, character) with lines split at
``\\n``, ``\\r\\n`` and ``\\r`` and characters counted in the negotiated encoding's units. Python
works in code point offsets into ``text``. tree-sitter works in UTF-8 bytes and its points are
(row, byte column) with rows split at ``\\n`` only. Everything past the server uses code points;
tree-sitter coordinates are derived here and in :class:`Snapshot`, never by hand elsewhere.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from starcoder_ls.languages.registry import LanguageInfo, for_header, language_for, parser_for

if TYPE_CHECKING:
    import tree_sitter

log = logging.getLogger(__name__)

MAX_TREE_CHARS = 2_000_000
"""Larger documents are kept as plain text: a parse must never stall the server."""

Range = tuple[tuple[int, int], tuple[int, int]]
Point = tuple[int, int]

_BREAK = re.compile(r"\r\n|\r|\n")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


class PositionEncoding(str, Enum):
    UTF8 = "utf-8"
    UTF16 = "utf-16"
    UTF32 = "utf-32"


def line_starts(text: str) -> list[int]:
    """Code point offsets where LSP lines begin (always starts with 0)."""
    starts = [0]
    starts.extend(m.end() for m in _BREAK.finditer(text))
    return starts


class LineStarts:
    """Where each line starts, kept cheap to edit in huge documents.

    An edit moves every later line. Shifting all of them on each keystroke cost 0.13 s in a
    10 MB file; instead the shift of the tail is kept pending (entries from ``_from`` on are
    ``_delta`` too small), and an edit only settles the entries between the pending point and
    itself. Typing stays near one place, so a keystroke costs O(1) plus a slice move.
    """

    __slots__ = ("_a", "_delta", "_from")

    def __init__(self, starts: list[int]) -> None:
        self._a = starts
        self._from = len(starts)
        self._delta = 0

    def __len__(self) -> int:
        return len(self._a)

    def __getitem__(self, i: int) -> int:
        if i < 0:
            i += len(self._a)
        value = self._a[i]
        return value + self._delta if i >= self._from else value

    def _add(self, lo: int, hi: int, delta: int) -> None:
        if delta and lo < hi:
            a = self._a
            a[lo:hi] = [v + delta for v in a[lo:hi]]

    def replace(self, lo: int, hi: int, mid: list[int], delta: int) -> None:
        """Entries [lo, hi) become ``mid`` (true offsets); entries from ``hi`` on move by
        ``delta``."""
        f, d = self._from, self._delta
        if f >= hi:
            # [hi, f) needs delta, [f, end) needs d + delta: settle the shorter run.
            if d == 0 or len(self._a) - f < f - hi:
                self._add(f, len(self._a), d)
                tail_from, tail_delta = hi, delta
            else:
                self._add(hi, f, delta)
                tail_from, tail_delta = f, d + delta
        else:
            self._add(f, lo, d)  # before the edit: settle the pending shift
            tail_from, tail_delta = hi, d + delta
        self._a[lo:hi] = mid
        moved = len(mid) - (hi - lo)
        self._from, self._delta = tail_from + moved, tail_delta
        if self._from >= len(self._a):
            self._from, self._delta = len(self._a), 0

    def frozen(self) -> Sequence[int]:
        """An immutable copy for a snapshot. Settling a pending shift over a long tail costs a
        pass over it (0.1 s for 1.7 million lines); a frozen copy keeps the shift instead."""
        if len(self._a) - self._from < SETTLE_BELOW:
            return tuple(self.settled())
        return _FrozenStarts(tuple(self._a), self._from, self._delta)

    def settled(self) -> list[int]:
        """The plain list (the pending shift applied)."""
        self._add(self._from, len(self._a), self._delta)
        self._from, self._delta = len(self._a), 0
        return self._a


SETTLE_BELOW = 50_000
"""A pending shift over fewer entries than this is applied when a snapshot is taken."""


class _FrozenStarts(Sequence[int]):
    """Line starts of a snapshot: the entries, with the shift still pending from ``start``."""

    __slots__ = ("_a", "_delta", "_from")

    def __init__(self, starts: tuple[int, ...], start: int, delta: int) -> None:
        self._a, self._from, self._delta = starts, start, delta

    def __len__(self) -> int:
        return len(self._a)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self._a)))]
        if i < 0:
            i += len(self._a)
        value = self._a[i]
        return value + self._delta if i >= self._from else value


def utf8_len(s: str) -> int:
    """Bytes of ``s`` as tree-sitter sees it (lone surrogates count 3, as surrogatepass encodes)."""
    return len(s) if s.isascii() else len(s.encode("utf-8", "surrogatepass"))


def _utf8_width(ch: str) -> int:
    o = ord(ch)
    return 1 if o < 0x80 else 2 if o < 0x800 else 3 if o < 0x10000 else 4


def _utf16_width(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def units_to_cp(s: str, units: int, encoding: PositionEncoding) -> int:
    """Code points of ``s`` covered by ``units``; a split character rounds down to its start."""
    if units <= 0:
        return 0
    if encoding is PositionEncoding.UTF32 or s.isascii():
        return min(units, len(s))
    if encoding is PositionEncoding.UTF16:
        if not _ASTRAL.search(s):
            return min(units, len(s))
        width = _utf16_width
    else:
        width = _utf8_width
    total = 0
    for i, ch in enumerate(s):
        total += width(ch)
        if total > units:
            return i
    return len(s)


def cp_to_units(s: str, encoding: PositionEncoding) -> int:
    """Length of ``s`` in the encoding's units."""
    if encoding is PositionEncoding.UTF32 or s.isascii():
        return len(s)
    if encoding is PositionEncoding.UTF16:
        return len(s) + len(_ASTRAL.findall(s))
    return utf8_len(s)


def _content_end(text: str, starts: Sequence[int] | LineStarts, line: int) -> int:
    """Offset where ``line``'s content ends (before its terminator)."""
    if line + 1 >= len(starts):
        return len(text)
    nxt = starts[line + 1]
    return nxt - 2 if text.startswith("\r\n", nxt - 2) and nxt - 2 >= starts[line] else nxt - 1


def _ts_point(text: str, offset: int) -> Point:
    """tree-sitter point of a code point offset: rows split at ``\\n`` only, byte columns."""
    row_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset), utf8_len(text[row_start:offset])


def uri_path(uri: str) -> str | None:
    """The file path of a ``file:`` URI (or of a bare path); None for other schemes."""
    if uri.startswith("file:"):
        return unquote(urlparse(uri).path)
    return None if "://" in uri or uri.startswith("untitled:") else uri or None


class Document:
    """One open document. Not thread-safe: the event loop owns it; workers get snapshots."""

    def __init__(
        self,
        uri: str,
        language_id: str = "",
        version: int = 0,
        text: str = "",
        encoding: PositionEncoding = PositionEncoding.UTF16,
        *,
        language: LanguageInfo | None = None,
    ) -> None:
        self.uri = uri
        self.language_id = language_id
        self.version = version
        self.encoding = encoding
        found = language or language_for(language_id, uri_path(uri))
        if found is not None and text:
            found = for_header(found, uri_path(uri) or "", text)  # C++ in a `.h` file
        self.language = found
        self._text = text
        self._starts = LineStarts(line_starts(text))
        self._tree: tree_sitter.Tree | None = None
        self._dirty = True
        """The text changed since the tree was last parsed (edits are already applied to it)."""

    @property
    def text(self) -> str:
        return self._text

    @property
    def line_count(self) -> int:
        return len(self._starts)

    def line_text(self, line: int) -> str:
        """Content of ``line`` without its terminator; empty when out of range."""
        if not 0 <= line < len(self._starts):
            return ""
        return self._text[self._starts[line] : _content_end(self._text, self._starts, line)]

    # -- positions -------------------------------------------------------------------------

    def offset_at(self, line: int, character: int) -> int:
        """Code point offset of an LSP position, clamped as the spec says: past the line end
        means the line end, past the last line means the end of the document."""
        if line < 0:
            return 0
        if line >= len(self._starts):
            return len(self._text)
        start = self._starts[line]
        end = _content_end(self._text, self._starts, line)
        if self.encoding is PositionEncoding.UTF32:
            return start + max(0, min(character, end - start))
        return start + units_to_cp(self._text[start:end], character, self.encoding)

    def position_at(self, offset: int) -> tuple[int, int]:
        """LSP position of a code point offset (inside a line terminator means the line end)."""
        line, column = self._cp_position(offset)
        start = self._starts[line]
        return line, cp_to_units(self._text[start : start + column], self.encoding)

    def to_codepoints(self, line: int, character: int) -> tuple[int, int]:
        """An LSP position as (line, code point column), clamped into the document."""
        return self._cp_position(self.offset_at(line, character))

    def from_codepoints(self, line: int, column: int) -> tuple[int, int]:
        """A (line, code point column) as an LSP position in the negotiated encoding."""
        if line < 0:
            return 0, 0
        if line >= len(self._starts):
            return self.position_at(len(self._text))
        start = self._starts[line]
        end = _content_end(self._text, self._starts, line)
        return self.position_at(start + max(0, min(column, end - start)))

    def _cp_position(self, offset: int) -> tuple[int, int]:
        offset = max(0, min(offset, len(self._text)))
        line = bisect_right(self._starts, offset) - 1
        end = _content_end(self._text, self._starts, line)
        return line, min(offset, end) - self._starts[line]

    # -- edits -----------------------------------------------------------------------------

    def apply_change(self, text: str, range: Range | None = None) -> None:
        """Apply one LSP content change; ``range`` in the document's encoding, None replaces all.

        A full replace is reduced to the span that really changed, so the tree stays
        incremental for clients that sync whole documents.
        """
        if range is None:
            old = self._text
            p = _common_prefix(old, text)
            q = _common_suffix(old, text, min(len(old), len(text)) - p)
            self._splice(p, len(old) - q, text[p : len(text) - q])
            return
        (sl, sc), (el, ec) = range
        start, end = self.offset_at(sl, sc), self.offset_at(el, ec)
        if end < start:
            start, end = end, start
        self._splice(start, end, text)

    def _splice(self, start: int, end: int, new: str) -> None:
        old = self._text
        if start == end and not new:
            return
        text = old[:start] + new + old[end:]
        self._update_starts(text, start, end, len(new))
        tree = self._tree
        if tree is not None and len(text) > MAX_TREE_CHARS:
            self._tree = tree = None
        if tree is not None:
            ascii_old = old.isascii()
            start_byte = start if ascii_old else utf8_len(old[:start])
            old_end_byte = start_byte + (end - start if ascii_old else utf8_len(old[start:end]))
            start_point = _ts_point(old, start)
            old_end_point = _ts_point(old, end)
            newlines = new.count("\n")
            if newlines:
                tail = utf8_len(new[new.rfind("\n") + 1 :])
                new_end_point = (start_point[0] + newlines, tail)
            else:
                new_end_point = (start_point[0], start_point[1] + utf8_len(new))
            tree.edit(
                start_byte,
                old_end_byte,
                start_byte + utf8_len(new),
                start_point,
                old_end_point,
                new_end_point,
            )
        self._text = text
        self._dirty = True

    def _update_starts(self, text: str, start: int, end: int, inserted: int) -> None:
        """Line starts after replacing [start, end) by ``inserted`` code points.

        Whether offset p starts a line depends on text[p-1] and text[p] only, so only offsets in
        [start, start + inserted] are recomputed; later ones shift by the length difference.
        """
        starts = self._starts
        lo = bisect_left(starts, max(start, 1))
        hi = bisect_right(starts, end)
        first, last = max(start, 1), start + inserted
        mid = [
            m.end()
            for m in _BREAK.finditer(text, max(start - 1, 0), min(len(text), last + 1))
            if first <= m.end() <= last
        ]
        starts.replace(lo, hi, mid, inserted - (end - start))

    # -- tree and snapshots ----------------------------------------------------------------

    def tree(self) -> tree_sitter.Tree | None:
        """The syntax tree of the current text, parsed now if edits are pending (incrementally
        when an edited tree exists); None without a grammar, for huge or binary text."""
        if not self._dirty:
            return self._tree
        self._dirty = False
        parser = parser_for(self.language)
        if parser is None or len(self._text) > MAX_TREE_CHARS or "\x00" in self._text:
            self._tree = None
            return None
        data = self._text.encode("utf-8", "surrogatepass")
        try:
            old = self._tree
            self._tree = parser.parse(data, old) if old is not None else parser.parse(data)
        except Exception:  # a grammar failure degrades to plain text, never to an error
            log.exception("tree-sitter failed on %s", self.uri)
            self._tree = None
        return self._tree

    def snapshot(self, *, with_tree: bool = True) -> Snapshot:
        """An immutable view for work off the event loop; its tree is a private copy, so later
        edits of this document never touch it."""
        tree = self.tree() if with_tree else None
        return Snapshot(
            uri=self.uri,
            language_id=self.language_id,
            version=self.version,
            text=self._text,
            tree=tree.copy() if tree is not None else None,
            language=self.language,
            line_starts=self._starts.frozen(),
        )

    def copy(self) -> Document:
        """An independent document with the same content (e.g. to try an edit on the side)."""
        doc = Document(
            self.uri, self.language_id, self.version, "", self.encoding, language=self.language
        )
        doc._text, doc._starts = self._text, LineStarts(list(self._starts.settled()))
        doc._tree = self._tree.copy() if self._tree is not None else None
        doc._dirty = self._dirty
        return doc


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    lo = 0
    step = 4096
    while lo < n and a[lo : lo + step] == b[lo : lo + step]:
        lo += step
    hi = min(lo + step, n)
    while lo < hi and a[lo] == b[lo]:
        lo += 1
    return min(lo, n)


def _common_suffix(a: str, b: str, limit: int) -> int:
    """Length of the common suffix of ``a`` and ``b``, at most ``limit``."""
    k = 0
    step = 4096
    la, lb = len(a), len(b)
    while k + step <= limit and a[la - k - step : la - k] == b[lb - k - step : lb - k]:
        k += step
    while k < limit and a[la - k - 1] == b[lb - k - 1]:
        k += 1
    return k


@dataclass(frozen=True)
class Snapshot:
    """What the completion pipeline works on: one version of a document, never mutated.

    Positions here are plain: 0-based lines and code point columns.
    """

    uri: str
    language_id: str
    version: int
    text: str
    tree: tree_sitter.Tree | None = None
    language: LanguageInfo | None = None
    line_starts: Sequence[int] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.line_starts:
            object.__setattr__(self, "line_starts", tuple(line_starts(self.text)))

    @classmethod
    def from_text(
        cls,
        text: str,
        *,
        uri: str = "",
        language_id: str | None = None,
        path: str | None = None,
        version: int = 0,
    ) -> Snapshot:
        """A parsed snapshot of text that is not open in an editor (the CLI, tests)."""
        language = language_for(language_id, path or uri_path(uri))
        doc = Document(uri, language_id or "", version, text, language=language)
        return doc.snapshot()

    @property
    def line_count(self) -> int:
        return len(self.line_starts)

    def line_span(self, line: int) -> tuple[int, int, int]:
        """(start, content end, next line start) of ``line`` as code point offsets."""
        start = self.line_starts[line]
        nxt = self.line_starts[line + 1] if line + 1 < len(self.line_starts) else len(self.text)
        return start, _content_end(self.text, self.line_starts, line), nxt

    def line_text(self, line: int) -> str:
        if not 0 <= line < len(self.line_starts):
            return ""
        start, end, _ = self.line_span(line)
        return self.text[start:end]

    def clamp(self, line: int, column: int) -> tuple[int, int]:
        """A (line, column) moved inside the document the way LSP clamps positions."""
        if line < 0:
            return 0, 0
        if line >= len(self.line_starts):
            last = len(self.line_starts) - 1
            return last, len(self.line_text(last))
        start, end, _ = self.line_span(line)
        return line, max(0, min(column, end - start))

    @cached_property
    def _rows_are_lines(self) -> bool:
        """tree-sitter rows equal LSP lines unless the text has a lone ``\\r`` line break."""
        if "\r" not in self.text:  # the usual case, one fast scan
            return True
        return self.text.count("\r") == self.text.count("\r\n")

    def point(self, line: int, column: int) -> Point:
        """tree-sitter point of a (line, code point column) inside the document."""
        start = self.line_starts[line]
        if self._rows_are_lines:
            return line, utf8_len(self.text[start : start + column])
        return _ts_point(self.text, start + column)

    def line_of_point(self, point: Point) -> int:
        """The LSP line holding a tree-sitter point."""
        row, col = point
        if self._rows_are_lines:
            return max(0, min(row, len(self.line_starts) - 1))
        rows = self._row_starts
        row = max(0, min(row, len(rows) - 1))
        start = rows[row]
        stop = rows[row + 1] if row + 1 < len(rows) else len(self.text)
        offset = start + units_to_cp(self.text[start:stop], col, PositionEncoding.UTF8)
        return bisect_right(self.line_starts, offset) - 1

    @cached_property
    def _row_starts(self) -> list[int]:
        return [0] + [m.end() for m in re.finditer("\n", self.text)]


class DocumentStore:
    """The open documents by URI, all in the encoding negotiated with the client."""

    def __init__(self, encoding: PositionEncoding = PositionEncoding.UTF16) -> None:
        self._docs: dict[str, Document] = {}
        self._encoding = encoding

    @property
    def encoding(self) -> PositionEncoding:
        return self._encoding

    @encoding.setter
    def encoding(self, value: PositionEncoding) -> None:
        self._encoding = value
        for doc in self._docs.values():
            doc.encoding = value

    def open(self, uri: str, language_id: str, version: int, text: str) -> Document:
        doc = Document(uri, language_id, version, text, self._encoding)
        self._docs[uri] = doc
        return doc

    def change(
        self, uri: str, version: int, changes: Iterable[tuple[str, Range | None]]
    ) -> Document | None:
        """Apply content changes in order; None when the document is not open."""
        doc = self._docs.get(uri)
        if doc is None:
            return None
        for text, rng in changes:
            doc.apply_change(text, rng)
        doc.version = version
        return doc

    def get(self, uri: str) -> Document | None:
        return self._docs.get(uri)

    def close(self, uri: str) -> None:
        self._docs.pop(uri, None)

    def __contains__(self, uri: object) -> bool:
        return uri in self._docs

    def __len__(self) -> int:
        return len(self._docs)

    def __iter__(self) -> Iterator[Document]:
        return iter(list(self._docs.values()))
