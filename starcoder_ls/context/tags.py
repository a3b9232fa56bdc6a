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
sweep over the captures sorted by position (when two patterns capture the same definition, the
one earlier in the file wins, so wrappers and specific shapes come first); ``tag_text`` reads signatures and docs next to each
definition and ``import_parse`` the imports.

Nothing here raises: unknown languages, missing grammars, binary text and broken query files
give an empty outline (the last with a warning), syntax errors give what could be recovered.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from starcoder_ls.context.import_parse import imports_and_package
from starcoder_ls.context.symbols import FileOutline, Symbol
from starcoder_ls.context.tag_text import DefinitionText
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
_DECORATIONS = frozenset(
    {"decorator", "marker_annotation", "annotation", "attribute_list", "attribute"}
)
"""Leading children of a definition that are not its header (Java/TS/C#/PHP annotations)."""
_MAX_START_DEPTH = {"python": 10, "go": 3, "lua": 4, "bash": 4}
"""How deep below the root a definition may start (default 12): tree-sitter then skips the
subtrees below, mostly function bodies, where no symbol can be. A class in a class in a class
in an ``if`` is still within reach."""
_TEMPLATE_ARGS = re.compile(r"<.*>")
_NOT_NAMES = frozenset(
    {"if", "else", "for", "while", "do", "switch", "case", "return", "sizeof", "catch", "try"}
)


_EXPORT_MACRO = re.compile(
    r"\b(?:class|struct|union)\s+"
    r"((?:[A-Z][A-Z0-9_]*[A-Z0-9]|__declspec\s*\([^()\n]*\)|__attribute__\s*\(\([^\n]*?\)\))\s+)+"
    r"(?=[A-Za-z_]\w*\s*(?:final\b\s*)?[:{\n])"
)


_BLANKED = re.compile(r"^(class|struct|union) {2,}")


def _blank_export_macros(text: str) -> str:
    """``class LEVELDB_EXPORT Env {`` (an export or visibility macro between the keyword and
    the name) reads to the parser as a function ``Env`` returning ``class LEVELDB_EXPORT``:
    the macro is blanked out (spaces, so every position stays where it was)."""
    if "class" not in text and "struct" not in text:
        return text

    def blank(m: re.Match[str]) -> str:
        head = m.group(0)
        keyword = re.match(r"(?:class|struct|union)\s+", head)
        assert keyword is not None
        return keyword.group(0) + re.sub(r"[^\n]", " ", head[keyword.end() :])

    return _EXPORT_MACRO.sub(blank, text)


_LUA_TABLE = re.compile(r"^local\s+([A-Za-z_]\w*)\s*=\s*\{", re.M)


def _lua_module_tables(symbols: tuple[Symbol, ...], text: str) -> tuple[Symbol, ...]:
    """A Lua module is a table of functions (``local M = {}``, ``function M.greet()``,
    ``return M``): the table becomes a ``module`` symbol, so that its functions are what the
    file offers to a ``require`` (see :meth:`FileOutline.top_level`)."""
    defined = {s.name for s in symbols}
    tables = {m.group(1): text.count("\n", 0, m.start()) for m in _LUA_TABLE.finditer(text)}
    parents = {s.parent for s in symbols if s.parent and s.parent not in defined}
    added = [
        Symbol(
            name,
            "module",
            line,
            max([line] + [s.end_line for s in symbols if s.parent == name]),
            f"local {name} = {{}}",
        )
        for name, line in tables.items()
        if name in parents
    ]
    if not added:
        return symbols
    return tuple(sorted((*symbols, *added), key=lambda s: (s.line, s.kind != "module")))


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
        blanked = False
        if tree is None and info.name in ("c", "cpp"):
            plain = _blank_export_macros(text)
            blanked, text = plain is not text, plain
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
        if info.name == "lua":
            symbols = _lua_module_tables(symbols, text)
        if blanked:  # `class LEVELDB_EXPORT Env` reads `class Env`, not `class      Env`
            symbols = tuple(
                dataclasses.replace(s, signature=_BLANKED.sub(r"\1 ", s.signature))
                if _BLANKED.match(s.signature)
                else s
                for s in symbols
            )
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
    try:
        import tree_sitter

        source = query_source(info.name)
        if source is None:
            log.debug("no tag query for %s", info.name)
            return None
        return tree_sitter.Query(language, source)
    except Exception as exc:  # QueryError, a grammar whose node names changed, an inherits loop
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
        self.texts = DefinitionText(language, source)

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
                    name = self.text(names[0]).strip().strip("\"'") if names else ""
                    if not name:
                        break
                    order = pattern
                elif key.startswith("scope."):
                    kind = key
                    names = caps.get("name")
                    name = self.text(names[0]).strip().strip("\"'") if names else ""
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
            if symbol.name == "_" or symbol.name in _NOT_NAMES:
                # Go's blank identifier (`_ ValueType = iota`) names nothing; a keyword is a
                # parse confused by macros (C's `if (x) {` read as a function `if`).
                continue
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
        signature = self.texts.signature(
            node, header, body[0] if body else None, sig_end[0] if sig_end else None
        )
        end_point = cap.node.end_point
        end_line = (
            end_point.row - 1 if end_point.column == 0 and end_point.row > line else end_point.row
        )
        doc = ""
        if self.language == "python" and body:
            doc = self.texts.docstring(body[0])
        if not doc:
            outer = caps.get("outer")
            doc = self.texts.comment_above(outer[0] if outer else node)
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
