"""`starcoder-ls eval` finds cross-file uses in every language, through each language's own
way of making another file's names visible: small fixture trees holding each import form."""

from __future__ import annotations

from pathlib import Path

import pytest

from starcoder_ls.context.workspaces import build_for_cli
from starcoder_ls.evaluation.recall import sample_positions
from starcoder_ls.settings import WorkspaceSettings

TREES: dict[str, dict[str, str]] = {
    # Java: a single-type import, and a class of the same package without any import.
    "java": {
        "src/main/java/com/acme/store/Db.java": "package com.acme.store;\n\npublic class Db {\n    public Row fetch(int id) { return null; }\n}\n",
        "src/main/java/com/acme/app/Helper.java": "package com.acme.app;\n\npublic class Helper {\n    public static int twice(int x) { return 2 * x; }\n}\n",
        "src/main/java/com/acme/app/Main.java": "package com.acme.app;\n\nimport com.acme.store.Db;\n\npublic class Main {\n    void run() {\n        Db database = new Db();\n        int n = Helper.twice(21);\n    }\n}\n",
    },
    # C: every declaration of an included header is visible by name.
    "c": {
        "src/db.h": "#ifndef DB_H\n#define DB_H\n\nint db_open(const char *path);\nvoid db_close(int handle);\n\n#endif\n",
        "src/main.c": '#include "db.h"\n\nint main(void) {\n    int handle = db_open("x.db");\n    db_close(handle);\n    return 0;\n}\n',
    },
    # Go: a package of two files imported by its path, and a same-package helper.
    "go": {
        "go.mod": "module example.com/app\n\ngo 1.22\n",
        "store/db.go": "package store\n\nfunc Open(path string) *DB { return nil }\n",
        "store/row.go": "package store\n\ntype Row struct{ ID int }\n\nfunc NewRow(id int) Row { return Row{ID: id} }\n",
        "cmd/util.go": "package main\n\nfunc twice(x int) int { return 2 * x }\n",
        "cmd/main.go": 'package main\n\nimport "example.com/app/store"\n\nfunc main() {\n\tdb := store.Open("x")\n\tn := twice(1)\n\trow := store.NewRow(n)\n\t_ = db\n\t_ = row\n}\n',
    },
    # C#: a `using` makes the namespace's types visible.
    "csharp": {
        "Store/Db.cs": "namespace Acme.Store\n{\n    public class Database\n    {\n        public int Fetch(int id) { return id; }\n    }\n}\n",
        "App/Program.cs": "using Acme.Store;\n\nnamespace Acme.App\n{\n    class Program\n    {\n        static void Main()\n        {\n            var database = new Database();\n        }\n    }\n}\n",
    },
    # PHP: a `use` of a class, found through composer.json's PSR-4 map.
    "php": {
        "composer.json": '{"autoload": {"psr-4": {"Acme\\\\": "src/"}}}',
        "src/Store/Db.php": "<?php\nnamespace Acme\\Store;\n\nclass Db\n{\n    public function fetch(int $id): int { return $id; }\n}\n",
        "src/App/Main.php": "<?php\nnamespace Acme\\App;\n\nuse Acme\\Store\\Db;\n\nclass Main\n{\n    public function run(): void\n    {\n        $database = new Db();\n    }\n}\n",
    },
    # C++: a library header through `#include <...>`, its names inside nested namespaces.
    "cpp": {
        "include/acme/store.hpp": "namespace acme {\nnamespace store {\nclass Db {\n public:\n  int fetch(int id);\n};\nint open_db(const char* path);\n}  // namespace store\n}  // namespace acme\n",
        "src/main.cpp": '#include <acme/store.hpp>\n#include <vector>\n\nint main() {\n  acme::store::Db database;\n  int handle = acme::store::open_db("x.db");\n  return handle;\n}\n',
    },
    # Lua: a module is the table it returns; `require` binds it to a local.
    "lua": {
        "lua/app/util.lua": "local M = {}\n\n--- Upper-cases a text.\nfunction M.shout(s)\n  return s:upper()\nend\n\nreturn M\n",
        "lua/app/main.lua": 'local util = require("app.util")\n\nlocal function greet(name)\n  return util.shout("hello " .. name)\nend\n\nreturn greet\n',
    },
    # Bash: a sourced file's functions, by a path relative to the script's directory.
    "bash": {
        "lib/log.sh": 'log_info() {\n  echo "INFO $*"\n}\n',
        "run.sh": '#!/bin/bash\n. "$(dirname "$0")/lib/log.sh"\n\nmain() {\n  log_info "starting the job"\n}\n',
    },
    # Ruby: a required file's top-level definitions.
    "ruby": {
        "lib/util.rb": "def shout(text)\n  text.upcase\nend\n",
        "lib/app.rb": "require_relative 'util'\n\ndef greet(name)\n  shout(\"hello \" + name)\nend\n",
    },
}

