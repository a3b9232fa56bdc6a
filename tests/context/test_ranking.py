"""What ranks the imported definitions nothing near the cursor names yet: the names that code
like the cursor's uses elsewhere in the workspace (co-use), and names written with ``$``."""

from __future__ import annotations

from pathlib import Path

from starcoder_ls.context.crossfile import CrossFileContext, Request
from starcoder_ls.context.index import WorkspaceIndex
from starcoder_ls.settings import WorkspaceSettings

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
    segs = ctx.segments(_request(root, "render/xml.go", "go", CURRENT_BEFORE, budget=120))
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
    index = _index(root)
    segs = CrossFileContext(lambda uri: index).segments(
        _request(root, "src/main.c", "c", before, budget=300)
    )
    assert [(s.kind, s.path) for s in segs if s.kind in ("import", "definition")] == [
        ("import", "src/db.h")
    ]
    assert "int db_open(const char *path);" in segs[0].text
