"""What ranks the imported definitions nothing near the cursor names yet: the names that code
like the cursor's uses elsewhere in the workspace (co-use), and names written with ``$``."""

from __future__ import annotations

from pathlib import Path

from starcoder_ls.context.crossfile import CrossFileContext, Request
from starcoder_ls.context.index import WorkspaceIndex
from starcoder_ls.engine import LineTokenCounter
from starcoder_ls.settings import WorkspaceSettings
from starcoder_ls.types import Segment

HELPERS = "".join(
    f"// helper{i:02d} formats part {i} of a response.\nfunc helper{i:02d}(v any) string "
    f'{{ return "" }}\n\n'
    for i in range(24)
)
RENDER = (
    'package render\n\nimport "net/http"\n\n'
    + HELPERS
    + "func writeContentType(w http.ResponseWriter, value []string) {\n"
    '\tw.Header()["Content-Type"] = value\n}\n'
)
SIBLING = """\
package render

import "net/http"

type {T} struct{{ Data any }}

var {low}ContentType = []string{{"application/{low}"}}

// Render writes the {T} body.
func (r {T}) Render(w http.ResponseWriter) error {{
\twriteContentType(w, {low}ContentType)
\treturn encode{T}(w, r.Data)
}}
"""
CURRENT_BEFORE = """\
package render

import "net/http"

type XML struct{ Data any }

var xmlContentType = []string{"application/xml"}

// Render writes the XML body.
func (r XML) Render(w http.ResponseWriter) error {
\t"""


def _index(root: Path) -> WorkspaceIndex:
    index = WorkspaceIndex(root, WorkspaceSettings(persist=False))
    index.build()
    return index


def _request(root: Path, rel: str, language: str, before: str, budget: int) -> Request:
    return Request(
        uri=(root / rel).as_uri(),
        path=rel,
        language=language,
        before=before,
        after="\n}\n",
        line=before.count("\n"),
        budget=budget,
        count_tokens=lambda s: len(s) // 4 + 1,
    )


def _segments(root: Path, rel: str, language: str, before: str, budget: int) -> list[Segment]:
    """The cross-file segments at the end of ``before`` in ``rel``, over a fresh index."""
    index = _index(root)
    return CrossFileContext(lambda uri: index).segments(
        _request(root, rel, language, before, budget)
    )


def test_a_package_helper_that_similar_code_calls_is_shown_first(tmp_path: Path) -> None:
    """A Go package of 25 helpers: the one the sibling Render methods call next is what fits,
    though no line near the cursor names it and it is the package's last definition."""
    root = tmp_path / "web"
    (root / "render").mkdir(parents=True)
    (root / "render" / "render.go").write_text(RENDER)
    for name in ("JSON", "YAML", "TOML", "BSON"):
        text = SIBLING.format(T=name, low=name.lower())
        (root / "render" / f"{name.lower()}.go").write_text(text)
    (root / "render" / "xml.go").write_text(CURRENT_BEFORE + "\n}\n")
    index = _index(root)
    ctx = CrossFileContext(lambda uri: index)
    segs = ctx.segments(_request(root, "render/xml.go", "go", CURRENT_BEFORE, budget=100))
    imported = "".join(s.text for s in segs if s.kind == "import")
    assert "func writeContentType(w http.ResponseWriter, value []string)" in imported
    # The helpers nothing like this code uses did not take the room first.
    assert imported.count("func helper") < 3


ERRORS_TS = "".join(f"export type $Issue{i} = {{ code: 'c{i}' }};\n" for i in range(30)) + (
    "export interface $ZodErrorMap<T = unknown> {\n  (issue: T): { message: string };\n}\n"
)
LOCALE_BEFORE = """\
import type * as errors from "../core/errors.js";

const error: () => errors.$ZodErrorMap = () => {
  return (issue) => {
    """


