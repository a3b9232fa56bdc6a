"""Outlines as the prompt shows them, on the shapes real C and Go code has (found in redis
and curl): bodiless definitions stay as written, and a doc comment never reaches across code
or comes from commented-out code."""

from __future__ import annotations

from starcoder_ls.context import outlines
from starcoder_ls.context.tags import outline

C_SOURCE = """\
/* Make sure connection-intensive things like the benchmark
 * will be able to close/open sockets many times */
static int reuse(int fd) {
    return setsockopt(fd);
}

#define CONNECT_NONE 0
#define CONNECT_BE_BINDING 2 /* Best effort binding. */
static int generic_connect(char *err, int port) {
    return 0;
}

/* first byte is command. */
#define MSG_CONNECT    0x10
/* #define MSG_CONNACK    0x20 */
#define MSG_PUBLISH    0x30
"""

GO_SOURCE = """\
package render

// Package is the import path of the JSON encoder.
const Package = "encoding/json"

// ID names a user.
type ID = string

// Render writes the value.
func Render(v any) error { return nil }
"""


def _rendered(source: str, language: str) -> dict[str, str]:
    found = outline(source, language, f"x.{language}")
    return {s.name: outlines.render(s, found.symbols, language) for s in found.symbols}


def test_bodiless_definitions_are_rendered_as_written() -> None:
    c = _rendered(C_SOURCE, "c")
    assert c["CONNECT_NONE"].strip() == "#define CONNECT_NONE 0"
    go = _rendered(GO_SOURCE, "go")
    assert go["Package"].splitlines()[-1] == 'const Package = "encoding/json"'
    assert "{ ... }" not in go["Package"] + go["ID"]
    assert go["Render"].rstrip().endswith("{ ... }")  # a function keeps its body marker


def test_a_trailing_comment_on_code_is_not_the_next_definitions_doc() -> None:
    c = _rendered(C_SOURCE, "c")
    assert c["generic_connect"].startswith("static int generic_connect")
    lines = "".join(c.values()).splitlines()
    assert not [ln for ln in lines if "*/" in ln and "/*" not in ln]  # no half comments
    assert "Make sure" in c["reuse"]


def test_commented_out_code_is_not_documentation() -> None:
    c = _rendered(C_SOURCE, "c")
    assert c["MSG_PUBLISH"].strip() == "#define MSG_PUBLISH    0x30"
    assert c["MSG_CONNECT"].startswith("// first byte is command.")


TS_SOURCE = """\
/////////////////////////////////////////////
/////    $ZodCheckStringFormatRegex    /////
/////////////////////////////////////////////
export type Formats =
  | "email"
  | "url"
  | "uuid"
  | "cuid"
  | "ulid"
  | "date";

// ---------------------------------
// Parses a format name.
// ---------------------------------
export function parse(x: string): Formats { return x as Formats; }
"""


def test_a_section_banner_is_not_documentation_and_rules_are_dropped() -> None:
    ts = _rendered(TS_SOURCE, "typescript")
    assert ts["Formats"].startswith("type Formats =")
    assert ts["parse"].startswith("// Parses a format name.\nfunction parse(")


def test_the_brief_form_of_a_long_signature_keeps_its_first_lines() -> None:
    found = outline(TS_SOURCE, "typescript", "x.ts")
    sym = next(s for s in found.symbols if s.name == "Formats")
    brief = outlines.render(sym, found.symbols, "typescript", brief=True)
    assert brief.splitlines() == ["type Formats =", '  | "email"', '  | "url"', '  | "uuid"']
    full = outlines.render(sym, found.symbols, "typescript")
    assert '| "date";' in full or '| "date"' in full


def test_an_outline_shows_the_first_sentence_of_a_doc() -> None:
    go = """\
package prometheus

// Labels represents a collection of label name -> value mappings. This type is
// commonly used with the With(Labels) and GetMetricWith(Labels) methods of
// metric vector Collectors.
type Labels map[string]string

// Sum adds the prices of every item
// in the cart and applies the discount.
// See Cart for the rest.
func Sum(c Cart) float64 { return 0 }

// NewRegistry creates a new vanilla Registry without any Collectors
// pre-registered, for tests and custom setups without the default ones
func NewRegistry() *Registry { return nil }
"""
    r = _rendered(go, "go")
    assert r["Labels"].splitlines()[0] == (
        "// Labels represents a collection of label name -> value mappings."
    )
    assert r["Sum"].splitlines()[:2] == [
        "// Sum adds the prices of every item",
        "// in the cart and applies the discount.",
    ]
    assert r["NewRegistry"].splitlines() == [
        "// NewRegistry creates a new vanilla Registry without any Collectors",
        "func NewRegistry() *Registry { ... }",
    ]


def test_module_level_literal_constants_are_definitions() -> None:
    """`export const VERSION = "1.2"` is something other files import by name; an object or a
    call is left out (its value would be the whole outline), and so are function locals."""
    src = (
        '// The release.\nexport const version = "1.0.0";\nconst LIMIT = 5;\n'
        "export const config = { a: 1 };\nfunction g() {\n  const inner = 3;\n}\n"
    )
    for language in ("typescript", "javascript"):
        r = _rendered(src, language)
        assert r["version"] == '// The release.\nconst version = "1.0.0"\n'
        assert r["LIMIT"] == "const LIMIT = 5\n"
        assert "config" not in r and "inner" not in r


C_HEADER = """\
#define CLIENT_ID_AOF (UINT64_MAX) /* Reserved ID for the AOF client. If you
                                      need more reserved IDs use UINT64_MAX-1. */
typedef struct client {
    uint64_t id;            /* Client incremental unique ID. */
    uint64_t flags;         /* Client flags: CLIENT_* macros. */
} client;
typedef enum {
    REPL_STATE_NONE = 0,    /* No active replication */
    REPL_STATE_CONNECT,
} repl_state;
"""


def test_the_brief_form_of_a_c_macro_or_struct_is_its_first_line() -> None:
    """A macro whose comment runs on, a struct and an enum: their brief forms (what fills the
    room left when many names compete) are one line each, the comment closed and a typedef's
    name (after the closing brace) kept."""
    found = outline(C_HEADER, "c", "server.h")
    briefs = [outlines.render(s, (), "c", brief=True) for s in found.symbols if not s.parent]
    assert briefs == [
        "#define CLIENT_ID_AOF (UINT64_MAX) /* Reserved ID for the AOF client. If you ... */\n",
        "typedef struct client { ... } client\n",
        "struct client { ... }\n",
        "typedef enum { ... } repl_state\n",
    ]


def test_a_keyword_is_never_a_definition() -> None:
    """An ``if`` whose condition an ``#ifndef`` splits (curl's vtls code) reads to the parser
    as a function named ``if``: it is not a definition."""
    text = (
        "      else if((lib == ERR_LIB_SSL) &&\n#ifndef HAVE_BORINGSSL_LIKE\n"
        "              (reason == SSL_R_ECH_REQUIRED)) {\n"
    )
    assert [s.name for s in outline(text, "c", "openssl.c").symbols] == []