EXPECTED = {
    "java": {"Db", "Helper"},
    "c": {"db_open", "db_close"},
    "go": {"Open", "NewRow", "twice"},
    "csharp": {"Database"},
    "ruby": {"shout"},
    "php": {"Db"},
    "cpp": {"Db", "open_db"},
    "lua": {"shout"},
    "bash": {"log_info"},
}


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.mark.parametrize("language", sorted(TREES))
def test_each_import_form_yields_samples(tmp_path: Path, language: str) -> None:
    root = _tree(tmp_path / language, TREES[language])
    index = build_for_cli(root, WorkspaceSettings(persist=False), progress=False)
    samples, _ = sample_positions(index, 50)
    found = {s.symbol for s in samples}
    assert EXPECTED[language] <= found, (language, found)
    for s in samples:  # each sample names the file that defines the symbol
        assert s.definition_path != s.path


@pytest.mark.parametrize("language", ["go", "java"])
def test_the_prompt_holds_definitions_from_the_same_package(
    tmp_path: Path, language: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Go and Java files see their package's other files without an import: the cross-file
    context brings those definitions too (the `eval` command, through its real entry point)."""
    import json

    from starcoder_ls.cli import main

    root = _tree(tmp_path / language, TREES[language])
    args = ["eval", "--workspace", str(root), "--backend", "test", "--recall-only"]
    assert main([*args, "--json", "--details"]) == 0
    out = json.loads(capsys.readouterr().out)
    same_package = {"go": "twice", "java": "Helper"}[language]
    hits = {d["symbol"]: d["recall_with"] for d in out["details"]}
    assert hits.get(same_package) is True, out["details"]


def test_go_package_siblings_come_in_through_the_import_source(tmp_path: Path) -> None:
    """The same-package file's definitions are candidates of their own (the `import` source),
    not left to chance matches of similar code."""
    from starcoder_ls.context.crossfile import CrossFileContext, Request

    root = _tree(tmp_path / "go", TREES["go"])
    index = build_for_cli(root, WorkspaceSettings(persist=False), progress=False)
    text = TREES["go"]["cmd/main.go"]
    cut = text.index("\tn := twice(1)")
    request = Request(
        uri=(root / "cmd/main.go").as_uri(),
        path="cmd/main.go",
        language="go",
        before=text[:cut] + "\t",
        after="\n",
        line=text[:cut].count("\n"),
        budget=400,
        count_tokens=lambda s: len(s) // 3,
    )
    segments = CrossFileContext(lambda uri: index).segments(request)
    imported = [s for s in segments if s.kind == "import"]
    assert any(s.path == "cmd/util.go" and "func twice" in s.text for s in imported), segments


REEXPORTS = {
    # Python: a package's __init__.py passes on a name defined in one of its modules.
    "python": {
        "pkg/__init__.py": "from .templating import render_template\n",
        "pkg/templating.py": "def render_template(name, **context):\n    return name\n",
        "app.py": "from pkg import render_template\n\n\ndef index():\n    return render_template('index.html')\n",
    },
    # TypeScript: a barrel re-exports everything of a module.
    "typescript": {
        "src/index.ts": 'export * from "./schemas";\nexport {\n  // what a release is\n  type Release,\n} from "./meta";\n',
        "src/meta.ts": "export interface Release {\n  tag: string;\n}\n",
        "src/schemas.ts": "export function object(shape: any) {\n  return shape;\n}\n",
        "src/app.ts": 'import { object } from "./index";\n\nexport const user = object({ name: "x" });\n',
    },
}


@pytest.mark.parametrize("language", sorted(REEXPORTS))
def test_reexported_names_are_found_where_they_are_defined(tmp_path: Path, language: str) -> None:
    """`from pkg import render_template` stops at `pkg/__init__.py`, which only imports it: the
    sample and the prompt both follow the name to the module that defines it."""
    from starcoder_ls.context.crossfile import CrossFileContext, Request

    root = _tree(tmp_path / language, REEXPORTS[language])
    index = build_for_cli(root, WorkspaceSettings(persist=False), progress=False)
    samples, _ = sample_positions(index, 50)
    (sample,) = samples  # a re-export line (`export { version } from`) is not a use
    defined = {"python": "pkg/templating.py", "typescript": "src/schemas.ts"}[language]
    assert sample.definition_path == defined
    rel = sample.path
    lines = REEXPORTS[language][rel].splitlines(keepends=True)
    before = "".join(lines[: sample.line]) + sample.indent
    ctx = CrossFileContext(lambda uri: index)
    segs = ctx.segments(
        Request(
            uri=(root / rel).as_uri(),
            path=rel,
            language=language,
            before=before,
            after="\n",
            line=sample.line,
            budget=200,
            count_tokens=lambda s: len(s) // 4 + 1,
        )
    )
    (seg,) = [s for s in segs if s.kind == "import"]
    assert seg.path == defined and sample.signature in seg.text


def test_a_member_access_is_not_a_use_of_a_namesake(tmp_path: Path) -> None:
    """``env->remove_file(name)`` calls a member: the header's function of that name is not
    what the line uses, so only the bare call is a sample."""
    root = _tree(
        tmp_path / "c",
        {
            "src/files.h": "int remove_file(const char *name);\nint rename_file(const char *a);\n",
            "src/main.c": '#include "files.h"\n\nint cleanup(struct env *env) {\n'
            '    int gone = env->remove_file("a.tmp");\n'
            '    int moved = rename_file("b.tmp");\n    return gone + moved;\n}\n',
        },
    )
    index = build_for_cli(root, WorkspaceSettings(persist=False), progress=False)
    samples, _ = sample_positions(index, 50)
    assert {s.symbol for s in samples} == {"rename_file"}


def test_a_cpp_class_with_an_export_macro_is_a_definition(tmp_path: Path) -> None:
    """``class LEVELDB_EXPORT Env {`` (leveldb, Qt's ``Q_CORE_EXPORT``): the class is found
    by its name, with its methods, and a use of it is a sample."""
    root = _tree(
        tmp_path / "cpp",
        {
            "include/env.h": "namespace kv {\nclass KV_EXPORT Env {\n public:\n"
            "  virtual ~Env();\n  virtual int RemoveFile(const char* name) = 0;\n};\n}\n",
            "src/main.cc": '#include "env.h"\n\nint run() {\n  kv::Env* env = nullptr;\n'
            "  return env != nullptr;\n}\n",
        },
    )
    index = build_for_cli(root, WorkspaceSettings(persist=False), progress=False)
    outline = index.entry("include/env.h")
    assert outline is not None
    found = {(s.name, s.kind, s.parent) for s in outline.outline.symbols}
    assert {("Env", "class", "kv"), ("RemoveFile", "method", "Env")} <= found
    env = next(s for s in outline.outline.symbols if s.name == "Env")
    assert env.signature == "class Env"
    samples, _ = sample_positions(index, 50)
    assert [(s.symbol, s.signature) for s in samples] == [("Env", "class Env")]


def test_a_header_is_cpp_only_when_its_text_is(tmp_path: Path) -> None:
    """``.h`` files are C, unless they hold C++ (leveldb names every header ``.h``)."""
    root = _tree(
        tmp_path / "mixed",
        {
            "c/list.h": "struct list {\n    struct list *next;\n};\n"
            "typedef struct list list;\nint list_len(const list *l);\n",
            "cpp/cache.h": "namespace kv {\nclass Cache {\n public:\n  int Size() const;\n};\n}\n",
            "cpp/slice.h": "#include <string>\nstd::string Render(int n);\n",
        },
    )
    index = build_for_cli(root, WorkspaceSettings(persist=False), progress=False)
    languages = {p: e.language for p in index.paths() if (e := index.entry(p)) is not None}
    assert languages == {"c/list.h": "c", "cpp/cache.h": "cpp", "cpp/slice.h": "cpp"}
