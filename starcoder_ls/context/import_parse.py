"""The imports and the declared package of one parsed file, normalised per language as
``symbols.ImportRef`` documents.

Imports are statements at the top of a file (and in a few wrappers around it: Python's
``try:``/``if TYPE_CHECKING:`` blocks, C's ``#ifndef`` guards and ``extern "C"``, C#/PHP
namespace blocks), so this walks those levels of the tree in plain Python instead of querying
the whole of it; everything it visits is a direct child of something it was asked to look into,
which keeps it linear in the number of top-level statements.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from starcoder_ls.context.import_readers import (
    SourceReader,
    nth,
    read_c,
    read_csharp,
    read_go,
    read_java,
    read_rust,
    top_level,
)
from starcoder_ls.context.symbols import ImportRef

if TYPE_CHECKING:
    from tree_sitter import Node

_PY_WRAPPERS = frozenset(
    {
        "if_statement",
        "elif_clause",
        "else_clause",
        "try_statement",
        "except_clause",
        "except_group_clause",
        "finally_clause",
        "with_statement",
        "block",
    }
)
_PHP_BODIES = frozenset({"namespace_definition"})


def imports_and_package(
    language: str, root: Node, source: bytes
) -> tuple[tuple[ImportRef, ...], str]:
    """The file's imports in source order, and its package or namespace ("" when none)."""
    read = _READERS.get(language)
    if read is None:
        return (), ""
    reader = SourceReader(source)
    read(reader, root)
    return tuple(reader.imports), reader.package


def _type_checking(r: SourceReader, node: Node) -> bool:
    """Inside ``if TYPE_CHECKING:``: an import for annotations only."""
    up = node.parent
    while up is not None:
        if up.type == "if_statement":
            cond = r.text(up.child_by_field_name("condition")).strip()
            if cond.endswith("TYPE_CHECKING"):
                return True
        up = up.parent
    return False


def _python(r: SourceReader, root: Node) -> None:
    for node in top_level(root, _PY_WRAPPERS):
        kind = node.type
        how = "type" if _type_checking(r, node) else "import"
        if kind == "import_statement":
            for item in node.children_by_field_name("name"):
                if item.type == "aliased_import":
                    module = r.compact(item.child_by_field_name("name"))
                    alias = r.text(item.child_by_field_name("alias"))
                    r.add(module, node, bound=(alias,), kind=how)
                else:
                    module = r.compact(item)
                    r.add(module, node, bound=(module.split(".")[0],), kind=how)
        elif kind in ("import_from_statement", "future_import_statement"):
            level, module = 0, "__future__"
            source = node.child_by_field_name("module_name")
            if source is not None and source.type == "relative_import":
                prefix = nth(source, 0)
                level = r.text(prefix).count(".") if prefix is not None else 0
                dotted = nth(source, 1)
                module = r.compact(dotted) if dotted is not None else ""
            elif source is not None:
                module = r.compact(source)
            names: list[str] = []
            bound: list[str] = []
            for item in node.children_by_field_name("name"):
                if item.type == "aliased_import":
                    names.append(r.compact(item.child_by_field_name("name")))
                    bound.append(r.text(item.child_by_field_name("alias")))
                else:
                    names.append(r.compact(item))
                    bound.append(names[-1])
            if any(c.type == "wildcard_import" for c in node.named_children):
                names, bound = ["*"], ["*"]
            r.add(module, node, tuple(names), tuple(bound), level, kind=how)


def _js_require(r: SourceReader, call: Node | None) -> str | None:
    """The module of ``require("m")``, or None when ``call`` is not one."""
    if call is None or call.type != "call_expression":
        return None
    function = call.child_by_field_name("function")
    if function is None or function.type != "identifier" or r.text(function) != "require":
        return None
    args = call.child_by_field_name("arguments")
    first = nth(args, 0)
    return r.string(first) if first is not None and first.type == "string" else None


