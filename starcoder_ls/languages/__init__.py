"""Grammar registry: which tree-sitter grammar parses a document, plus per-language facts the
in-file context relies on (comment prefix, import/definition/block node types).

Importing this package is cheap: grammars load on first use.
"""

from starcoder_ls.languages.registry import (
    LANGUAGES,
    LanguageInfo,
    language_for,
    load_language,
    parser_for,
)

__all__ = ["LANGUAGES", "LanguageInfo", "language_for", "load_language", "parser_for"]
