"""Questions the in-file context asks of a syntax tree, answered in tree-sitter points.

Callers map points to LSP lines (see ``Snapshot.line_of_point``). Two scoping rules coexist:
in brace languages a scope is the byte range of its node, so "inside" means containment; in
indentation-scoped languages (Python) a block node ends at its last statement, so a cursor on a
blank line below it belongs to every enclosing statement indented less than the cursor, found
from the last code before the cursor (the *anchor*).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from starcoder_ls.languages.registry import LanguageInfo

if TYPE_CHECKING:
    from tree_sitter import Node

Point = tuple[int, int]

_OPENING_TOKENS = frozenset({"{", "do", "begin"})
_DOCSTRING_TYPES = frozenset({"string", "concatenated_string"})
_PREPROC_CONTAINERS = ("preproc_if", "preproc_ifdef", "preproc_else", "preproc_elif")


def _ancestors(node: Node | None) -> Iterator[Node]:
    while node is not None:
        yield node
        node = node.parent


def _at(root: Node, point: Point) -> Node | None:
    return root.descendant_for_point_range(point, point)


def _indented_less(node: Node, cursor: Point, indent: int) -> bool:
    return node.start_point.column < indent and node.start_point.row < cursor[0]


def header_end(node: Node) -> Point:
    """Where a definition's header ends: at the opening brace of its body (Allman braces
    included), else at the token before its body (Python's ``:``), else after its name."""
    body = node.child_by_field_name("body")
    if body is not None:
        first = body.child(0) if body.child_count else None  # child() raises past the end
        if first is not None and first.type in _OPENING_TOKENS:
            return tuple(body.start_point)  # type: ignore[return-value]
        prev = body.prev_sibling
        return tuple(prev.end_point if prev is not None else node.start_point)  # type: ignore[return-value]
    for name in ("parameters", "name"):
        child = node.child_by_field_name(name)
        if child is not None:
            return tuple(child.end_point)  # type: ignore[return-value]
    return tuple(node.start_point)  # type: ignore[return-value]


def enclosing_headers(
    root: Node, info: LanguageInfo, cursor: Point, anchor: Point | None, indent: int
) -> list[tuple[Point, Point]]:
    """(start, end) of the headers of the definitions around the cursor, outermost first.

    ``anchor`` is the last non-blank position before the cursor; ``indent`` the cursor line's
    indentation (its column when the line is blank). A decorated Python definition's header
    starts at its first decorator.
    """
    found: dict[int, Node] = {}
    for node in _ancestors(_at(root, cursor)):
        if node.type in info.definition_types and node.start_point < cursor < node.end_point:
            found[node.id] = node
    if info.indent_scoped and anchor is not None:
        for node in _ancestors(_at(root, anchor)):
            if node.type in info.definition_types and _indented_less(node, cursor, indent):
                found[node.id] = node
    out = []
    for node in sorted(found.values(), key=lambda n: n.start_byte):
        parent = node.parent
        start = parent if parent is not None and parent.type == "decorated_definition" else node
        out.append((tuple(start.start_point), header_end(node)))
    return out  # type: ignore[return-value]


def _is_trivia(node: Node, info: LanguageInfo) -> bool:
    if node.type in info.trivia_types:
        return True
    # A docstring alone does not make a body: the code is still to be written.
    return (
        node.type == "expression_statement"
        and node.named_child_count == 1
        and node.named_children[0].type in _DOCSTRING_TYPES
    )


def empty_block_at(
    root: Node, info: LanguageInfo, cursor: Point, anchor: Point | None, indent: int
) -> bool | None:
    """Whether the innermost block around the cursor holds nothing but comments/docstrings.

    None when no block is found (top level, or a block the parser could not close), so the
    caller can fall back to text heuristics.
    """
    if info.indent_scoped:
        if anchor is None:
            return None
        for node in _ancestors(_at(root, anchor)):
            if node.parent is None or not _indented_less(node, cursor, indent):
                continue
            blocks = [
                c
                for c in node.named_children
                if c.type in info.block_types and c.start_point <= cursor
            ]
            if blocks:
                return all(_is_trivia(c, info) for c in blocks[-1].named_children)
        return None
    for node in _ancestors(_at(root, cursor)):
        if node.type in info.block_types and node.start_point < cursor < node.end_point:
            return all(_is_trivia(c, info) for c in node.named_children)
    return None


def _last_line(node: Node) -> Point:
    """A point on the node's last line (a node ending with its newline ends at column 0 of the
    next row, which is not part of it)."""
    row, col = node.end_point
    if col == 0 and row > node.start_point.row:
        return row - 1, 0
    return row, col


def import_ranges(root: Node, info: LanguageInfo, before: Point) -> list[tuple[Point, Point]]:
    """(start, end) of the import-like statements that start before ``before``, in order.

    Top-level nodes only (plus preprocessor conditionals, which wrap a C header's includes).
    A node with a body (a braced namespace) contributes its header only.
    """
    out: list[tuple[Point, Point]] = []
    stack = [root]
    while stack:
        parent = stack.pop()
        for child in parent.named_children:
            if child.start_point >= before:
                break
            if child.type in info.import_types:
                body = child.child_by_field_name("body")
                end = header_end(child) if body is not None else _last_line(child)
                out.append((tuple(child.start_point), end))  # type: ignore[arg-type]
            elif child.type.startswith(_PREPROC_CONTAINERS):
                stack.append(child)
    out.sort()
    return out
