"""What the workspace index knows about one file: its definitions and its imports.

These are plain values, produced by ``tags.outline`` from a tree-sitter parse, stored by the
index (and persisted between runs, so they are JSON-friendly: strings, ints, tuples), resolved
by ``imports.resolve_import`` and rendered into the prompt by ``crossfile``.

Lines are 0-based here, as everywhere below the server; segments shown to users are 1-based.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any


@dataclass(frozen=True)
class Symbol:
    """One definition: a class, function, method, type, ...."""

    name: str
    kind: str
    """class, function, method, interface, struct, enum, trait, type, module, constant, macro."""
    line: int
    """First line of the definition (its decorators and leading doc comments excluded)."""
    end_line: int
    """Last line of the whole definition, body included."""
    signature: str
    """The header as written, without the body: ``def f(a: int) -> str:``,
    ``func (s *Server) Run(ctx context.Context) error``, ``class Foo(Base):``. Multi-line
    headers keep their line breaks; indentation of the first line is removed."""
    doc: str = ""
    """Docstring or the comment block right above the definition, without comment markers or
    quotes, at most a few lines."""
    parent: str = ""
    """Name of the enclosing class, impl, struct, interface or module for members."""

    def to_json(self) -> list[Any]:
        return [
            self.name,
            self.kind,
            self.line,
            self.end_line,
            self.signature,
            self.doc,
            self.parent,
        ]

    @classmethod
    def from_json(cls, data: list[Any]) -> Symbol:
        return cls(*data)


@dataclass(frozen=True)
class ImportRef:
    """One import statement's target, normalised per language.

    ``module`` per language:
      - python: dotted module path without the leading dots (``pkg.sub``; ``""`` for
        ``from . import x``), with ``level`` the number of leading dots;
      - javascript/typescript: the specifier string (``./util``, ``../lib/index.js``, ``react``);
      - go: the import path (``github.com/acme/app/store``, ``fmt``);
      - rust: ``use`` paths as written, ``::``-separated (``crate::store::Db``,
        ``super::util``); ``mod NAME;`` gives ``module=NAME`` with ``kind="mod"``;
      - java: the imported name (``com.acme.store.Db``, ``com.acme.store.*`` for on-demand);
      - csharp: the namespace of a ``using`` (``Acme.Store``);
      - c/cpp: the ``#include "..."`` path (``util/db.h``), ``kind="include"``; system
        includes (``<stdio.h>``) are left out;
      - php: the ``use`` name with backslashes (``App\\Store\\Db``);
      - ruby: the path of ``require_relative`` (``kind="require_relative"``) or ``require``;
      - lua: the module of ``require("a.b")`` (``kind="require"``).
    """

    module: str
    names: tuple[str, ...] = ()
    """Names imported from the module as written in the source (``from m import a, b`` gives
    ``("a", "b")``; JS ``import {a as x} from`` gives ``("a",)``; ``*`` for a wildcard)."""
    bound: tuple[str, ...] = ()
    """Names the import binds in the importing file, one per entry of ``names`` when there are
    names (``x`` for ``a as x``), else the module's local name (``np`` for ``import numpy as
    np``, ``os.path``'s ``os``, Go's package name or alias)."""
    level: int = 0
    """Python relative import level (number of leading dots)."""
    line: int = 0
    kind: str = "import"
    """import, mod, include, require, require_relative."""

    def to_json(self) -> list[Any]:
        return [self.module, list(self.names), list(self.bound), self.level, self.line, self.kind]

    @classmethod
    def from_json(cls, data: list[Any]) -> ImportRef:
        module, names, bound, level, line, kind = data
        return cls(module, tuple(names), tuple(bound), level, line, kind)


_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


@lru_cache(maxsize=65_536)
def name_words(name: str) -> tuple[str, ...]:
    """A name's words, lower-cased: ``SASL_MECH_CRAM_MD5`` is (sasl, mech, cram, md, 5) and
    ``formPostBinding`` (form, post, binding)."""
    return tuple(w.lower() for w in _WORD.findall(name))


NAMESPACE_KINDS = frozenset({"namespace", "module"})
"""Kinds whose members are named from other files as if they were top-level."""


@dataclass(frozen=True)
class FileOutline:
    """Everything the index keeps from one parse of one file."""

    symbols: tuple[Symbol, ...] = ()
    imports: tuple[ImportRef, ...] = ()
    package: str = ""
    """Declared package or namespace: Go ``package store``, Java ``package com.acme.store``,
    C# ``namespace Acme.Store``, PHP ``namespace App\\Store``; empty elsewhere."""
    errors: bool = False
    """The parse had syntax errors (the outline is what could be recovered)."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def top_level(self) -> tuple[Symbol, ...]:
        """The definitions another file can name: those at the top of the file and those inside
        its namespaces (C# and C++ ``namespace``, Ruby ``module``), not the namespaces
        themselves. Computed once per outline."""
        found = self.extra.get("top_level")
        if found is None:
            spaces: set[str] = set()
            out = []
            for sym in self.symbols:  # in source order: a namespace comes before its members
                if sym.parent and sym.parent not in spaces:
                    continue
                if sym.kind in NAMESPACE_KINDS:
                    spaces.add(sym.name)
                else:
                    out.append(sym)
            found = self.extra["top_level"] = tuple(out)
        return found

    def top_positions(self) -> dict[str, list[int]]:
        """Where each name is in :meth:`top_level` (its indexes), computed once per outline."""
        found = self.extra.get("top_positions")
        if found is None:
            found = {}
            for i, sym in enumerate(self.top_level()):
                found.setdefault(sym.name, []).append(i)
            self.extra["top_positions"] = found
        return found

    def name_ends(self) -> dict[tuple[bool, str], list[str]]:
        """The :meth:`top_level` names by their first word (key ``(True, word)``) and by their
        last (``(False, word)``), words as :func:`name_words` splits them; computed once."""
        found = self.extra.get("name_ends")
        if found is None:
            found = {}
            for name in dict.fromkeys(sym.name for sym in self.top_level()):
                words = name_words(name)
                if len(words) > 1:
                    found.setdefault((True, words[0]), []).append(name)
                    found.setdefault((False, words[-1]), []).append(name)
            self.extra["name_ends"] = found
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "symbols": [s.to_json() for s in self.symbols],
            "imports": [i.to_json() for i in self.imports],
            "package": self.package,
            "errors": self.errors,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileOutline:
        return cls(
            symbols=tuple(Symbol.from_json(s) for s in data.get("symbols", ())),
            imports=tuple(ImportRef.from_json(i) for i in data.get("imports", ())),
            package=str(data.get("package", "")),
            errors=bool(data.get("errors", False)),
        )
