"""The text around a definition, for the outline: its header as written (the signature), the
comment block above it and Python docstrings.

Everything here looks at bytes next to a definition and never walks the tree away from it, and
every backwards scan is bounded (a few dozen lines of at most ``_MAX_COMMENT_LINE`` bytes), so
a file with tens of thousands of definitions, or all of them on one minified line, stays linear.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tree_sitter

MAX_SIGNATURE = 400
MAX_DOC_LINES = 6
_MAX_COMMENT_SCAN = 60
"""Lines looked at above a definition for its comment block."""
_MAX_COMMENT_LINE = 1024
"""Longer lines are not looked into for comments (minified code)."""

_NO_BLOCK_COMMENTS = frozenset({"python", "ruby", "bash", "lua"})
_END_KEYWORD = frozenset({"ruby", "lua"})
_QUOTES = re.compile(r"^[rRuUbBfFtT]{0,2}(\"\"\"|'''|\"|')")
_XML_DOC_TAG = re.compile(r"</?(?:summary|remarks|returns|para)>")


class DefinitionText:
    """Signature, doc comment and docstring extraction for one file of one language."""

    def __init__(self, language: str, source: bytes) -> None:
        self.language = language
        self.src = source
        if language in ("python", "ruby", "bash"):
            self.line_markers: tuple[str, ...] = ("#",)
        elif language == "lua":
            self.line_markers = ("--",)
        elif language == "php":
            self.line_markers = ("//", "#")
        else:
            self.line_markers = ("//",)
        self.block_comments = language not in _NO_BLOCK_COMMENTS
        markers = [re.escape(m.encode()) for m in self.line_markers]
        if self.block_comments:
            markers.append(re.escape(b"/*"))
        self.has_comment = re.compile(b"|".join(markers)).search
        self.comment_start = tuple(m.encode() for m in self.line_markers)
        if self.block_comments or language == "rust":
            self.comment_start += (b"/*", b"*", b"#[")

    def signature(
        self,
        node: tree_sitter.Node,
        header: tree_sitter.Node,
        body: tree_sitter.Node | None,
        sig_end: tree_sitter.Node | None,
    ) -> str:
        """The header of ``node`` as written from ``header`` to ``body`` (or through
        ``sig_end``, or the whole node), without a trailing ``{``/``;``, with continuation lines
        dedented by the first line's indentation, at most ``MAX_SIGNATURE`` characters."""
        start = header.start_byte
        if body is not None:
            end = body.start_byte
            # A comment between header and body (`def f():  # note`): when the body is among
            # the node's children, stop at the last token before it.
            last = -1
            commented = self.has_comment(self.src, start, end) is not None
            for child in node.children if commented else ():
                if child.start_byte >= body.start_byte:
                    if child == body and last >= 0:
                        end = last
                    break
                if not child.is_extra:
                    last = child.end_byte
        elif sig_end is not None:
            end = sig_end.end_byte
        else:
            end = node.end_byte
        end = min(end, start + 4 * MAX_SIGNATURE)
        raw = self.src[start:end].decode("utf-8", "replace").replace("\r", "").rstrip()
        if body is None and self.language in _END_KEYWORD and raw.endswith("end"):
            raw = raw[:-3].rstrip()
        if self.language != "python":
            # A declaration without a body keeps its `;` (a C prototype, an interface or trait
            # method, an overload), so that its outline reads as a declaration.
            declared = body is None and raw.endswith(";") and raw.rstrip(";").rstrip()[-1:] == ")"
            raw = raw.rstrip("{;").rstrip() + (";" if declared else "")
            if self.language == "ruby" and raw.endswith("="):  # endless `def f = expr`
                raw = raw[:-1].rstrip()
        if "\n" in raw:
            line_start = start - header.start_point.column
            prefix = self.src[line_start : min(start, line_start + 256)]
            indent = len(prefix) - len(prefix.lstrip())
            lines = raw.split("\n")
            raw = "\n".join(
                [lines[0]] + [ln[min(indent, len(ln) - len(ln.lstrip())) :] for ln in lines[1:]]
            )
        return raw[:MAX_SIGNATURE].rstrip()

    def docstring(self, body: tree_sitter.Node) -> str:
        """The first string statement of a Python body, quotes removed, dedented."""
        for i in range(body.named_child_count):
            stmt = body.named_child(i)
            if stmt is None or stmt.type == "comment":
                continue
            string = None
            if stmt.type == "expression_statement" and stmt.named_child_count:
                string = stmt.named_child(0)
            if string is None or string.type != "string":
                return ""
            raw = self.src[string.start_byte : min(string.end_byte, string.start_byte + 4000)]
            text = raw.decode("utf-8", "replace").replace("\r", "")
            match = _QUOTES.match(text)
            if match is None:
                return ""
            quote = match.group(1)
            text = text[match.end() :]
            if text.endswith(quote):
                text = text[: -len(quote)]
            lines = text.expandtabs().split("\n")[: MAX_DOC_LINES * 3]
            return _clip([lines[0].strip(), *_dedent(lines[1:])])
        return ""

    def line_begin(self, end: int) -> int:
        """Start of the line that ends at byte ``end``; -1 when it is too long to be a comment
        (minified code: looking further back would make many symbols quadratic)."""
        newline = self.src.rfind(b"\n", max(0, end - _MAX_COMMENT_LINE), end)
        if newline < 0 and end > _MAX_COMMENT_LINE:
            return -1
        return newline + 1

    def comment_above(self, node: tree_sitter.Node) -> str:
        """The contiguous comment block ending on the line above ``node``, markers removed."""
        src = self.src
        column = node.start_point.column
        if column > _MAX_COMMENT_LINE:
            return ""
        end = node.start_byte - column - 1  # the newline ending the line above
        begin = self.line_begin(end) if end >= 0 else -1
        above = src[begin:end].strip() if begin >= 0 else b""
        if not above.startswith(self.comment_start) and not above.endswith(b"*/"):
            return ""  # the common case, decided without decoding anything
        raw: list[str] = []  # lines found, bottom up
        while end >= 0 and len(raw) < _MAX_COMMENT_SCAN:
            begin = self.line_begin(end)
            if begin < 0:
                break
            line = src[begin:end].decode("utf-8", "replace").strip()
            if not line:
                break
            if self.language == "rust" and line.startswith("#[") and not raw:
                end = begin - 1  # attributes between the doc comment and the item
                continue
            if self.block_comments and line.endswith("*/"):
                if "/*" in line and not line.startswith("/*"):
                    break  # a comment after code (`#define X 2 /* ... */`): not a doc block
                block = [line]
                while not block[-1].startswith("/*") and begin > 0 and len(block) < 200:
                    end = begin - 1
                    begin = self.line_begin(end)
                    if begin < 0:
                        break
                    above_line = src[begin:end].decode("utf-8", "replace").strip()
                    if "*/" in above_line:
                        break  # another comment's end: this one's start was never found
                    block.append(above_line)
                if not block[-1].startswith("/*"):
                    break
                raw.extend(_clean_block(block[::-1])[::-1])
                end = begin - 1
                continue
            marker = next((m for m in self.line_markers if line.startswith(m)), None)
            if marker is None or line.startswith(("#!", "#[")):
                break
            text = line.lstrip(marker[0])
            if marker == "//" and text.startswith("!"):
                text = text[1:]
            raw.append(text)
            end = begin - 1
        if not raw:
            return ""
        lines = [ln for ln in raw[::-1] if not _RULE.match(ln)]
        if all(_CODE_LINE.search(ln) for ln in lines if ln.strip()):
            return ""  # commented-out code (`/* #define X 0x20 */`), not documentation
        if any(_BANNER.search(ln) for ln in lines):
            return ""  # a section banner (`/////  Parsing  /////`), not this definition's doc
        if self.language == "csharp":
            lines = [_XML_DOC_TAG.sub("", ln) for ln in lines]
        return _clip(_dedent(lines))


_CODE_LINE = re.compile(
    r"^\s*#\s*(?:define|include|if|ifdef|ifndef|elif|else|endif|undef|pragma)\b|[;{}]\s*$"
)


_BANNER = re.compile(r"\w\S*\s+[/*=#~-]{3,}\s*$")
"""A comment line of words followed by a run of decoration: a section heading."""
_RULE = re.compile(r"^\s*[/*=#~-]{3,}\s*$")
"""A comment line of decoration alone (a horizontal rule)."""


def _clean_block(lines: list[str]) -> list[str]:
    """``/** ... */`` lines (stripped) without the delimiters and the leading ``*``."""
    out = []
    last = len(lines) - 1
    for i, line in enumerate(lines):
        if i == 0:
            line = line[2:].lstrip("*!")
        if i == last and line.endswith("*/"):
            line = line[:-2]
        if i and line.startswith("*"):
            line = line[1:]
        out.append(line)
    return out


def _dedent(lines: list[str]) -> list[str]:
    indents = [len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()]
    cut = min(indents, default=0)
    return [ln[cut:].rstrip() for ln in lines]


def _clip(lines: list[str]) -> str:
    """At most ``MAX_DOC_LINES`` lines, blank lines trimmed at both ends."""
    while lines and not lines[0].strip():
        lines = lines[1:]
    lines = lines[:MAX_DOC_LINES]
    return "\n".join(ln.rstrip() for ln in lines).strip()
