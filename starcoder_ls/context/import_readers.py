"""Reading import statements out of a tree: the source accessor shared by the per-language
readers, and the readers of the languages whose imports are declarations with a fixed shape (Go,
Rust, Java, C#, C/C++). ``import_parse`` holds the rest and the entry point.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from starcoder_ls.context.symbols import ImportRef

if TYPE_CHECKING:
    from tree_sitter import Node

_C_WRAPPERS = frozenset(
    {"preproc_if", "preproc_ifdef", "preproc_else", "preproc_elif", "preproc_elifdef"}
)
_C_BODIES = frozenset({"linkage_specification", "namespace_definition"})
_CS_BODIES = frozenset({"namespace_declaration"})
_WILD = ("*",)


def nth(node: Node | None, index: int) -> Node | None:
    """The ``index``-th named child, or None (``Node.named_child`` raises past the end)."""
    if node is None or index >= node.named_child_count:
        return None
    return node.named_child(index)


def top_level(
    container: Node, wrappers: frozenset[str], bodies: frozenset[str] = frozenset()
) -> Iterator[Node]:
    """The children of ``container`` in source order, looking through ``wrappers`` (their
    children take their place) and into the body of ``bodies`` (yielded themselves first).
    Iterative, so that absurd nesting cannot exhaust the stack."""
    todo = container.children[::-1]
    while todo:
        node = todo.pop()
        if node.type in wrappers:
            todo.extend(node.children[::-1])
            continue
        yield node
        if node.type in bodies:
            body = node.child_by_field_name("body")
            if body is not None:
                todo.extend(body.children[::-1])


class SourceReader:
    """One file's source and what has been found in it so far."""

    def __init__(self, source: bytes) -> None:
        self.src = source
        self.imports: list[ImportRef] = []
        self.package = ""

    def text(self, node: Node | None) -> str:
        if node is None:
            return ""
        return self.src[node.start_byte : node.end_byte].decode("utf-8", "replace")

    def compact(self, node: Node | None) -> str:
        """Text without whitespace (``a . b`` is ``a.b``)."""
        return "".join(self.text(node).split())

    def string(self, node: Node | None) -> str:
        """A string literal's value, quotes removed (escapes left as written)."""
        text = self.text(node).strip()
        if text[:1] == "[" and text.endswith("]"):  # Lua long string [[...]] / [==[...]==]
            return text.lstrip("[=").rstrip("]=")
        if len(text) >= 2 and text[0] in "\"'`" and text[-1] == text[0]:
            return text[1:-1]
        return text

    def add(
        self,
        module: str,
        node: Node,
        names: tuple[str, ...] = (),
        bound: tuple[str, ...] = (),
        level: int = 0,
        kind: str = "import",
    ) -> None:
        self.imports.append(ImportRef(module, names, bound, level, node.start_point.row, kind))


def read_go(r: SourceReader, root: Node) -> None:
    for node in root.children:
        if node.type == "package_clause":
            ident = nth(node, 0)
            if not r.package and ident is not None:
                r.package = r.text(ident)
        elif node.type == "import_declaration":
            for spec in _go_specs(node):
                path = r.string(spec.child_by_field_name("path"))
                alias = spec.child_by_field_name("name")
                r.add(path, spec, bound=(r.text(alias) if alias is not None else _go_name(path),))


def _go_specs(node: Node) -> list[Node]:
    out = []
    for child in node.named_children:
        if child.type == "import_spec":
            out.append(child)
        elif child.type == "import_spec_list":
            out.extend(c for c in child.named_children if c.type == "import_spec")
    return out


def _go_name(path: str) -> str:
    """The last element of an import path; a major-version suffix (``/v2``) is skipped."""
    parts = path.rstrip("/").split("/")
    last = parts[-1]
    if len(parts) > 1 and last[:1] == "v" and last[1:].isdigit():
        last = parts[-2]
    return last


