"""Outlines of real parses: definitions, signatures, docs, parents and imports in every built-in
language, and an outline that never raises whatever the text."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from importlib import resources

import pytest
from tags_helpers import (
    C_SRC,
    CPP_SRC,
    CSHARP_SRC,
    GO_SRC,
    JAVA_SRC,
    JS_SRC,
    LUA_SRC,
    PHP_SRC,
    PY_SRC,
    RUBY_SRC,
    RUST_SRC,
    TS_SRC,
    TSX_SRC,
)

from starcoder_ls.context import tags
from starcoder_ls.context.symbols import FileOutline, ImportRef, Symbol
from starcoder_ls.context.tags import outline
from starcoder_ls.languages.registry import language_for, parser_for

BUILTIN = ["python", "javascript", "typescript", "tsx", "go", "rust", "java", "c", "cpp",
           "csharp", "ruby", "php", "lua", "bash"]  # fmt: skip


def find(o: FileOutline, name: str, parent: str | None = None) -> Symbol:
    hits = [s for s in o.symbols if s.name == name and (parent is None or s.parent == parent)]
    assert len(hits) == 1, (name, parent, o.symbols)
    return hits[0]


def kinds(o: FileOutline) -> dict[str, str]:
    return {f"{s.parent}.{s.name}" if s.parent else s.name: s.kind for s in o.symbols}


def imp(
    module: str,
    names: Sequence[str] = (),
    bound: Sequence[str] = (),
    level: int = 0,
    line: int = 0,
    kind: str = "import",
) -> ImportRef:
    return ImportRef(module, tuple(names), tuple(bound), level, line, kind)


@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_language_has_a_compiling_query_shipped_as_package_data(name: str) -> None:
    ref = resources.files("starcoder_ls.languages") / "queries" / f"{name}-tags.scm"
    assert ref.is_file()
    info = language_for(name)
    assert info is not None and tags.tag_query(info) is not None


def test_python() -> None:
    o = outline(PY_SRC, "python")
    assert kinds(o) == {
        "MAX_RETRIES": "constant",
        "_TIMEOUT": "constant",
        "Store": "class",
        "Store.get": "method",
        "Store.size": "method",
        "Store.Meta": "class",
        "connect": "function",
    }
    store = find(o, "Store")
    assert (store.line, store.end_line) == (23, 47)  # decorators excluded, whole body included
    assert store.signature == "class Store(Base, metaclass=Meta):"
    assert store.doc == "A key-value store.\n\nKeeps things:\n    indented as written."
    get = find(o, "get")
    assert get.signature == "def get(\n    self,\n    key: str,\n) -> bytes | None:"
    assert (get.line, get.end_line, get.doc) == (31, 36, "Return the value.")
    assert find(o, "size").signature == "async def size(self) -> int:"
    connect = find(o, "connect")
    assert connect.doc == "Open a connection.\nSecond line."  # the comment block above
    assert connect.signature == "def connect(url: str, *, retries: int = MAX_RETRIES) -> Store:"
    assert find(o, "MAX_RETRIES").signature == "MAX_RETRIES = 3"
    assert o.package == "" and not o.errors
    assert o.imports == (
        imp("__future__", ["annotations"], ["annotations"], line=1),
        imp("os.path", bound=["os"], line=3),
        imp("numpy", bound=["np"], line=4),
        imp("x.y", ["p", "q"], ["p", "r"], level=2, line=5),
        imp("", ["m"], ["m"], level=1, line=6),
        imp("helpers", ["*"], ["*"], line=7),
        imp("ujson", bound=["json"], line=10),
        imp("json", bound=["json"], line=12),
        imp("typing", ["Any"], ["Any"], line=14, kind="type"),  # under `if TYPE_CHECKING:`
    )


def test_python_nested_definitions_are_not_symbols() -> None:
    o = outline(PY_SRC, "python")
    names = {s.name for s in o.symbols}
    assert "helper" not in names and "Local" not in names and "late_import" not in names
    assert "lower" not in names  # lowercase module assignments are not constants
    assert all(i.module != "late" for i in o.imports)  # imports inside functions are skipped


def test_javascript() -> None:
    o = outline(JS_SRC, "javascript", "web/app.js")
    assert kinds(o) == {
        "Widget": "class",
        "Widget.constructor": "method",
        "Widget.render": "method",
        "Widget.onClick": "method",
        "mount": "function",
        "debounce": "function",
        "legacy": "function",
        "Panel": "class",
        "Panel.show": "method",
        "counter": "function",
    }
    assert find(o, "debounce").signature == "const debounce = (fn, ms = 10) =>"
    assert find(o, "render").signature == "async render(target)"
    assert find(o, "counter").signature == "function* counter(start)"
    assert find(o, "mount").doc == "Mounts the app.\n@param {Element} root"
    assert find(o, "Widget").line == 9 and find(o, "Widget").end_line == 17
    assert o.imports == (
        imp("./a", ["default"], ["React"], line=0),
        imp("../b.js", ["a", "b"], ["a", "c"], line=1),
        imp("./c", bound=["ns"], line=2),
        imp("./d", ["x"], ["y"], line=3),
        imp("./e", bound=["m"], line=4, kind="require"),
        imp("./f", ["k", "l"], ["k", "ll"], line=5, kind="require"),
        imp("./polyfill", line=6, kind="require"),
        imp("./styles.css", line=7),
    )


def test_javascript_functions_inside_callbacks_are_not_symbols() -> None:
    o = outline(JS_SRC, "javascript")
    assert "hidden" not in {s.name for s in o.symbols}
    assert "inner" not in {s.name for s in o.symbols}


def test_typescript() -> None:
    o = outline(TS_SRC, "typescript")
    assert kinds(o) == {
        "Repo": "interface",
        "Repo.find": "method",
        "Id": "type",
        "Color": "enum",
        "Shapes": "module",
        "Shapes.area": "function",
        "Service": "class",
        "Service.load": "method",
        "Base": "class",
        "Base.run": "method",
        "parse": "function",
        "fetchAll": "function",
    }
    service = find(o, "Service")
    assert service.signature == "class Service<T> extends Base implements Repo<T>"
    assert service.doc == "The service."  # above the decorator of the export
    assert service.line == 16
    assert find(o, "load").signature == "async load(id: Id): Promise<T | undefined>"
    assert find(o, "parse").signature == "function parse(text: string): number"
    assert find(o, "Id").signature == "type Id = string | number"
    assert (
        find(o, "fetchAll").signature
        == "const fetchAll = async <T>(urls: string[]): Promise<T[]> =>"
    )
    assert o.imports == (
        imp("./types", ["T", "U"], ["T", "U"], line=0, kind="type"),  # `import type`
        imp("./base", ["Base"], ["Base"], line=1),
        imp("./all", ["*"], ["*"], line=2),
        imp("lodash", bound=["_"], line=3),
    )


def test_tsx() -> None:
    o = outline(TSX_SRC, "typescriptreact", "ui/App.tsx")
    assert kinds(o) == {"Props": "interface", "Button": "function", "App": "function"}
    assert find(o, "App").signature == "const App = ({ title }: Props) =>"
    assert o.imports == (imp("react", ["default", "useState"], ["React", "useState"], line=0),)


def test_go() -> None:
    o = outline(GO_SRC, "go")
    assert o.package == "store"
    assert kinds(o) == {
        "DefaultSize": "constant",
        "DB": "struct",
        "Getter": "interface",
        "ID": "type",
        "Alias": "type",
        "DB.Get": "method",
        "Box.Put": "method",
        "Open": "function",
    }
    db = find(o, "DB")
    assert (db.signature, db.doc, db.line, db.end_line) == (
        "type DB struct",
        "DB is the store.\nIt is safe for concurrent use.",
        15,
        17,
    )
    assert find(o, "Getter").signature == "type Getter interface"
    assert find(o, "ID").signature == "ID    int64"  # a spec of a grouped declaration, as written
    get = find(o, "Get")
    assert get.signature == "func (d *DB) Get(ctx context.Context, key string) ([]byte, error)"
    assert get.doc == "Get reads one key."
    assert find(o, "Put").parent == "Box"
    assert o.imports == (
        imp("context", bound=["context"], line=3),
        imp("fmt", bound=["f"], line=4),
        imp("github.com/acme/app/v2/store", bound=["store"], line=5),
        imp("github.com/acme/lib/v3", bound=["lib"], line=6),
        imp("embed", bound=["_"], line=7),
        imp("strings", bound=["strings"], line=9),
    )


def test_rust() -> None:
    o = outline(RUST_SRC, "rust")
    assert kinds(o) == {
        "Point": "struct",
        "Shape": "enum",
        "Draw": "trait",
        "Draw.draw": "method",
        "Draw.name": "method",
        "Point.new": "method",
        "Point.draw": "method",
        "geometry": "module",
        "geometry.area": "function",
        "MAX": "constant",
        "NAME": "constant",
        "Grid": "type",
        "square": "macro",
        "free": "function",
    }
    point = find(o, "Point")
    assert (point.signature, point.doc) == ("pub struct Point", "A point.\nIn the plane.")
    assert find(o, "draw", "Point").signature == "fn draw(&self) -> String"
    assert find(o, "new").signature == "pub fn new(x: i32, y: i32) -> Self"
    assert find(o, "free").signature == "pub fn free<T>(\n    a: T,\n) -> T\nwhere\n    T: Copy,"
    assert find(o, "square").signature == "macro_rules! square"
    assert find(o, "MAX").signature == "pub const MAX: u32 = 10"
    assert o.imports == (
        imp("crate::a::b", ["C", "D"], ["C", "E"], line=0),
        imp("crate::a::b::f", ["G", "self"], ["G", "f"], line=0),
        imp("super::x", bound=["x"], line=1),
        imp("std::io", bound=["sio"], line=2),
        imp("std::collections", ["*"], ["*"], line=3),
        imp("foo", bound=["foo"], line=4, kind="mod"),
    )


def test_java() -> None:
    o = outline(JAVA_SRC, "java")
    assert o.package == "com.acme.store"
    assert kinds(o) == {
        "Store": "class",
        "Store.Store": "method",
        "Store.get": "method",
        "Store.size": "method",
        "Store.Entry": "class",
        "Store.Mode": "enum",
        "Mode.flag": "method",
        "Reader": "interface",
        "Reader.read": "method",
    }
    store = find(o, "Store", "")
    assert store.signature == "public class Store<K> extends Base implements Reader"
    assert (store.doc, store.line) == ("The store.", 10)  # annotation line excluded
    get = find(o, "get")
    assert get.signature == "public Optional<K> get(\n    String key,\n    int flags)"
    assert get.doc == "Reads a key."
    assert find(o, "size").signature == "abstract int size();"  # a declaration keeps its `;`
    assert o.imports == (
        imp("com.acme.util.Strings", bound=["Strings"], line=2),
        imp("java.util.*", ["*"], ["*"], line=3),
        imp("com.acme.Util.check", bound=["check"], line=4),
    )


def test_csharp() -> None:
    o = outline(CSHARP_SRC, "csharp")
    assert o.package == "Acme.Store"
    assert kinds(o) == {
        "Db": "class",
        "Db.Db": "method",
        "Db.Get": "method",
        "IDb": "interface",
        "IDb.Get": "method",
        "Point": "struct",
        "Kind": "enum",
        "Entry": "class",
    }
    db = find(o, "Db", "")
    assert (db.signature, db.doc) == ("public sealed class Db : IDb", "The database.")
    assert find(o, "Get", "Db").signature == "public byte[] Get(string key)"
    assert o.imports == (
        imp("System.Text", line=0),
        imp("Acme.Util.Strings", bound=["S"], line=1),
        imp("System.Math", line=2),
    )
    block = outline("namespace A.B {\n  using C;\n  class K { void M() {} }\n}\n", "csharp")
    assert block.package == "A.B"
    assert kinds(block) == {"A.B": "module", "A.B.K": "class", "K.M": "method"}
    assert block.imports == (imp("C", line=1),)


def test_c() -> None:
    o = outline(C_SRC, "c", "src/db.h")
    assert kinds(o) == {
        "MAX": "macro",
        "DB_SIZE": "constant",
        "db_open": "function",
        "db_names": "function",
        "db_entry": "struct",
        "db_kind": "enum",
        "db_t": "struct",
        "db_id": "type",
        "db_close": "function",
    }
    assert find(o, "db_open").signature == "int db_open(const char *path, int flags);"
    assert find(o, "db_open").doc == "Opens the database."
    assert find(o, "db_names").signature == "static char **db_names(void);"
    assert (
        find(o, "db_close").signature == "void db_close(\n    struct db_entry *e,\n    int flags)"
    )
    assert find(o, "db_close").doc == "Closes it."
    assert find(o, "db_entry").signature == "struct db_entry"
    assert find(o, "MAX").signature == "#define MAX(a, b) ((a) > (b) ? (a) : (b))"
    assert o.imports == (
        imp("util/str.h", line=3, kind="include"),
        imp("<stdio.h>", line=4, kind="include"),  # resolved only where the tree has the path
        imp("db_internal.h", line=5, kind="include"),
    )


def test_cpp() -> None:
    o = outline(CPP_SRC, "cpp")
    assert kinds(o) == {
        "acme": "module",
        "acme.Store": "class",
        "Store.Store": "method",
        "Store.~Store": "method",
        "Store.get": "method",
        "Store.size": "method",
        "Store.operator==": "method",
        "acme.Mode": "enum",
        "acme.Bytes": "type",
        "acme.helper": "function",
        "Store.load": "method",
    }
    store = find(o, "Store", "acme")
    assert (store.signature, store.doc) == ("class Store : public Base", "The store.")
    assert find(o, "get").signature == "virtual std::string get(const std::string& key) const = 0"
    load = find(o, "load")
    assert (load.signature, load.parent) == ("bool acme::Store::load(const char* path)", "Store")
    assert o.imports == (
        imp("acme/base.hpp", line=0, kind="include"),
        imp("<string>", line=1, kind="include"),
    )


def test_ruby() -> None:
    o = outline(RUBY_SRC, "ruby")
    assert kinds(o) == {
        "Acme": "module",
        "Acme.Store": "class",
        "Store.get": "method",
        "Store.open": "method",
        "Store.empty": "method",
        "Acme.helper": "method",
        "Models.User": "class",
        "top_level": "function",
    }
    store = find(o, "Store")
    assert (store.signature, store.doc) == ("class Store < Base", "The store.\nKeeps things.")
    assert find(o, "get").signature == "def get(key, default = nil)"
    assert find(o, "open").signature == "def self.open(path)"
    assert find(o, "empty").signature == "def empty"
    assert o.imports == (
        imp("lib/store", line=0, kind="require_relative"),
        imp("json", line=1, kind="require"),
    )


def test_php() -> None:
    o = outline(PHP_SRC, "php")
    assert o.package == "App\\Http"
    assert kinds(o) == {
        "UserController": "class",
        "UserController.__construct": "method",
        "UserController.show": "method",
        "Repo": "interface",
        "Repo.find": "method",
        "Loggable": "trait",
        "Status": "enum",
        "helper": "function",
    }
    ctl = find(o, "UserController")
    assert ctl.signature == "final class UserController extends Controller implements Repo"
    assert ctl.doc == "Handles users."
    assert find(o, "show").signature == "public function show(int $id): User"
    assert o.imports == (
        imp("App\\Models\\User", bound=["User"], line=2),
        imp("App\\Support\\A", bound=["A"], line=3),
        imp("App\\Support\\B", bound=["C"], line=3),
    )


def test_lua() -> None:
    o = outline(LUA_SRC, "lua")
    assert kinds(o) == {
        "M": "module",  # the module's table: its functions are what `require` gives
        "M.new": "function",
        "M.get": "method",
        "helper": "function",
        "M.size": "function",
    }
    assert [s.name for s in o.top_level()] == ["new", "get", "helper", "size"]
    new = find(o, "new")
    assert (new.signature, new.doc, new.parent) == ("function M.new(opts)", "Makes one.", "M")
    assert find(o, "helper").signature == "local function helper(x)"
    assert o.imports == (
        imp("acme.store", bound=["store"], line=0, kind="require"),
        imp("acme.setup", line=1, kind="require"),
    )


def test_bash() -> None:
    o = outline("# Greets.\ngreet() {\n  echo hi\n}\nfunction other { :; }\n", "bash")
    assert [(s.name, s.kind, s.line, s.end_line, s.doc) for s in o.symbols] == [
        ("greet", "function", 1, 3, "Greets."),
        ("other", "function", 4, 4, ""),
    ]


def test_syntax_errors_keep_what_can_be_recovered() -> None:
    text = "def good(a):\n    return a\n\ndef broken(:\n    pass\n\nclass Fine:\n    def m(self): pass\n"
    o = outline(text, "python")
    assert o.errors
    names = {s.name for s in o.symbols}
    assert {"good", "Fine", "m"} <= names
    js = outline("function ok() {}\nfunction bad( {\n}\nclass K { m() {} }\n", "javascript")
    assert js.errors and "ok" in {s.name for s in js.symbols}


@pytest.mark.parametrize("text", ["", "\x00\x01\x02binary\x00", "\ufffd" * 10])
def test_empty_and_binary_text_give_an_empty_outline(text: str) -> None:
    assert outline(text, "python").symbols == ()
    assert outline(text, "python").imports == ()


@pytest.mark.parametrize(("language", "path"), [("cobol", None), (None, None), (None, "x.unknown")])
def test_unknown_language_gives_an_empty_outline(language: str | None, path: str | None) -> None:
    assert outline("def f(): pass\n", language, path) == FileOutline()


def test_language_by_path_info_or_given_tree() -> None:
    text = "def f(x):\n    return x\n"
    info = language_for("python")
    assert info is not None
    parser = parser_for(info)
    assert parser is not None
    tree = parser.parse(text.encode())
    expected = outline(text, "python")
    assert outline(text, None, "pkg/mod.py") == expected
    assert outline(text, info) == expected
    assert outline(text, info, tree=tree) == expected
    assert expected.symbols[0].signature == "def f(x):"


def test_garbage_never_raises() -> None:
    rnd = random.Random(7)
    alphabet = "{}()[];:\n\t \"'#/*<>=\\@$.,abcdefXYZ\ud800é𝄞"
    for name in BUILTIN:
        for _ in range(15):
            text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 2000)))
            result = outline(text, name)
            assert isinstance(result, FileOutline)


def test_a_broken_query_file_warns_and_gives_an_empty_outline(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tags.tag_query.cache_clear()
    monkeypatch.setattr(tags, "query_source", lambda name: "((function_definition @oops")
    try:
        with caplog.at_level(logging.WARNING, logger="starcoder_ls.context.tags"):
            assert outline("import os\ndef f(): pass\n", "python") == FileOutline()
        assert "does not compile" in caplog.text
    finally:
        monkeypatch.undo()
        tags.tag_query.cache_clear()
    assert outline("def f(): pass\n", "python").symbols[0].name == "f"


def test_crlf_text() -> None:
    o = outline("# Doc.\r\ndef f(\r\n    a,\r\n):\r\n    pass\r\n", "python")
    assert o.symbols[0].signature == "def f(\n    a,\n):"
    assert o.symbols[0].doc == "Doc."


def test_large_generated_file_is_outlined_quickly() -> None:
    parts = []
    for i in range(2500):
        parts.append(
            f"class C{i}(Base):\n    '''Doc {i}.'''\n\n    def m{i}(self, a: int) -> int:\n"
        )
        parts.append(f"        return a + {i}\n\n\n# f{i}\ndef f{i}(a, b):\n    return a\n\n")
    text = "import os\n" + "".join(parts)
    assert text.count("\n") > 20_000
    start = time.perf_counter()
    o = outline(text, "python")
    elapsed = time.perf_counter() - start
    assert len(o.symbols) == 7500 and o.imports[0].module == "os"
    assert find(o, "m2499").parent == "C2499" and find(o, "f17").doc == "f17"
    assert elapsed < 5.0, elapsed  # about 0.2 s on one core


def test_minified_one_line_file_is_not_quadratic() -> None:
    text = ";".join(f"function f{i}(a){{return a+{i}}}" for i in range(20_000))
    start = time.perf_counter()
    o = outline(text, "javascript")
    assert len(o.symbols) == 20_000 and all(s.line == 0 for s in o.symbols[:5])
    assert time.perf_counter() - start < 8.0  # about 0.7 s


@pytest.mark.parametrize(
    ("language", "text"),
    [("python", PY_SRC), ("go", GO_SRC), ("rust", RUST_SRC), ("php", PHP_SRC), ("java", JAVA_SRC)],
)
def test_json_round_trip(language: str, text: str) -> None:
    o = outline(text, language)
    assert o.symbols and o.imports
    back = FileOutline.from_json(json.loads(json.dumps(o.to_json())))
    assert back == o