def test_names_written_with_a_dollar_are_matched(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    (root / "core").mkdir(parents=True)
    (root / "locales").mkdir()
    (root / "core" / "errors.ts").write_text(ERRORS_TS)
    (root / "locales" / "da.ts").write_text(LOCALE_BEFORE + "\n  };\n};\n")
    index = _index(root)
    ctx = CrossFileContext(lambda uri: index)
    segs = ctx.segments(_request(root, "locales/da.ts", "typescript", LOCALE_BEFORE, budget=60))
    (seg,) = [s for s in segs if s.kind == "import"]
    assert seg.path == "core/errors.ts"
    # Used near the cursor: it comes first, ahead of the thirty other types of the module.
    assert "interface $ZodErrorMap<T = unknown>" in seg.text
    assert "$Issue0 " not in seg.text


SHAPES = '''\
class Circle:
    """A circle by its radius."""

    def area(self) -> float: ...
    def scale(self, k: float) -> "Circle": ...


class Square:
    """A square by its side."""

    def area(self) -> float: ...
    def rotate(self, degrees: float) -> "Square": ...
'''
DRAW_BEFORE = """\
from geo.shapes import Circle, Square


def draw(c: Circle, s: Square) -> float:
    total = c.area() + s.area() + c.area()
    """


def test_a_small_budget_shows_the_best_import_in_full_and_the_rest_as_signatures(
    tmp_path: Path,
) -> None:
    root = tmp_path / "app"
    (root / "geo").mkdir(parents=True)
    (root / "geo" / "__init__.py").write_text("")
    (root / "geo" / "shapes.py").write_text(SHAPES)
    (root / "draw.py").write_text(DRAW_BEFORE + "\n")
    index = _index(root)

    def imported(budget: int) -> str:
        ctx = CrossFileContext(lambda uri: index)
        segs = ctx.segments(_request(root, "draw.py", "python", DRAW_BEFORE, budget=budget))
        return "".join(s.text for s in segs if s.kind == "import")

    roomy = imported(600)  # a 2k-context model's share: both classes with their methods
    assert "def scale(self" in roomy and "def rotate(self" in roomy
    small = imported(300)  # a 512-token model's: Circle (used most) in full, Square signed
    assert "class Circle:" in small and "def scale(self" in small
    assert "class Square:" in small and "def rotate(self" not in small


def test_an_outline_too_big_for_its_room_is_shown_as_its_signature(tmp_path: Path) -> None:
    """A class of ten long methods would take a fifth of a 1024-token budget in full: it is
    shown by its first line, and the room goes to the names after it."""
    root = tmp_path / "app"
    root.mkdir()
    methods = "".join(
        f"    def handle_request_kind_{i}(self, request: Request, timeout: float) -> Response: ...\n"
        for i in range(10)
    )
    (root / "registry.py").write_text(f'class Registry:\n    """Routes requests."""\n\n{methods}')
    (root / "point.py").write_text("class Point:\n    def norm(self) -> float: ...\n")
    helpers = "".join(f"def helper_{i}(value: int) -> int: ...\n" for i in range(20))
    (root / "helpers.py").write_text(helpers)
    before = (
        "from registry import Registry\nfrom point import Point\nimport helpers\n\n\n"
        "def serve(r: Registry, p: Point) -> None:\n    r.handle_request_kind_0(None, 1.0)\n"
        "    p.norm()\n    "
    )
    (root / "main.py").write_text(before + "\n")
    segs = _segments(root, "main.py", "python", before, budget=1024)
    imported = "".join(s.text for s in segs if s.kind == "import")
    assert "class Registry:" in imported
    assert "handle_request_kind_5" not in imported
    assert "def norm(self) -> float" in imported  # a small class is still shown whole


def test_a_name_the_includes_offer_is_not_shown_again_from_its_c_file(tmp_path: Path) -> None:
    root = tmp_path / "c"
    (root / "src").mkdir(parents=True)
    (root / "src" / "db.h").write_text(
        "/* Opens the database at path. */\nint db_open(const char *path);\n"
    )
    (root / "src" / "db.c").write_text(
        '#include "db.h"\n\nint db_open(const char *path) {\n    return path != 0;\n}\n'
    )
    before = '#include "db.h"\n\nint main(void) {\n    int handle = db_open("x.db");\n    '
    (root / "src" / "main.c").write_text(before + "\n}\n")
    segs = _segments(root, "src/main.c", "c", before, budget=300)
    assert [(s.kind, s.path) for s in segs if s.kind in ("import", "definition")] == [
        ("import", "src/db.h")
    ]
    assert "int db_open(const char *path);" in segs[0].text


def _go_package(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def _import_text(root: Path, rel: str, before: str, budget: int) -> str:
    """The imported definitions the prompt shows at the end of ``before`` in Go file ``rel``."""
    segs = _segments(root, rel, "go", before, budget)
    return "".join(s.text for s in segs if s.kind == "import")


def _funcs(prefix: str, n: int) -> str:
    return "".join(
        f"// {prefix}{i:02d} does step {i}.\nfunc {prefix}{i:02d}(v int) int {{ return v }}\n\n"
        for i in range(n)
    )


def test_a_test_file_sees_the_file_it_tests_first(tmp_path: Path) -> None:
    """``zeta_test.go`` in a package of nine files: ``zeta.go`` is what it tests, though it
    sorts last and nothing near the cursor names its functions."""
    root = tmp_path / "svc"
    files = {f"pkg/{name}.go": f"package pkg\n\n{_funcs(name.title(), 6)}" for name in "abcdefgh"}
    files["pkg/zeta.go"] = (
        "package pkg\n\n// Normalize trims and lower-cases a key.\n"
        "func Normalize(key string) string { return key }\n"
    )
    before = 'package pkg\n\nimport "testing"\n\nfunc TestKeys(t *testing.T) {\n\tgot := '
    files["pkg/zeta_test.go"] = before + "\n}\n"
    _go_package(root, files)
    segs = _segments(root, "pkg/zeta_test.go", "go", before, budget=120)
    imported = {s.path: s.text for s in segs if s.kind == "import"}
    assert "func Normalize(key string) string" in imported.get("pkg/zeta.go", "")


STORE_GO = "package store\n\n" + "".join(
    f'// Get{i} reads record {i}.\nfunc Get{i}(id int) string {{ return "" }}\n\n'
    for i in range(12)
)
TRACKING_GO = (
    "package tracking\n\n// Record writes an audit entry for an action.\n"
    "func Record(action string, id int) {}\n"
)
HANDLER_BEFORE = """\
package api

import (
\t"example.com/app/store"
\t"example.com/app/tracking"
)

func Handle(id int) string {
\tname := store.Get0(id) + store.Get1(id)
\tif name == "" {
\t\tname = "anonymous"
\t}
\tcount := len(name)
\t_ = count
\t"""


def test_an_import_not_used_yet_is_what_the_next_line_uses(tmp_path: Path) -> None:
    """Two imported packages, one used above the cursor and one not at all: the unused one
    is there to be used, so its function is shown ahead of the used package's other
    functions (which come first by path when nothing tells them apart)."""
    root = tmp_path / "app"
    _go_package(
        root,
        {
            "go.mod": "module example.com/app\n",
            "store/store.go": STORE_GO,
            "tracking/tracking.go": TRACKING_GO,
            "api/handler.go": HANDLER_BEFORE + "\n\treturn name\n}\n",
        },
    )
    index = _index(root)
    req = _request(root, "api/handler.go", "go", HANDLER_BEFORE, budget=90)
    req.after = "\n\treturn name\n}\n"
    segs = CrossFileContext(lambda uri: index).segments(req)
    imported = {s.path: s.text for s in segs if s.kind == "import"}
    assert "func Record(action string, id int)" in imported.get("tracking/tracking.go", "")


def test_another_go_package_offers_its_exported_names_only(tmp_path: Path) -> None:
    """``helper`` is a local variable near the cursor and an unexported function of an
    imported package: that function is out of reach, so neither source shows it."""
    root = tmp_path / "app"
    _go_package(
        root,
        {
            "go.mod": "module example.com/app\n",
            "util/util.go": (
                "package util\n\nfunc helper(v int) int { return v }\n\n"
                "// Helper doubles v.\nfunc Helper(v int) int { return helper(v) * 2 }\n"
            ),
            "other/other.go": "package other\n\nfunc helper(s string) string { return s }\n",
        },
    )
    before = (
        'package main\n\nimport "example.com/app/util"\n\nfunc main() {\n'
        "\thelper := util.Helper(1)\n\thelper += 1\n\t"
    )
    (root / "main.go").write_text(before + "\n}\n")
    segs = _segments(root, "main.go", "go", before, budget=300)
    text = "".join(s.text for s in segs if s.kind in ("import", "definition"))
    assert "func Helper(v int) int" in text
    assert "func helper(" not in text


def test_a_name_defined_in_view_is_not_offered_again_from_a_namesake(tmp_path: Path) -> None:
    """``binding.go`` and ``binding_nomsgpack.go`` (the same file for other build tags) both
    define ``Binding``: the prompt shows the current file's, and the sibling's would repeat
    it where the next line's helper should be."""
    root = tmp_path / "go"
    iface = "type Binding interface {{\n\tName() string\n\tBind(req any, obj any) error\n}}\n"
    _go_package(
        root,
        {
            "pkg/binding_nomsgpack.go": "//go:build nomsgpack\n\npackage binding\n\n"
            + iface.format(),
            "pkg/form.go": "package binding\n\ntype formBinding struct{}\n",
        },
    )
    before = "package binding\n\n" + iface.format() + "\nvar Form Binding = formBinding{}\n"
    before += "\nfunc pick(name string) Binding {\n\t"
    (root / "pkg" / "binding.go").write_text(before + "\n}\n")
    segs = _segments(root, "pkg/binding.go", "go", before, budget=300)
    paths = {s.path for s in segs if s.kind == "import"}
    assert "pkg/form.go" in paths
    assert "pkg/binding_nomsgpack.go" not in paths


def test_each_file_of_a_big_package_offers_its_most_used_names(tmp_path: Path) -> None:
    """Beyond its first few files, a package's files offer only the names in use near the
    cursor, and their few most used: ``H``, which the package writes everywhere."""
    root = tmp_path / "go"
    serve = "func serve{c}(w http.ResponseWriter, r *http.Request) {{\n\tw.WriteHeader(200)\n}}\n"
    files = {
        f"pkg/{c}.go": 'package web\n\nimport "net/http"\n\n' + serve.format(c=c.upper())
        for c in "abcdefghij"  # code more like the cursor's than any use of H
    }
    for i in range(6):
        files[f"pkg/use{i}.go"] = f"package web\n\nfunc use{i}() any {{\n\treturn H{{}}\n}}\n"
    files["pkg/utils.go"] = "package web\n\n// H is a map.\ntype H map[string]any\n"
    files["pkg/utils.go"] += _funcs("rareUtil", 3)
    _go_package(root, files)
    before = 'package web\n\nimport "net/http"\n\n'
    before += "func serveZ(w http.ResponseWriter, r *http.Request) {\n\t"
    (root / "pkg" / "handle.go").write_text(before + "\n}\n")
    segs = _segments(root, "pkg/handle.go", "go", before, budget=400)
    imported = "".join(s.text for s in segs if s.kind == "import")
    assert "type H map[string]any" in imported


def _header(n: int, pick: dict[int, str]) -> str:
    return "".join(pick.get(i, f"int table_op{i:03d}(int key);\n") for i in range(n))


def test_declarations_beside_the_one_used_are_offered(tmp_path: Path) -> None:
    """A header of 160 declarations (offering only the names in use and its most used):
    ``decr_ref`` is declared next to ``incr_ref``, which the code above the cursor calls."""
    root = tmp_path / "c"
    root.mkdir()
    (root / "obj.h").write_text(
        _header(160, {80: "void incr_ref(obj *o);\n", 81: "void decr_ref(obj *o);\n"})
    )
    before = '#include "obj.h"\n\nvoid keep(obj *o) {\n    incr_ref(o);\n    use(o);\n    '
    (root / "keep.c").write_text(before + "\n}\n")
    segs = _segments(root, "keep.c", "c", before, budget=200)
    imported = "".join(s.text for s in segs if s.kind == "import")
    assert "void decr_ref(obj *o);" in imported
    assert "table_op000" not in imported  # nothing puts the header's first lines first


def test_a_name_the_file_uses_far_from_the_cursor_ranks(tmp_path: Path) -> None:
    """``close_all`` is called 300 lines above the cursor, out of the window: the file uses
    it, so its declaration is offered ahead of the header's other 150."""
    root = tmp_path / "c"
    root.mkdir()
    (root / "obj.h").write_text(_header(150, {149: "int close_all(int flags);\n"}))
    filler = "".join(f"static int pad{i} = {i};\n" for i in range(300))
    before = '#include "obj.h"\n\nint shutdown(void) {\n    return close_all(0);\n}\n'
    before += filler + "int run(void) {\n    "
    (root / "main.c").write_text(before + "\n}\n")
    index = _index(root)
    req = _request(root, "main.c", "c", before, budget=120)
    req.before = "\n".join(before.split("\n")[-200:])  # the window the server sends
    segs = CrossFileContext(lambda uri: index).segments(req)
    imported = "".join(s.text for s in segs if s.kind == "import")
    assert "int close_all(int flags);" in imported


def test_a_use_far_up_the_window_counts_no_less_than_a_use_beyond_it(tmp_path: Path) -> None:
    """``status_ok`` is used 150 lines above the cursor and in a function beyond the window;
    thirty other names of the header only beyond it. The weak use in the window must not rank
    ``status_ok`` below names the window never mentions."""
    root = tmp_path / "c"
    root.mkdir()
    (root / "obj.h").write_text(_header(150, {149: "int status_ok(int code);\n"}))
    calls = "".join(f"    table_op{i:03d}(0);\n" for i in range(30))
    early = "int setup(void) {\n" + calls + "    return status_ok(0);\n}\n"
    pad = "".join(f"static int pad{i} = {i};\n" for i in range(250))
    late = "int check(void) {\n    return status_ok(1);\n}\n"
    near = "".join(f"static int gap{i} = {i};\n" for i in range(150))
    before = '#include "obj.h"\n\n' + early + pad + late + near + "int run(void) {\n    "
    (root / "main.c").write_text(before + "\n}\n")
    index = _index(root)
    req = _request(root, "main.c", "c", before, budget=60)
    req.before = "\n".join(before.split("\n")[-200:])  # the window the server sends
    segs = CrossFileContext(lambda uri: index).segments(req)
    imported = "".join(s.text for s in segs if s.kind == "import")
    assert "int status_ok(int code);" in imported
    assert imported.count("table_op") < 30  # the budget is what makes it a choice


def test_a_declaration_and_its_definition_are_shown_once(tmp_path: Path) -> None:
    """Found by name (the header is not included): the header's declaration and the .c
    file's definition say the same, and only one of them takes room."""
    root = tmp_path / "c"
    (root / "lib").mkdir(parents=True)
    (root / "lib" / "sds.h").write_text("void sds_free(char *s);\n")
    (root / "lib" / "sds.c").write_text("void sds_free(char *s) {\n    (void)s;\n}\n")
    before = "void drop(char *s) {\n    sds_free(s);\n    "
    (root / "drop.c").write_text(before + "\n}\n")
    segs = _segments(root, "drop.c", "c", before, budget=300)
    found = [s for s in segs if s.kind == "definition"]
    assert len(found) == 1 and "void sds_free(char *s)" in found[0].text


def test_a_small_header_included_whole_outranks_a_big_headers_popular_names(
    tmp_path: Path,
) -> None:
    """``md4.c`` includes a 150-macro setup header that every file uses and a two-declaration
    ``md4.h``: the small header's constant is what the file included it for, and it is shown
    ahead of the big header's most used macros."""
    root = tmp_path / "c"
    root.mkdir()
    macros = [f"#define SETUP_OPT{i:03d} {i}\n" for i in range(150)]
    (root / "setup.h").write_text("".join(macros))
    uses = "".join(f"    x += SETUP_OPT{i:03d};\n" for i in range(30))
    for n in range(40):  # thirty setup macros are used all over the workspace
        (root / f"user{n}.c").write_text(
            f'#include "setup.h"\nint user{n}(unsigned char *out, const unsigned char *in, int x) '
            f"{{\n    out[{n}] = (unsigned char)(in[{n}] ^ 0x36);\n{uses}    return x;\n}}\n"
        )
    (root / "md4.h").write_text(
        '#include "setup.h"\n#define MD4_DIGEST_LENGTH 16\n'
        "void md4_sum(void *digest, const void *data, size_t size);\n"
    )
    body = "".join(f"    out[{i}] = (unsigned char)(in[{i}] ^ 0x5c);\n" for i in range(24))
    before = (
        '#include "setup.h"\n#include "md4.h"\n\n'
        "static void pad(unsigned char *out, const unsigned char *in) {\n"
        f"{body}}}\n\n"
        "static int check(unsigned char *in, int length) {\n    "
    )
    (root / "md4.c").write_text(before + "\n}\n")
    segs = _segments(root, "md4.c", "c", before, budget=90)
    imported = "".join(s.text for s in segs if s.kind == "import")
    assert "#define MD4_DIGEST_LENGTH 16" in imported


def test_a_window_over_declarations_the_outline_shows_is_not_repeated(tmp_path: Path) -> None:
    """The code before the cursor calls what ``crc.h`` declares, so the header's text is also
    the most similar window: its declarations are shown once, as the outline."""
    root = tmp_path / "c"
    root.mkdir()
    (root / "crc.h").write_text(
        "#ifndef CRC_H\n#define CRC_H\n#include <stdint.h>\n\n"
        "void crc_init(void);\nuint64_t crc_update(uint64_t crc, const void *s, uint64_t len);\n"
        "uint64_t crc_final(uint64_t crc);\n\n#endif\n"
    )
    before = (
        '#include "crc.h"\n\nuint64_t crc_all(const void *s, uint64_t len) {\n'
        "    uint64_t crc;\n    crc_init();\n    crc = crc_update(0, s, len);\n    "
    )
    (root / "crc.c").write_text(before + "\n}\n")
    segs = _segments(root, "crc.c", "c", before, budget=300)
    shown = "".join(s.text for s in segs)
    assert "uint64_t crc_final(uint64_t crc);" in shown
    assert shown.count("void crc_init(void);") == 1
    assert [s.kind for s in segs if s.path == "crc.h"] == ["import"]


def test_a_name_of_the_same_family_as_one_near_the_cursor_ranks(tmp_path: Path) -> None:
    """``SASL_MECH_CRAM_MD5`` is used on the line above: its kin ``SASL_MECH_DIGEST_MD5``
    (same first and last words), declared far from it, is offered ahead of the header's forty
    other declarations."""
    root = tmp_path / "c"
    root.mkdir()
    decls = ["#define SASL_MECH_LOGIN (1 << 0)\n", "#define SASL_MECH_CRAM_MD5 (1 << 2)\n"]
    decls += [f"int sasl_step{i:02d}(int state);\n" for i in range(40)]
    decls += ["#define SASL_MECH_DIGEST_MD5 (1 << 3)\n"]
    (root / "sasl.h").write_text("".join(decls))
    for n in range(10):  # code like the cursor's, which uses none of the header's names
        (root / f"opt{n}.c").write_text(
            f"int opt{n}(int wanted) {{\n    if(wanted & OPT_{n})\n        return 1;\n"
            "    return 0;\n}\n"
        )
    before = (
        '#include "sasl.h"\n\nint pick(int wanted) {\n'
        "    if(wanted & SASL_MECH_CRAM_MD5)\n        return 1;\n    if(wanted & "
    )
    (root / "pick.c").write_text(before + "\n}\n")
    segs = _segments(root, "pick.c", "c", before, budget=60)
    imported = "".join(s.text for s in segs if s.kind == "import")
    assert "#define SASL_MECH_DIGEST_MD5 (1 << 3)" in imported


def test_a_qualified_go_name_is_offered_beside_a_local_namesake(tmp_path: Path) -> None:
    """``promauto`` wraps ``prom.NewSummary`` in a ``NewSummary`` of its own: the local one is
    in view, and the imported one, written ``prom.NewSummary``, is still what the line calls."""
    root = tmp_path / "app"
    before = (
        'package auto\n\nimport "example.com/app/prom"\n\n'
        "// NewSummary works like prom.NewSummary and registers the summary.\n"
        "func NewSummary(opts prom.SummaryOpts) *prom.Summary {\n\ts := "
    )
    _go_package(
        root,
        {
            "go.mod": "module example.com/app\n",
            "prom/summary.go": (
                "package prom\n\ntype SummaryOpts struct{ Name string }\n\ntype Summary struct{}\n\n"
                "// NewSummary creates a summary from opts.\n"
                "func NewSummary(opts SummaryOpts) *Summary { return &Summary{} }\n"
            ),
            "auto/auto.go": before + "\n}\n",
        },
    )
    imported = _import_text(root, "auto/auto.go", before, budget=300)
    assert "func NewSummary(opts SummaryOpts) *Summary" in imported


def test_the_file_of_a_name_used_at_the_cursor_offers_its_other_names(tmp_path: Path) -> None:
    """``prom`` has eight files; ``gauge.go`` sorts past the first few, which offer only the
    names in use and their most used. The cursor's line calls its ``NewGaugeFunc``, and the
    argument that comes next is ``GaugeOpts``, declared further down the same file."""
    root = tmp_path / "app"
    files = {"go.mod": "module example.com/app\n"}
    for c in "abcdef":
        files[f"prom/{c}.go"] = "package prom\n\n" + _funcs(f"Step{c.upper()}", 4)
    gauge = "package prom\n\n// NewGaugeFunc reports f's value.\n"
    gauge += "func NewGaugeFunc(opts GaugeOpts, f func() float64) *Gauge { return nil }\n\n"
    gauge += "type Gauge struct{}\n\n" + _funcs("Tally", 4) + "// GaugeOpts names a gauge.\n"
    gauge += "type GaugeOpts struct{ Name string }\n"
    files["prom/gauge.go"] = gauge
    for i in range(4):  # the decoys of gauge.go are used more than GaugeOpts
        files[f"use/u{i}.go"] = (
            f'package use\n\nimport "example.com/app/prom"\n\nfunc u{i}() int {{\n'
            + "".join(f"\t_ = prom.Tally{k:02d}(1)\n" for k in range(4))
            + "\treturn 0\n}\n"
        )
    before = (
        'package version\n\nimport "example.com/app/prom"\n\n'
        "func NewCollector() any {\n\treturn prom.NewGaugeFunc(\n\t\t"
    )
    files["version/version.go"] = before + "\n}\n"
    _go_package(root, files)
    imported = _import_text(root, "version/version.go", before, budget=400)
    assert "func NewGaugeFunc(" in imported
    assert "type GaugeOpts struct" in imported


def test_counting_the_next_candidates_in_one_call_gives_the_same_context(
    tmp_path: Path,
) -> None:
    """Where each count is a round trip to the model's worker process, the candidates about
    to be weighed are counted in one call: the context is the same, from far fewer calls."""
    root = tmp_path / "app"
    files = {"go.mod": "module example.com/app\n"}
    for c in "abcdefgh":
        files[f"util/{c}.go"] = "package util\n\n" + _funcs(f"Step{c.upper()}", 6)
    _go_package(root, files)
    before = 'package main\n\nimport "example.com/app/util"\n\nfunc main() {\n\tutil.StepA01(1)\n\t'
    (root / "main.go").write_text(before + "\n}\n")
    index = _index(root)
    calls: list[list[str]] = []

    def count(text: str) -> int:
        calls.append([text])
        return len(text) // 4 + 1

    def count_many(texts: list[str]) -> list[int]:
        calls.append(list(texts))
        return [len(t) // 4 + 1 for t in texts]

    found = {}
    for batched in (False, True):
        counter = LineTokenCounter(count, count_many if batched else None)
        req = _request(root, "main.go", "go", before, 300)
        req.count_tokens = counter.whole
        req.count_ahead = counter.whole_many if batched else None
        calls.clear()
        segs = CrossFileContext(lambda uri: index, stable=False).segments(req)
        found[batched] = ([(s.kind, s.path, s.text, s.tokens) for s in segs], len(calls))
    (one_by_one, single_calls), (ahead, batched_calls) = found[False], found[True]
    assert ahead == one_by_one and len(one_by_one) >= 3
    assert single_calls >= 10
    assert batched_calls * 3 <= single_calls


def test_usage_follows_an_edit_of_another_file(tmp_path: Path) -> None:
    """Of ``f.go``'s five names (a file past the package's first few, that nothing near the
    cursor names) the four most used in the workspace are offered. Editing the script that
    names ``Delta`` to name ``Epsilon`` instead swaps the two: the usage kept between
    requests follows the edit, as a fresh start would."""
    from starcoder_ls.context import crossfile

    root = tmp_path / "app"
    files = {"go.mod": "module example.com/app\n"}
    for c in "abcde":
        files[f"util/{c}.go"] = "package util\n\n" + _funcs(f"Step{c.upper()}", 2)
    files["util/f.go"] = "package util\n\n" + "".join(
        f"// {n} does {n}.\nfunc {n}(v int) int {{ return v }}\n\n"
        for n in ("Alpha", "Beta", "Gamma", "Delta", "Epsilon")
    )
    before = 'package main\n\nimport "example.com/app/util"\n\nfunc main() {\n\tutil.StepA00(1)\n\t'
    for i in range(8):  # the code most like the cursor's, which names none of f.go's
        files[f"cmd/c{i}/main.go"] = before + "\n}\n"

    def script(rare: str) -> str:  # the usage: Alpha, Beta, Gamma often, ``rare`` twice
        blocks = [f"x{i} = Alpha + Beta + Gamma\n" + "pass\n" * 39 for i in range(4)]
        return f"a = {rare}\n" + "".join(blocks) + f"b = {rare}\n"

    files["tools/usage.py"] = script("Delta")
    _go_package(root, files)
    (root / "main.go").write_text(before + "\n}\n")
    index = _index(root)
    ctx = CrossFileContext(lambda uri: index)

    def imported() -> str:
        segs = ctx.segments(_request(root, "main.go", "go", before, 600))
        return "".join(s.text for s in segs if s.kind == "import")

    shown = imported()
    assert "func Delta(" in shown and "func Epsilon(" not in shown
    (root / "tools" / "usage.py").write_text(script("Epsilon"))
    index.update("tools/usage.py")
    shown = imported()
    assert "func Epsilon(" in shown and "func Delta(" not in shown
    crossfile._USAGE.clear()  # a fresh start agrees
    assert imported() == shown
