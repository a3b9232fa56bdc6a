"""Definitions rendered for a prompt: signatures and docstrings, never bodies.

A model completing ``db.fetch_user(`` needs the signature of ``fetch_user`` and what it returns,
not its forty lines of SQL; an outline gives it that in a tenth of the tokens, so more
definitions fit. A class comes with the signatures of its methods. The rendering stays valid-
looking code of the file's language (Python bodies are ``...``, brace languages ``{ ... }``)
because the model reads other files as code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starcoder_ls.context.symbols import Symbol
from starcoder_ls.languages.registry import language_for

CONTAINER_KINDS = frozenset(
    {"class", "interface", "struct", "trait", "enum", "module", "impl", "namespace"}
)
BODILESS_KINDS = frozenset({"constant", "macro", "type", "variable", "field"})
"""Definitions whose signature is the whole definition (``#define C_OK 0``, ``const
Package = "encoding/json"``, ``type ID = string``): rendered as written, no ``{ ... }``."""
_MAX_MEMBERS = 24
DOC_LINES = 2
"""Lines of a docstring an outline may show (its first sentence, see :func:`_short_doc`)."""
_TRAILING_COMMENT = re.compile(r"\s*(?:/\*.*?(?:\*/|$)|//.*)$")
_TYPEDEF_TAIL = re.compile(r"\}\s*[\w*][\w\s,*]*;?$")
_BRIEF_LINES = 4
"""Lines of a signature kept in its brief form."""


def members(symbol: Symbol, symbols: Sequence[Symbol]) -> list[Symbol]:
    """The direct members of a container symbol, in source order."""
    if symbol.kind not in CONTAINER_KINDS:
        return []
    return [
        s
        for s in symbols
        if s.parent == symbol.name and symbol.line <= s.line <= symbol.end_line and s is not symbol
    ][:_MAX_MEMBERS]


def _indent(text: str, pad: str) -> str:
    return "".join(pad + line if line.strip() else line for line in text.splitlines(True))


def _python(symbol: Symbol, pad: str = "") -> str:
    out = _indent(symbol.signature.rstrip() + "\n", pad)
    body = pad + "    "
    if symbol.doc:
        doc = symbol.doc.strip().replace('"""', r"\"\"\"")
        if "\n" in doc:
            out += f'{body}"""{_indent(doc, body).lstrip()}\n{body}"""\n'
        else:
            out += f'{body}"""{doc}"""\n'
    return out


def _commented_doc(doc: str, comment: str, pad: str) -> str:
    return "".join(f"{pad}{comment} {line}".rstrip() + "\n" for line in doc.strip().splitlines())


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def _short_doc(doc: str, lines: int) -> str:
    """The doc's first sentence, within its first ``lines`` lines (the first line when the
    sentence runs on): what a definition is for, in the fewest tokens."""
    kept = doc.strip().split("\n\n", 1)[0].splitlines()[:lines]
    for i, line in enumerate(kept):
        end = _SENTENCE_END.search(line)
        if end is not None:
            return "\n".join([*kept[:i], line[: end.end()]])
    return kept[0] if kept else ""


def render(
    symbol: Symbol,
    symbols: Sequence[Symbol],
    language: str | None,
    *,
    brief: bool = False,
    chosen: Sequence[Symbol] | None = None,
) -> str:
    """The outline of one definition: its signature and the start of its docstring, and for a
    container the signatures of its members (their docstrings left out: a class's API is its
    method list). ``brief`` gives the signature alone, for when the full outline does not fit;
    ``chosen`` are the members to show (all, up to a limit, by default)."""
    import dataclasses

    info = language_for(language)
    name = info.name if info else ""
    doc = "" if brief else _short_doc(symbol.doc, DOC_LINES)
    symbol = dataclasses.replace(symbol, doc=doc)
    shown = members(symbol, symbols) if chosen is None else chosen
    children = [] if brief else [dataclasses.replace(c, doc="") for c in shown]
    if name == "python":
        out = _python(symbol)
        if children:
            out += "".join(_python(c, "    ") + "        ...\n" for c in children)
        else:
            out += "    ...\n"
        return out
    comment = (info.line_comment if info else None) or "//"
    sig = symbol.signature.rstrip()
    if symbol.kind == "macro" and sig.split("\n", 1)[0].rstrip().endswith("\\"):
        # A macro continued over lines: its name and parameters are what a caller needs.
        sig = sig.split("\n", 1)[0].rstrip()[:-1].rstrip()
    first = sig.split("\n", 1)[0].rstrip()
    closed = False
    if brief and "\n" in sig and first.rfind("/*") > first.rfind("*/"):
        sig = first + " ... */"  # what follows is the first line's comment running on
    elif brief and "\n" in sig and _TRAILING_COMMENT.sub("", first).endswith("{"):
        # A struct's or enum's opening line says what it is; its fields are the full outline's.
        # A typedef names it after the closing brace (``typedef struct { ... } user``).
        last = sig.rsplit("\n", 1)[1].strip()
        sig = first + " ... " + (last if _TYPEDEF_TAIL.match(last) else "}")
        closed = True
    elif brief and sig.count("\n") >= _BRIEF_LINES:
        # A signature that runs on (a union of thirty literals): its first lines say what it is.
        sig = "\n".join(sig.split("\n")[:_BRIEF_LINES])
    out = _commented_doc(symbol.doc, comment, "") if symbol.doc else ""
    braces = name not in ("ruby", "lua", "bash")
    if not braces:
        out += sig + "\n"
        out += "".join(
            _commented_doc(c.doc, comment, "  ") + f"  {c.signature.strip()}\n" for c in children
        )
        return out
    if closed or sig.endswith((";", "}")) or (symbol.kind in BODILESS_KINDS and not children):
        return out + sig + "\n"
    if not children:
        return out + sig + " { ... }\n"
    out += sig + " {\n"
    for c in children:
        if c.doc:
            out += _commented_doc(c.doc, comment, "    ")
        csig = _indent(c.signature.rstrip(), "    ")
        out += csig + ("\n" if csig.endswith((";", "}", ",")) else " { ... }\n")
    return out + "}\n"
