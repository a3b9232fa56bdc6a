"""Which grammar parses a document, and what the in-file context needs to know about it.

Languages with a grammar wheel installed (tree-sitter >= 0.25 API) are first class: they carry
the node types of imports, of definitions whose headers are worth keeping, and of block bodies.
Other languages may still get a grammar from ``tree_sitter_language_pack`` when that optional
package is installed; without it they are known by name and comment prefix only and the context
falls back to text and indentation heuristics. A language nobody knows is ``None``, never an
error: completion then works on plain text.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from dataclasses import dataclass, field
from functools import cache
from pathlib import PurePath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tree_sitter

log = logging.getLogger(__name__)

GENERIC_OPENER = re.compile(r"(?:[:{(\[]|\bdo|\bthen|\bbegin)$")
BRACE_OPENER = re.compile(r"[{(\[]$")
GENERIC_IMPORT = re.compile(
    r"^(?:import|from\s+\S+\s+import|#\s*include|using|use|require|package|open)\b", re.M
)


@dataclass(frozen=True)
class LanguageInfo:
    """One language: how to find it, how to parse it, and the node types context uses."""

    name: str
    language_ids: tuple[str, ...]
    """LSP languageIds that select it."""
    extensions: tuple[str, ...] = ()
    """Lower-case file suffixes, with the dot."""
    line_comment: str | None = None
    grammar: str | None = None
    """``module:function`` of a grammar wheel, ``pack:NAME`` for tree_sitter_language_pack."""
    filenames: tuple[str, ...] = ()
    import_types: frozenset[str] = frozenset()
    """Top-level nodes that bring names into the file (imports, includes, package lines)."""
    definition_types: frozenset[str] = frozenset()
    """Nodes whose header (up to the body) is worth keeping when the cursor is inside them."""
    block_types: frozenset[str] = frozenset()
    """Body nodes: a block holding only trivia is an empty body, where a multi-line completion
    belongs."""
    trivia_types: frozenset[str] = frozenset({"comment", "line_comment", "block_comment"})
    indent_scoped: bool = False
    """Blocks end by dedent (Python): a block node stops at its last statement, so a cursor on a
    blank line below it is scoped by indentation, not by byte ranges."""
    block_opener: re.Pattern[str] = field(default=GENERIC_OPENER, compare=False)
    """Matches the end of a code line (comment stripped) that opens a block."""
    block_start: re.Pattern[str] | None = field(default=None, compare=False)
    """Matches a whole code line that opens a block by its first keyword (Ruby's ``def m(a)``)."""
    import_line: re.Pattern[str] | None = field(default=None, compare=False)
    """Multi-line regex for import lines, for languages whose imports are calls (Ruby, Lua)
    and for text without a tree."""


_C_DEFS = frozenset(
    {"function_definition", "struct_specifier", "union_specifier", "enum_specifier"}
)
_JS_DEFS = frozenset(
    {
        "function_declaration",
        "function_expression",
        "generator_function_declaration",
        "class_declaration",
        "class",
        "method_definition",
        "arrow_function",
    }
)
_TS_DEFS = _JS_DEFS | {
    "interface_declaration",
    "abstract_class_declaration",
    "internal_module",
    "module",
    "enum_declaration",
}
_JS_BLOCKS = frozenset({"statement_block", "class_body", "interface_body", "enum_body"})
_GENERIC_DEFS = frozenset(
    _TS_DEFS
    | _C_DEFS
    | {
        "class_definition",
        "method_declaration",
        "function_item",
        "impl_item",
        "trait_item",
        "object_declaration",
        "protocol_declaration",
        "namespace_declaration",
        "module_definition",
    }
)
_GENERIC_IMPORTS = frozenset(
    {
        "import_statement",
        "import_from_statement",
        "import_declaration",
        "import_header",
        "import_directive",
        "use_declaration",
        "using_directive",
        "preproc_include",
        "package_declaration",
        "package_clause",
    }
)
_GENERIC_BLOCKS = frozenset(
    {"block", "statement_block", "compound_statement", "class_body", "declaration_list"}
)


BUILTIN: tuple[LanguageInfo, ...] = (
    LanguageInfo(
        "python",
        ("python",),
        (".py", ".pyi", ".pyw"),
        "#",
        "tree_sitter_python:language",
        import_types=frozenset(
            {"import_statement", "import_from_statement", "future_import_statement"}
        ),
        definition_types=frozenset({"function_definition", "class_definition"}),
        block_types=frozenset({"block"}),
        indent_scoped=True,
        block_opener=re.compile(r"[:{(\[]$"),
        import_line=re.compile(r"^(?:import|from)\s+\S", re.M),
    ),
    LanguageInfo(
        "javascript",
        ("javascript", "javascriptreact", "js", "jsx"),
        (".js", ".mjs", ".cjs", ".jsx"),
        "//",
        "tree_sitter_javascript:language",
        import_types=frozenset({"import_statement"}),
        definition_types=_JS_DEFS,
        block_types=_JS_BLOCKS,
        block_opener=BRACE_OPENER,
        import_line=re.compile(r"^(?:import\b|(?:const|let|var)\s+.*=\s*require\()", re.M),
    ),
    LanguageInfo(
        "typescript",
        ("typescript", "ts"),
        (".ts", ".mts", ".cts"),
        "//",
        "tree_sitter_typescript:language_typescript",
        import_types=frozenset({"import_statement"}),
        definition_types=_TS_DEFS,
        block_types=_JS_BLOCKS,
        block_opener=BRACE_OPENER,
    ),
    LanguageInfo(
        "tsx",
        ("typescriptreact", "tsx"),
        (".tsx",),
        "//",
        "tree_sitter_typescript:language_tsx",
        import_types=frozenset({"import_statement"}),
        definition_types=_TS_DEFS,
        block_types=_JS_BLOCKS,
        block_opener=BRACE_OPENER,
    ),
    LanguageInfo(
        "go",
        ("go",),
        (".go",),
        "//",
        "tree_sitter_go:language",
        import_types=frozenset({"package_clause", "import_declaration"}),
        definition_types=frozenset(
            {"function_declaration", "method_declaration", "type_declaration", "func_literal"}
        ),
        block_types=frozenset({"block", "field_declaration_list", "interface_type"}),
        block_opener=BRACE_OPENER,
    ),
    LanguageInfo(
        "rust",
        ("rust",),
        (".rs",),
        "//",
        "tree_sitter_rust:language",
        import_types=frozenset({"use_declaration", "extern_crate_declaration"}),
        definition_types=frozenset(
            {"function_item", "impl_item", "trait_item", "mod_item", "struct_item", "enum_item"}
        ),
        block_types=frozenset(
            {"block", "declaration_list", "field_declaration_list", "enum_variant_list"}
        ),
        block_opener=BRACE_OPENER,
    ),
    LanguageInfo(
        "java",
        ("java",),
        (".java",),
        "//",
        "tree_sitter_java:language",
        import_types=frozenset({"package_declaration", "import_declaration"}),
        definition_types=frozenset(
            {
                "class_declaration",
                "interface_declaration",
                "enum_declaration",
                "record_declaration",
                "method_declaration",
                "constructor_declaration",
                "annotation_type_declaration",
            }
        ),
        block_types=frozenset(
            {"block", "class_body", "interface_body", "enum_body", "constructor_body"}
        ),
        block_opener=BRACE_OPENER,
    ),
    LanguageInfo(
        "c",
        ("c",),
        (".c", ".h"),
        "//",
        "tree_sitter_c:language",
        import_types=frozenset({"preproc_include"}),
        definition_types=_C_DEFS,
        block_types=frozenset({"compound_statement", "field_declaration_list"}),
        block_opener=BRACE_OPENER,
    ),
    LanguageInfo(
        "cpp",
        ("cpp", "c++", "cuda-cpp"),
        (".cc", ".cpp", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".ipp", ".cu", ".cuh"),
        "//",
        "tree_sitter_cpp:language",
        import_types=frozenset({"preproc_include", "using_declaration"}),
        definition_types=_C_DEFS | {"class_specifier", "namespace_definition"},
        block_types=frozenset({"compound_statement", "field_declaration_list", "declaration_list"}),
        block_opener=BRACE_OPENER,
    ),
    LanguageInfo(
        "csharp",
        ("csharp", "c#"),
        (".cs", ".csx"),
        "//",
        "tree_sitter_c_sharp:language",
        import_types=frozenset({"using_directive", "file_scoped_namespace_declaration"}),
        definition_types=frozenset(
            {
                "class_declaration",
                "struct_declaration",
                "interface_declaration",
                "record_declaration",
                "enum_declaration",
                "namespace_declaration",
                "method_declaration",
                "constructor_declaration",
                "local_function_statement",
            }
        ),
        block_types=frozenset({"block", "declaration_list"}),
        block_opener=BRACE_OPENER,
    ),
    LanguageInfo(
        "ruby",
        ("ruby",),
        (".rb", ".rake", ".gemspec", ".ru"),
        "#",
        "tree_sitter_ruby:language",
        filenames=("Rakefile", "Gemfile"),
        definition_types=frozenset(
            {"class", "module", "method", "singleton_method", "singleton_class"}
        ),
        block_types=frozenset({"body_statement", "do_block", "block"}),
        block_opener=re.compile(r"(?:\bdo(?:\s*\|[^|]*\|)?|\bthen|[{(\[]|\|[^|]*\|)$"),
        block_start=re.compile(
            r"^\s*(?:def|class|module|if|unless|while|until|for|case|begin|else|elsif|when"
            r"|rescue|ensure)\b(?!.*\bend$)"
        ),
        import_line=re.compile(r"^(?:require|require_relative|load)\b", re.M),
    ),
    LanguageInfo(
        "php",
        ("php",),
        (".php", ".phtml"),
        "//",
        "tree_sitter_php:language_php",
        import_types=frozenset({"namespace_use_declaration", "namespace_definition"}),
        definition_types=frozenset(
            {
                "class_declaration",
                "interface_declaration",
                "trait_declaration",
                "enum_declaration",
                "function_definition",
                "method_declaration",
            }
        ),
        block_types=frozenset({"compound_statement", "declaration_list"}),
        block_opener=BRACE_OPENER,
    ),
    LanguageInfo(
        "bash",
        ("shellscript", "bash", "sh", "zsh"),
        (".sh", ".bash", ".zsh"),
        "#",
        "tree_sitter_bash:language",
        filenames=(".bashrc", ".bash_profile", ".profile", ".zshrc"),
        definition_types=frozenset({"function_definition"}),
        block_types=frozenset({"compound_statement", "do_group"}),
        block_opener=re.compile(r"(?:\bthen|\bdo|\belse|\bin|[{(])$"),
        import_line=re.compile(r"^(?:source|\.)\s+\S", re.M),
    ),
    LanguageInfo(
        "lua",
        ("lua",),
        (".lua",),
        "--",
        "tree_sitter_lua:language",
        definition_types=frozenset({"function_declaration", "function_definition"}),
        block_types=frozenset({"block"}),
        block_opener=re.compile(
            r"(?:\bthen|\bdo|\belse|\brepeat|\bfunction\b[^()]*\([^()]*\)|[{(\[])$"
        ),
        import_line=re.compile(r"^(?:local\s+)?[\w.,\s]*=\s*require\b|^require\b", re.M),
    ),
)

# Languages known by name; a grammar only with tree_sitter_language_pack installed.
# (name, languageIds, extensions, line comment, indent scoped)
_LONG_TAIL: tuple[tuple[str, tuple[str, ...], tuple[str, ...], str | None, bool], ...] = (
    ("kotlin", ("kotlin",), (".kt", ".kts"), "//", False),
    ("swift", ("swift",), (".swift",), "//", False),
    ("scala", ("scala",), (".scala", ".sc"), "//", False),
    ("dart", ("dart",), (".dart",), "//", False),
    ("zig", ("zig",), (".zig",), "//", False),
    ("objc", ("objective-c",), (".m",), "//", False),
    ("groovy", ("groovy",), (".groovy", ".gradle"), "//", False),
    ("solidity", ("solidity",), (".sol",), "//", False),
    ("haskell", ("haskell",), (".hs",), "--", True),
    ("elm", ("elm",), (".elm",), "--", True),
    ("sql", ("sql",), (".sql",), "--", False),
    ("elixir", ("elixir",), (".ex", ".exs"), "#", False),
    ("erlang", ("erlang",), (".erl", ".hrl"), "%", False),
    ("ocaml", ("ocaml",), (".ml", ".mli"), None, False),
    ("r", ("r",), (".r",), "#", False),
    ("julia", ("julia",), (".jl",), "#", False),
    ("perl", ("perl",), (".pl", ".pm"), "#", False),
    ("powershell", ("powershell",), (".ps1", ".psm1"), "#", False),
    ("nim", ("nim",), (".nim",), "#", True),
    ("yaml", ("yaml",), (".yaml", ".yml"), "#", True),
    ("toml", ("toml",), (".toml",), "#", False),
    ("dockerfile", ("dockerfile",), (".dockerfile",), "#", False),
    ("make", ("makefile", "make"), (".mk",), "#", False),
    ("cmake", ("cmake",), (".cmake",), "#", False),
    ("nix", ("nix",), (".nix",), "#", False),
    ("hcl", ("terraform", "hcl"), (".tf", ".hcl"), "#", False),
    ("clojure", ("clojure",), (".clj", ".cljs", ".cljc", ".edn"), ";", False),
    ("commonlisp", ("lisp", "commonlisp"), (".lisp", ".lsp"), ";", False),
    ("fortran", ("fortran", "fortran-modern"), (".f90", ".f95", ".f03"), "!", False),
    ("matlab", ("matlab",), (), "%", False),
    ("html", ("html",), (".html", ".htm"), None, False),
    ("css", ("css",), (".css",), None, False),
    ("scss", ("scss",), (".scss",), "//", False),
    ("vue", ("vue",), (".vue",), None, False),
    ("svelte", ("svelte",), (".svelte",), None, False),
    ("markdown", ("markdown",), (".md", ".markdown"), None, False),
    ("json", ("json", "jsonc"), (".json", ".jsonc"), None, False),
    ("graphql", ("graphql",), (".graphql", ".gql"), "#", False),
    ("proto", ("proto", "proto3"), (".proto",), "//", False),
)
_SPECIAL_FILENAMES = {"Dockerfile": "dockerfile", "Makefile": "make", "CMakeLists.txt": "cmake"}


def _long_tail() -> tuple[LanguageInfo, ...]:
    out = []
    for name, ids, exts, comment, indent in _LONG_TAIL:
        files = tuple(f for f, lang in _SPECIAL_FILENAMES.items() if lang == name)
        out.append(
            LanguageInfo(
                name,
                ids,
                exts,
                comment,
                f"pack:{name}",
                filenames=files,
                import_types=_GENERIC_IMPORTS,
                definition_types=_GENERIC_DEFS,
                block_types=_GENERIC_BLOCKS,
                indent_scoped=indent,
                import_line=GENERIC_IMPORT,
            )
        )
    return tuple(out)


LANGUAGES: tuple[LanguageInfo, ...] = BUILTIN + _long_tail()
_BY_ID = {lid: info for info in reversed(LANGUAGES) for lid in info.language_ids}
_BY_EXT = {ext: info for info in reversed(LANGUAGES) for ext in info.extensions}
_BY_FILENAME = {name: info for info in LANGUAGES for name in info.filenames}
_BY_NAME = {info.name: info for info in LANGUAGES}


def language_for(language_id: str | None, path: str | None = None) -> LanguageInfo | None:
    """The entry for a document: its LSP languageId wins, then the file name, then the suffix.

    ``path`` may be a file path or the path part of a URI. Unknown languages give None.
    """
    if language_id:
        key = language_id.strip().lower()
        info = _BY_ID.get(key) or _BY_NAME.get(key)
        if info is not None:
            return info
    if path:
        p = PurePath(path.replace("\\", "/"))
        if p.name in _BY_FILENAME:
            return _BY_FILENAME[p.name]
        return _BY_EXT.get(p.suffix.lower())
    return None


_CPP_MARKERS = re.compile(
    r"^[ \t]*(?:namespace\s+[\w:]+\s*\{|template\s*<|(?:public|private|protected)\s*:"
    r"|class\s+\w+[^;()\n]*$)|\bstd::\w",
    re.M,
)


def for_header(info: LanguageInfo, path: str, text: str) -> LanguageInfo:
    """A ``.h`` file is C unless its text is C++'s (a class, a namespace, a template, access
    labels, ``std::``): C++ projects often name their headers ``.h`` (leveldb, Qt), and the C
    grammar reads a class as a broken function."""
    if info.name != "c" or not path.endswith(".h") or _CPP_MARKERS.search(text) is None:
        return info
    return _BY_NAME.get("cpp", info)


@cache
def load_language(info: LanguageInfo) -> tree_sitter.Language | None:
    """The compiled grammar, or None when its package is missing or does not load.

    Cached for the process: a Language is immutable and shared by every parser.
    """
    if info.grammar is None:
        return None
    try:
        import tree_sitter

        kind, _, target = info.grammar.partition(":")
        if kind == "pack":
            from tree_sitter_language_pack import get_language  # optional long-tail extra

            return get_language(target)
        module = importlib.import_module(kind)
        return tree_sitter.Language(getattr(module, target)())
    except Exception as exc:  # missing wheel, ABI mismatch, unknown pack name: plain text
        log.debug("no grammar for %s: %s", info.name, exc)
        return None


_local = threading.local()


def parser_for(info: LanguageInfo | None) -> tree_sitter.Parser | None:
    """A parser for ``info``, cached per thread (a Parser must not be shared across threads)."""
    if info is None:
        return None
    parsers: dict[str, tree_sitter.Parser | None] | None = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = _local.parsers = {}
    if info.name not in parsers:
        language = load_language(info)
        if language is None:
            parsers[info.name] = None
        else:
            import tree_sitter

            parsers[info.name] = tree_sitter.Parser(language)
    return parsers[info.name]