def _js(r: SourceReader, root: Node) -> None:
    for node in root.children:
        kind = node.type
        if kind == "import_statement":
            _js_import(r, node)
        elif kind == "export_statement":
            source = node.child_by_field_name("source")
            if source is not None:
                _js_export(r, node, r.string(source))
        elif kind in ("lexical_declaration", "variable_declaration"):
            for decl in node.named_children:
                if decl.type != "variable_declarator":
                    continue
                value = decl.child_by_field_name("value")
                target = decl.child_by_field_name("name")
                member = None
                if value is not None and value.type == "member_expression":
                    member = r.text(value.child_by_field_name("property"))
                    value = value.child_by_field_name("object")
                module = _js_require(r, value)
                if module is None or target is None:
                    continue
                if member:
                    r.add(module, node, (member,), (r.text(target),), kind="require")
                elif target.type == "object_pattern":
                    names, bound = _js_pattern(r, target)
                    r.add(module, node, names, bound, kind="require")
                else:
                    r.add(module, node, bound=(r.text(target),), kind="require")
        elif kind == "expression_statement":
            module = _js_require(r, nth(node, 0))
            if module is not None:
                r.add(module, node, kind="require")


def _js_pattern(r: SourceReader, pattern: Node) -> tuple[tuple[str, ...], tuple[str, ...]]:
    names: list[str] = []
    bound: list[str] = []
    for item in pattern.named_children:
        if item.type == "shorthand_property_identifier_pattern":
            names.append(r.text(item))
            bound.append(names[-1])
        elif item.type == "pair_pattern":
            names.append(r.text(item.child_by_field_name("key")))
            bound.append(r.text(item.child_by_field_name("value")))
    return tuple(names), tuple(bound)


def _js_import(r: SourceReader, node: Node) -> None:
    source = node.child_by_field_name("source")
    names: list[str] = []
    bound: list[str] = []
    namespaces: list[str] = []
    for part in node.named_children:
        if part.type == "import_require_clause":  # TS: import q = require("q")
            source = part.child_by_field_name("source")
            names_node = nth(part, 0)
            if names_node is not None and source is not None:
                r.add(r.string(source), node, bound=(r.text(names_node),))
            return
        if part.type != "import_clause":
            continue
        for item in part.named_children:
            if item.type == "identifier":
                names.append("default")
                bound.append(r.text(item))
            elif item.type == "namespace_import":
                ident = nth(item, 0)
                namespaces.append(r.text(ident))
            elif item.type == "named_imports":
                for spec in item.named_children:
                    if spec.type == "import_specifier":
                        name = r.text(spec.child_by_field_name("name"))
                        alias = spec.child_by_field_name("alias")
                        names.append(name)
                        bound.append(r.text(alias) if alias is not None else name)
    if source is None:
        return
    module = r.string(source)
    # `import type { A } from`: for annotations only.
    how = "type" if any(c.type == "type" and not c.is_named for c in node.children) else "import"
    if names or not namespaces:
        r.add(module, node, tuple(names), tuple(bound), kind=how)
    for ns in namespaces:
        r.add(module, node, bound=(ns,), kind=how)


def _js_export(r: SourceReader, node: Node, module: str) -> None:
    names: list[str] = []
    bound: list[str] = []
    for part in node.named_children:
        if part.type == "export_clause":
            for spec in part.named_children:
                if spec.type == "export_specifier":
                    name = r.text(spec.child_by_field_name("name"))
                    alias = spec.child_by_field_name("alias")
                    names.append(name)
                    bound.append(r.text(alias) if alias is not None else name)
        elif part.type == "namespace_export":
            r.add(module, node, bound=(r.text(nth(part, 0)),))
            return
    if not names:
        names, bound = ["*"], ["*"]
    r.add(module, node, tuple(names), tuple(bound))


