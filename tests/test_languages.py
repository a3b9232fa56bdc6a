"""Grammar registry and the syntax questions the in-file context asks, on real grammars."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading

import pytest

from starcoder_ls.documents import Snapshot
from starcoder_ls.languages import LANGUAGES, language_for, load_language, parser_for
from starcoder_ls.languages.syntax import empty_block_at, enclosing_headers, import_ranges

WHEELS = ["python", "javascript", "typescript", "tsx", "go", "rust", "java", "c", "cpp",
          "csharp", "ruby", "php", "bash", "lua"]  # fmt: skip


@pytest.mark.parametrize("name", WHEELS)
def test_every_wheel_language_parses(name: str) -> None:
    info = language_for(name)
    assert info is not None and info.name == name
    parser = parser_for(info)
    assert parser is not None
    tree = parser.parse(b"x\n")
    assert tree.root_node.end_byte == 2


@pytest.mark.parametrize(
    ("language_id", "path", "name"),
    [
        ("python", None, "python"),
        ("javascriptreact", None, "javascript"),
        ("typescriptreact", None, "tsx"),
        ("shellscript", None, "bash"),
        ("csharp", None, "csharp"),
        ("cpp", None, "cpp"),
        (None, "/src/app/main.go", "go"),
        (None, "lib/mod.RS", "rust"),
        ("plaintext", "a/b/Widget.tsx", "tsx"),
        (None, "C:\\work\\x.hpp", "cpp"),
        (None, "Gemfile", "ruby"),
        ("kotlin", None, "kotlin"),
        (None, "Dockerfile", "dockerfile"),
        ("python", "x.rs", "python"),  # the client's languageId wins over the suffix
    ],
)
def test_language_ids_and_paths_map_to_entries(
    language_id: str | None, path: str | None, name: str
) -> None:
    info = language_for(language_id, path)
    assert info is not None and info.name == name


@pytest.mark.parametrize(("language_id", "path"), [(None, None), ("cobol-85", "x.cbl"), ("", "")])
def test_unknown_languages_are_none(language_id: str | None, path: str | None) -> None:
    assert language_for(language_id, path) is None
    assert parser_for(None) is None


def test_long_tail_without_the_language_pack_is_plain_text() -> None:
    info = language_for("kotlin")
    assert info is not None and info.line_comment == "//"
    has_pack = importlib.util.find_spec("tree_sitter_language_pack") is not None
    assert (load_language(info) is not None) == has_pack
    assert (parser_for(info) is None) != has_pack


def test_parsers_are_cached_per_thread() -> None:
    info = language_for("python")
    assert parser_for(info) is parser_for(info)
    other: list[object] = []
    worker = threading.Thread(target=lambda: other.append(parser_for(info)))
    worker.start()
    worker.join()
    assert other[0] is not None and other[0] is not parser_for(info)


def test_ids_and_extensions_are_unique() -> None:
    ids = [i for info in LANGUAGES for i in info.language_ids]
    exts = [e for info in LANGUAGES for e in info.extensions]
    assert len(ids) == len(set(ids))
    assert len(exts) == len(set(exts))


# Each sample marks the cursor with "|"; the expected headers are 0-based (first, last) lines.
HEADERS = [
    ("python", "import os\n@dec\nclass A(B):\n    def f(self,\n          x):\n        y = 1\n        |", [(1, 2), (3, 4)]),
    ("python", "class A:\n    def f(self):\n        return 1\n    |", [(0, 0)]),
    ("javascript", "class A extends B {\n  m(a) {\n    |\n  }\n}\n", [(0, 0), (1, 1)]),
    ("typescript", "interface I {\n  x: number;\n}\nclass A {\n  m(): void {\n    |\n  }\n}\n", [(3, 3), (4, 4)]),
    ("tsx", "function App() {\n  return <div>|</div>;\n}\n", [(0, 0)]),
    ("go", "package p\nfunc (t T) f() {\n\t|\n}\n", [(1, 1)]),
    ("rust", "impl T {\n    fn f(&self)\n    {\n        |\n    }\n}\n", [(0, 0), (1, 2)]),
    ("java", "class A {\n  void m() {\n    |\n  }\n}\n", [(0, 0), (1, 1)]),
    ("c", "struct S { int a; };\nint f(int a) {\n  |\n}\n", [(1, 1)]),
    ("cpp", "namespace n {\nclass A {\n  void m() {\n    |\n  }\n};\n}\n", [(0, 0), (1, 1), (2, 2)]),
    ("csharp", "namespace N {\n class A {\n  void M() {\n   |\n  }\n }\n}\n", [(0, 0), (1, 1), (2, 2)]),
    ("ruby", "module M\n  class A < B\n    def m(a)\n      x = 1\n      |\n    end\n  end\nend\n", [(0, 0), (1, 1), (2, 2)]),
    ("php", "<?php\nclass A {\n  function m() {\n    |\n  }\n}\n", [(1, 1), (2, 2)]),
    ("bash", "f() {\n  |\n}\n", [(0, 0)]),
    ("lua", "function f(a)\n  local x = 1\n  |\nend\n", [(0, 0)]),
]  # fmt: skip


def _at_cursor(language: str, marked: str) -> tuple[Snapshot, int, int]:
    offset = marked.index("|")
    text = marked.replace("|", "", 1)
    line = text.count("\n", 0, offset)
    column = offset - (text.rfind("\n", 0, offset) + 1)
    return Snapshot.from_text(text, language_id=language), line, column


def _anchor(snap: Snapshot, line: int, column: int) -> tuple[int, int]:
    before = snap.text[: snap.line_starts[line] + column].rstrip()
    row = before.count("\n")
    return snap.point(row, len(before) - (before.rfind("\n") + 1) - 1)


@pytest.mark.parametrize(("language", "marked", "expected"), HEADERS)
def test_enclosing_headers(language: str, marked: str, expected: list[tuple[int, int]]) -> None:
    snap, line, column = _at_cursor(language, marked)
    assert snap.tree is not None and snap.language is not None
    indent = len(snap.line_text(line)) - len(snap.line_text(line).lstrip())
    found = enclosing_headers(
        snap.tree.root_node, snap.language, snap.point(line, column),
        _anchor(snap, line, column), max(indent, column if not snap.line_text(line)[:column].strip() else 0),
    )  # fmt: skip
    assert [(snap.line_of_point(a), snap.line_of_point(b)) for a, b in found] == expected


IMPORTS = [
    ("python", "import os\nfrom x import (\n    a,\n)\nif T:\n    import y\nx = 1\n", [(0, 0), (1, 3)]),
    ("go", 'package p\n\nimport (\n\t"fmt"\n)\n\nfunc f() {}\n', [(0, 0), (2, 4)]),
    ("rust", "use std::io;\nextern crate foo;\nfn f() {}\n", [(0, 0), (1, 1)]),
    ("java", "package a.b;\nimport x.y;\nclass A {}\n", [(0, 0), (1, 1)]),
    ("c", "#ifndef X_H\n#define X_H\n#include <stdio.h>\n#include \"a.h\"\nint f(void);\n#endif\n", [(2, 2), (3, 3)]),
    ("csharp", "using System;\nusing A.B;\nclass C {}\n", [(0, 0), (1, 1)]),
    ("php", "<?php\nuse A\\B;\nnamespace N {\n  function f() {}\n}\n", [(1, 1), (2, 2)]),
    ("typescript", "import {a} from 'a';\nimport * as b from 'b';\nexport const c = 1;\n", [(0, 0), (1, 1)]),
]  # fmt: skip


@pytest.mark.parametrize(("language", "text", "expected"), IMPORTS)
def test_import_ranges(language: str, text: str, expected: list[tuple[int, int]]) -> None:
    snap = Snapshot.from_text(text, language_id=language)
    assert snap.tree is not None and snap.language is not None
    found = import_ranges(snap.tree.root_node, snap.language, (snap.line_count, 0))
    assert [(snap.line_of_point(a), snap.line_of_point(b)) for a, b in found] == expected


EMPTY = [
    ("python", "def f():\n    |", True),
    ("python", "def f():\n    '''Doc.'''\n    # later\n    |", True),
    ("python", "def f():\n    x = 1\n    |", False),
    ("python", "x = 1\n|", None),
    ("javascript", "function f() {\n  // soon\n  |\n}\n", True),
    ("javascript", "function f() {\n  g();\n  |\n}\n", False),
    ("go", "func f() {\n\t|\n}\n", True),
    ("rust", "fn f() {\n    |\n}\n", True),
    ("java", "class A {\n  |\n}\n", True),
    ("lua", "function f()\n  |\nend\n", None),
]  # fmt: skip


@pytest.mark.parametrize(("language", "marked", "expected"), EMPTY)
def test_empty_block_at(language: str, marked: str, expected: bool | None) -> None:
    snap, line, column = _at_cursor(language, marked)
    assert snap.tree is not None and snap.language is not None
    prefix = snap.text[: snap.line_starts[line] + column]
    anchor = _anchor(snap, line, column) if prefix.strip() else None
    got = empty_block_at(
        snap.tree.root_node, snap.language, snap.point(line, column), anchor, column
    )
    assert got is expected


def test_importing_the_context_loads_no_grammar() -> None:
    code = (
        "import sys, starcoder_ls.context.infile, starcoder_ls.documents;"
        "print(sorted(m for m in sys.modules if m.startswith('tree_sitter')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
