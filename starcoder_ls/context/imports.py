"""Which files of the workspace a file's imports refer to.

Cross-file context puts the definitions a file actually uses into the prompt, and the surest
sign of use is an import: ``from store.db import Db`` says ``store/db.py`` matters more than
any file that merely looks similar. :func:`resolve_import` turns one :class:`ImportRef` (as
``tags.outline`` normalises it per language) into the workspace files it names, following each
language's own lookup rules closely enough to land on the file a reader would open.

It runs per completion request, once for each import of the current file, so it only ever asks
:class:`WorkspaceFiles` dict-and-set questions (see ``imports_workspace``); the per-language rules
live in ``imports_script`` (Python, JS/TS, Ruby, Lua, PHP) and ``imports_native`` (Go, Rust,
Java, C#, C/C++). Anything the workspace does not contain (standard libraries, third-party
packages, system headers) resolves to ``()``: the model knows those already, and guessing would
only put unrelated files into the prompt. Nothing here touches the filesystem: config files
(``go.mod``, ``tsconfig.json``, ``package.json``, ``composer.json``) come through the ``read``
callable given to :class:`WorkspaceFiles`, and no path outside the workspace is ever returned.
"""

from __future__ import annotations

from collections.abc import Callable

from starcoder_ls.context.imports_native import (
    resolve_c,
    resolve_csharp,
    resolve_go,
    resolve_java,
    resolve_rust,
)
from starcoder_ls.context.imports_script import (
    resolve_bash,
    resolve_js,
    resolve_lua,
    resolve_php,
    resolve_python,
    resolve_ruby,
)
from starcoder_ls.context.imports_workspace import WorkspaceFiles, normalize
from starcoder_ls.context.symbols import ImportRef

__all__ = ["MAX_TARGETS", "WorkspaceFiles", "resolve_import"]

MAX_TARGETS = 256
"""At most this many files per import (a Go package, a C# namespace or a Java wildcard):
retrieval reads every name of the first few and looks up only the names used near the cursor
in the rest."""

Resolver = Callable[[ImportRef, str, WorkspaceFiles], list[str]]

_RESOLVERS: dict[str, Resolver] = {
    "python": resolve_python,
    "javascript": lambda ref, src, files: resolve_js(ref, src, files, typescript=False),
    "typescript": lambda ref, src, files: resolve_js(ref, src, files, typescript=True),
    "tsx": lambda ref, src, files: resolve_js(ref, src, files, typescript=True),
    "go": resolve_go,
    "rust": resolve_rust,
    "java": resolve_java,
    "csharp": resolve_csharp,
    "c": resolve_c,
    "cpp": resolve_c,
    "php": resolve_php,
    "ruby": resolve_ruby,
    "lua": resolve_lua,
    "bash": resolve_bash,
}


def resolve_import(
    ref: ImportRef, from_path: str, language: str, files: WorkspaceFiles
) -> tuple[str, ...]:
    """Workspace-relative paths of the files ``ref`` (imported by ``from_path``) refers to, most
    specific first, without duplicates or ``from_path`` itself; ``()`` when it is external or
    unresolvable, or ``language`` has no rules."""
    resolver = _RESOLVERS.get(language)
    src = normalize(from_path)
    if resolver is None or not src or (not ref.module and ref.level <= 0):
        return ()
    out: dict[str, None] = {}
    for path in resolver(ref, src, files):
        if path != src and path in files:
            out[path] = None
            if len(out) >= MAX_TARGETS:
                break
    return tuple(out)
