"""Outline one file for the workspace index: its definitions (from tree-sitter tag queries) and
its imports.

The index outlines every file of a workspace, so this runs thousands of times at start-up and
again on each save: one parse, one query pass and a few linear loops, never anything quadratic
(no ``Node.parent``/``prev_sibling`` walks, which tree-sitter answers by descending from the
root). Which definitions exist is said by ``languages/queries/<language>-tags.scm`` in the
common tags convention (``@definition.class`` around a node, ``@name`` on its name), plus a few
captures of our own: ``@body`` (the header stops there), ``@sig_end`` (the header ends with it),
``@parent`` (an explicit parent name), ``@outer`` (a wrapper such as a decorated definition,
above which leading comments sit), ``@decl`` (a Go declaration holding a single spec) and
``@scope.function`` / ``@scope.impl`` (anonymous functions, whose contents are not symbols, and
Rust impl blocks, which name the parent of their methods). Parents and nesting come from one
sweep over the captures sorted by position.

Nothing here raises: unknown languages, missing grammars, binary text and broken query files
give an empty outline (the last with a warning), syntax errors give what could be recovered.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from starcoder_ls.context.import_parse import imports_and_package
from starcoder_ls.context.symbols import FileOutline, Symbol
from starcoder_ls.languages import registry
from starcoder_ls.languages.registry import LanguageInfo

if TYPE_CHECKING:
    import tree_sitter

log = logging.getLogger(__name__)

KINDS = frozenset(
    {
        "class",
        "function",
        "method",
        "interface",
        "struct",
        "enum",
        "trait",
        "type",
        "module",
        "constant",
        "macro",
    }
)
CONTAINERS = frozenset({"class", "struct", "interface", "trait", "enum", "module", "impl"})
"""Kinds whose members name them as parent."""
_METHOD_HOSTS = frozenset({"class", "struct", "interface", "trait", "enum", "impl"})
"""A function directly inside one of these is a method (Ruby adds ``module``)."""
_CALLABLE = frozenset({"function", "method"})
MAX_SIGNATURE = 400
MAX_DOC_LINES = 6
_MAX_COMMENT_SCAN = 60
"""Lines looked at above a definition for its comment block."""
_MAX_COMMENT_LINE = 1024
"""Longer lines are not looked into for comments (minified code)."""
_DECORATIONS = frozenset(
    {"decorator", "marker_annotation", "annotation", "attribute_list", "attribute"}
)
"""Leading children of a definition that are not its header (Java/TS/C#/PHP annotations)."""
_MAX_START_DEPTH = {"python": 10, "go": 3, "lua": 4, "bash": 4}
"""How deep below the root a definition may start (default 12): tree-sitter then skips the
subtrees below, mostly function bodies, where no symbol can be. A class in a class in a class
in an ``if`` is still within reach."""
_NO_BLOCK_COMMENTS = frozenset({"python", "ruby", "bash", "lua"})
_END_KEYWORD = frozenset({"ruby", "lua"})
_QUOTES = re.compile(r"^[rRuUbBfFtT]{0,2}(\"\"\"|'''|\"|')")
_TEMPLATE_ARGS = re.compile(r"<.*>")
_XML_DOC_TAG = re.compile(r"</?(?:summary|remarks|returns|para)>")


def outline(
    text: str,
    language: LanguageInfo | str | None,
    path: str | None = None,
    tree: tree_sitter.Tree | None = None,
) -> FileOutline:
    """Definitions, imports and package of ``text``; empty when the language is not outlined."""
    try:
        info = language if isinstance(language, LanguageInfo) else None
        if info is None:
            info = registry.language_for(language if isinstance(language, str) else None, path)
        if info is None or not text or "\x00" in text:
            return FileOutline()
        query = tag_query(info)
        if query is None:
            return FileOutline()
        source = text.encode("utf-8", "surrogatepass")
        if tree is None:
            parser = registry.parser_for(info)
            if parser is None:
                return FileOutline()
            tree = parser.parse(source)
        root = tree.root_node
        errors = root.has_error
    except Exception as exc:
        log.debug("outline failed before parsing: %s", exc, exc_info=True)
        return FileOutline(errors=True)
    symbols: tuple[Symbol, ...] = ()
    try:
        symbols = _Outliner(info.name, source).symbols(query, root)
    except Exception as exc:
        log.debug("outline of symbols failed (%s): %s", path or info.name, exc, exc_info=True)
        errors = True
    try:
        imports, package = imports_and_package(info.name, root, source)
    except Exception as exc:
        log.debug("outline of imports failed (%s): %s", path or info.name, exc, exc_info=True)
        return FileOutline(symbols, errors=True)
    return FileOutline(symbols, imports, package, errors)


def query_source(name: str) -> str | None:
    """The text of ``queries/<name>-tags.scm`` with its ``; inherits: other`` files in front."""
    try:
        ref = resources.files("starcoder_ls.languages") / "queries" / f"{name}-tags.scm"
        own = ref.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    parts = []
    for line in own.splitlines():
        if not line.startswith("; inherits:"):
            break
        for base in line.partition(":")[2].split(","):
            inherited = query_source(base.strip()) if base.strip() != name else None
            if inherited:
                parts.append(inherited)
    parts.append(own)
    return "\n".join(parts)


@cache
def tag_query(info: LanguageInfo) -> tree_sitter.Query | None:
    """The compiled tag query of a language, or None (no grammar, no file, or it is broken)."""
    language = registry.load_language(info)
    if language is None:
        return None
    source = query_source(info.name)
    if source is None:
        log.debug("no tag query for %s", info.name)
        return None
    try:
        import tree_sitter

        return tree_sitter.Query(language, source)
    except Exception as exc:  # QueryError, or a grammar whose node names changed
        log.warning("tag query for %s does not compile, no outline: %s", info.name, exc)
        return None


@dataclass(slots=True)
class _Capture:
    start: int
    end: int
    order: int
    """Sort rank among captures of the same range: definitions before scopes, patterns in
    file order."""
    kind: str
    """Symbol kind, or ``scope.function`` / ``scope.impl``."""
    name: str
    node: tree_sitter.Node
    caps: dict[str, list[tree_sitter.Node]]


class _Outliner:
    """Turns the matches of one tag query over one tree into symbols."""

    def __init__(self, language: str, source: bytes) -> None:
        self.language = language
        self.src = source
        self.method_hosts = _METHOD_HOSTS | {"module"} if language == "ruby" else _METHOD_HOSTS
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

    def text(self, node: tree_sitter.Node) -> str:
        return self.src[node.start_byte : node.end_byte].decode("utf-8", "replace")

    def captures(self, query: tree_sitter.Query, root: tree_sitter.Node) -> list[_Capture]:
        import tree_sitter

        out: list[_Capture] = []
        cursor = tree_sitter.QueryCursor(query)
        cursor.set_max_start_depth(_MAX_START_DEPTH.get(self.language, 12))
        for pattern, caps in cursor.matches(root):
            for key, nodes in caps.items():
                if key.startswith("definition."):
                    kind = key[11:]
                    if kind not in KINDS:
                        break
                    names = caps.get("name")
                    name = self.text(names[0]).strip() if names else ""
                    if not name:
                        break
                    order = pattern
                elif key.startswith("scope."):
                    kind = key
                    names = caps.get("name")
                    name = self.text(names[0]).strip() if names else ""
                    order = 1_000_000 + pattern
                else:
                    continue
                node = nodes[0]
                out.append(_Capture(node.start_byte, node.end_byte, order, kind, name, node, caps))
                break
        out.sort(key=lambda c: (c.start, -c.end, c.order))
        return out

    def symbols(self, query: tree_sitter.Query, root: tree_sitter.Node) -> tuple[Symbol, ...]:
        result: list[Symbol] = []
        seen: set[tuple[int, int, str]] = set()
        # Open ranges: (end byte, enclosing container name, its kind, inside a function body).
        stack: list[tuple[int, str, str, bool]] = []
        for cap in self.captures(query, root):
            key = (cap.start, cap.end, cap.kind if cap.kind.startswith("scope.") else cap.name)
            if key in seen:  # a second pattern for the same definition (decorated, typedef)
                continue
            seen.add(key)
            while stack and stack[-1][0] <= cap.start:
                stack.pop()
            _, container, host, opaque = stack[-1] if stack else (0, "", "", False)
            if opaque:
                continue
            if cap.kind == "scope.function":
                stack.append((cap.end, container, host, True))
                continue
            if cap.kind == "scope.impl":
                stack.append((cap.end, cap.name, "impl", False))
                continue
            symbol = self.symbol(cap, container, host)
            result.append(symbol)
            if symbol.kind in CONTAINERS:
                stack.append((cap.end, symbol.name, symbol.kind, False))
            else:
                stack.append((cap.end, container, host, symbol.kind in _CALLABLE))
        return tuple(result)

    def symbol(self, cap: _Capture, container: str, host: str) -> Symbol:
        caps = cap.caps
        kind, name, node = cap.kind, cap.name, cap.node
        parent = container
        explicit = caps.get("parent")
        if explicit:
            parent = self.text(explicit[0]).strip()
        elif "::" in name:  # C++ `Foo::run`, Ruby `class A::B`
            parent, _, name = name.rpartition("::")
            parent = _TEMPLATE_ARGS.sub("", parent).rpartition("::")[2].strip() or container
        elif kind == "function" and host in self.method_hosts:
            kind = "method"
        decl = caps.get("decl")
        single = decl and decl[0].named_child_count == 1 and decl[0].child_count > 1
        if decl and single and decl[0].child(1).type != "(":
            node = decl[0]  # Go `type X struct` keeps its keyword; `type ( X struct )` cannot
        header = self.header_start(node)
        line = header.start_point.row
        body = caps.get("body")
        sig_end = caps.get("sig_end")
        signature = self.signature(
            node, header, body[0] if body else None, sig_end[0] if sig_end else None
        )
        end_point = cap.node.end_point
        end_line = (
            end_point.row - 1 if end_point.column == 0 and end_point.row > line else end_point.row
        )
        doc = ""
        if self.language == "python" and body:
            doc = self.docstring(body[0])
        if not doc:
            outer = caps.get("outer")
            doc = self.comment_above(outer[0] if outer else node)
        return Symbol(name, kind, line, max(end_line, line), signature, doc, parent)

    def header_start(self, node: tree_sitter.Node) -> tree_sitter.Node:
        """The node the header begins with: the first after leading annotations, decorators
        and attributes (or ``node`` itself)."""
        first = node.child(0) if node.child_count else None
        if first is None or (first.type not in _DECORATIONS and first.type != "modifiers"):
            return node
        for child in node.children:
            if child.type in _DECORATIONS or child.is_extra:
                continue
            if child.type == "modifiers":  # Java: annotations live among the modifiers
                for mod in child.children:
                    if mod.type not in _DECORATIONS and not mod.is_extra:
                        return mod
                continue
            return child
        return node

    def signature(
        self,
        node: tree_sitter.Node,
        header: tree_sitter.Node,
        body: tree_sitter.Node | None,
        sig_end: tree_sitter.Node | None,
    ) -> str:
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
            raw = raw.rstrip("{;").rstrip()
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
                block = [line]
                while not block[-1].startswith("/*") and begin > 0 and len(block) < 200:
                    end = begin - 1
                    begin = self.line_begin(end)
                    if begin < 0:
                        break
                    block.append(src[begin:end].decode("utf-8", "replace").strip())
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
        lines = raw[::-1]
        if self.language == "csharp":
            lines = [_XML_DOC_TAG.sub("", ln) for ln in lines]
        return _clip(_dedent(lines))


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