def _php(r: SourceReader, root: Node) -> None:
    for node in top_level(root, frozenset(), _PHP_BODIES):
        kind = node.type
        if kind == "namespace_definition" and not r.package:
            r.package = r.compact(node.child_by_field_name("name")).lstrip("\\")
        elif kind == "namespace_use_declaration":
            group = node.child_by_field_name("body")
            prefix = ""
            clauses = node.named_children
            if group is not None:
                prefix = next((r.compact(c) for c in clauses if c.type == "namespace_name"), "")
                clauses = group.named_children
            for clause in clauses:
                if clause.type != "namespace_use_clause":
                    continue
                alias = clause.child_by_field_name("alias")
                target = next((c for c in clause.named_children if c != alias), None)
                name = r.compact(target)
                module = f"{prefix}\\{name}" if prefix else name
                module = module.lstrip("\\")
                short = r.text(alias) if alias is not None else module.rpartition("\\")[2]
                r.add(module, node, bound=(short,))


def _ruby(r: SourceReader, root: Node) -> None:
    for node in root.children:
        if node.type != "call" or node.child_by_field_name("receiver") is not None:
            continue
        method = r.text(node.child_by_field_name("method"))
        if method not in ("require", "require_relative"):
            continue
        args = node.child_by_field_name("arguments")
        first = nth(args, 0)
        if first is None or first.type != "string":
            continue
        if all(c.type == "string_content" for c in first.named_children):  # no interpolation
            r.add(r.string(first), node, kind=method)


def _lua_require(r: SourceReader, call: Node | None) -> str | None:
    if call is None or call.type != "function_call":
        return None
    if r.text(call.child_by_field_name("name")) != "require":
        return None
    args = call.child_by_field_name("arguments")
    first = nth(args, 0)
    return r.string(first) if first is not None and first.type == "string" else None


def _lua(r: SourceReader, root: Node) -> None:
    for node in root.children:
        kind = node.type
        if kind == "variable_declaration":
            inner = nth(node, 0)
            if inner is None or inner.type != "assignment_statement":
                continue
            node, kind = inner, inner.type
        if kind == "assignment_statement":
            variables = nth(node, 0)
            values = nth(node, 1)
            if variables is None or values is None:
                continue
            for target, value in zip(variables.named_children, values.named_children, strict=False):
                module = _lua_require(r, value)
                if module is not None:
                    r.add(module, node, bound=(r.text(target),), kind="require")
        elif kind == "function_call":
            module = _lua_require(r, node)
            if module is not None:
                r.add(module, node, kind="require")


_SHELL_NESTS = frozenset({"if_statement", "elif_clause", "else_clause", "compound_statement"})


def _bash(r: SourceReader, root: Node) -> None:
    """``source lib/util.sh`` and ``. "$(dirname "$0")/lib/log.sh"``: the file's functions
    become visible (an ``include``). A path that starts with an expansion is taken as relative
    to the script's own directory, the usual idiom."""
    nodes = list(root.children)
    while nodes:
        node = nodes.pop(0)
        if node.type in _SHELL_NESTS:
            nodes[:0] = node.children
            continue
        if node.type != "command":
            continue
        name = node.child_by_field_name("name")
        if name is None or r.text(name) not in ("source", "."):
            continue
        args = [c for c in node.named_children if c != name and not c.is_extra]
        path = _shell_path(r, args[0]) if args else None
        if path:
            r.add(path, node, kind="include")


def _shell_path(r: SourceReader, arg: Node) -> str | None:
    if arg.type == "word":
        text = r.text(arg)
        return None if "$" in text else text
    if arg.type == "raw_string":
        return r.text(arg)[1:-1]
    if arg.type != "string":
        return None
    parts = [c for c in arg.named_children]
    if not parts or parts[-1].type != "string_content":
        return None
    tail = r.text(parts[-1])
    if len(parts) == 1:
        return None if "$" in tail else tail
    if tail.startswith("/") and all(
        p.type in ("simple_expansion", "expansion", "command_substitution") for p in parts[:-1]
    ):
        return "./" + tail.lstrip("/")
    return None


_READERS: dict[str, Callable[[SourceReader, Node], None]] = {
    "python": _python,
    "javascript": _js,
    "typescript": _js,
    "tsx": _js,
    "go": read_go,
    "rust": read_rust,
    "java": read_java,
    "csharp": read_csharp,
    "c": read_c,
    "cpp": read_c,
    "php": _php,
    "ruby": _ruby,
    "lua": _lua,
    "bash": _bash,
}