def read_rust(r: SourceReader, root: Node) -> None:
    for node in root.children:
        if node.type == "use_declaration":
            arg = node.child_by_field_name("argument")
            if arg is not None:
                groups: dict[str, tuple[list[str], list[str]]] = {}
                _rust_use(r, node, arg, "", groups)
                for module, (names, bound) in groups.items():
                    r.add(module, node, tuple(names), tuple(bound))
        elif node.type == "mod_item" and node.child_by_field_name("body") is None:
            name = r.text(node.child_by_field_name("name"))
            r.add(name, node, bound=(name,), kind="mod")
        elif node.type == "extern_crate_declaration":
            name = r.text(node.child_by_field_name("name"))
            alias = node.child_by_field_name("alias")
            r.add(name, node, bound=(r.text(alias) if alias is not None else name,))


def _join(prefix: str, path: str) -> str:
    return f"{prefix}::{path}" if prefix and path else prefix or path


def _rust_use(
    r: SourceReader,
    decl: Node,
    node: Node,
    prefix: str,
    groups: dict[str, tuple[list[str], list[str]]],
) -> None:
    """One use tree under ``prefix``: a plain path becomes its own import (``module`` = the
    whole path); items of a ``{...}`` list are grouped by the module they come from."""
    kind = node.type
    if kind in ("scoped_use_list", "use_list"):
        path = _join(prefix, r.compact(node.child_by_field_name("path")))
        items = node.child_by_field_name("list") if kind == "scoped_use_list" else node
        for item in items.named_children if items is not None else ():
            if not item.is_extra:
                _rust_use(r, decl, item, path, groups)
        return
    if kind == "use_as_clause":
        full = _join(prefix, r.compact(node.child_by_field_name("path")))
        alias = r.text(node.child_by_field_name("alias"))
    elif kind == "use_wildcard":
        inner = r.compact(node).removesuffix("*").removesuffix("::")
        module = _join(prefix, inner)
        names, bound = groups.setdefault(module, ([], []))
        names.append("*")
        bound.append("*")
        return
    else:
        full = _join(prefix, r.compact(node))
        alias = ""
    module, _, name = full.rpartition("::")
    if not prefix or not module:  # a plain path: `use a::b::C;`, `use super::x as y;`
        r.add(full, decl, bound=(alias or name,))
        return
    names, bound = groups.setdefault(module, ([], []))
    names.append(name)
    bound.append(alias or (module.rpartition("::")[2] if name == "self" else name))


def read_java(r: SourceReader, root: Node) -> None:
    for node in root.children:
        if node.type == "package_declaration":
            for child in node.named_children:
                if child.type in ("scoped_identifier", "identifier") and not r.package:
                    r.package = r.compact(child)
        elif node.type == "import_declaration":
            name = next(
                (c for c in node.named_children if c.type in ("scoped_identifier", "identifier")),
                None,
            )
            if name is None:
                continue
            module = r.compact(name)
            if any(c.type == "asterisk" for c in node.named_children):
                r.add(f"{module}.*", node, _WILD, _WILD)
            else:
                r.add(module, node, bound=(module.rpartition(".")[2],))


def read_csharp(r: SourceReader, root: Node) -> None:
    for node in top_level(root, frozenset(), _CS_BODIES):
        kind = node.type
        if kind == "using_directive":
            alias = node.child_by_field_name("name")
            named = [c for c in node.named_children if c != alias and not c.is_extra]
            if named:
                bound = (r.text(alias),) if alias is not None else ()
                r.add(r.compact(named[-1]), node, bound=bound)
        elif kind.endswith("namespace_declaration") and not r.package:
            r.package = r.compact(node.child_by_field_name("name"))


def read_c(r: SourceReader, root: Node) -> None:
    for node in top_level(root, _C_WRAPPERS, _C_BODIES):
        if node.type == "preproc_include":
            path = node.child_by_field_name("path")
            if path is not None and path.type == "string_literal":
                r.add(r.string(path), node, kind="include")
            elif path is not None and path.type == "system_lib_string":
                # `#include <lib/x.h>`: kept with its brackets, resolved only where the
                # workspace holds that exact path (a library's own headers, `include/`).
                r.add(r.text(path).strip(), node, kind="include")
