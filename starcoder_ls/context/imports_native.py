"""Import resolution for the compiled languages: Go, Rust, Java, C#, C and C++.

These import by package, module or namespace rather than by file, and their build systems map
those names onto directories (``go.mod``, the crate layout, the Java source tree, C# namespaces
declared in the files, include directories). The resolvers reproduce the usual layouts from the
workspace's own files: a name that no workspace file declares or lays out is external (standard
library, a dependency, a system header) and resolves to nothing.
"""

from __future__ import annotations

import re

from starcoder_ls.context.imports_workspace import (
    WorkspaceFiles,
    ancestors,
    cat,
    join,
    nearest,
    normalize,
    parent,
    shared_depth,
)
from starcoder_ls.context.symbols import ImportRef

_MAX_PROBES = 16
"""Candidate directories examined for one suffix match."""

_MAX_GO_DIRS = 64
"""Directories examined for one tail of a Go import path."""

# -- go -------------------------------------------------------------------------------------

_GO_MODULE = re.compile(r'^\s*module\s+"?([^\s"]+)', re.M)


def _go_module(text: str) -> str:
    m = _GO_MODULE.search(text)
    return m.group(1) if m else ""


def _module_above(files: WorkspaceFiles, directory: str) -> tuple[str, str] | None:
    """(directory, module path) of the ``go.mod`` owning ``directory``: the nearest one above."""

    def find() -> tuple[str, str] | None:
        for d in ancestors(directory):
            path = cat(d, "go.mod")
            if path in files or files.read(path) is not None:
                module = files.parsed(path, "go.mod", _go_module)
                return (d, module) if module else None
        return None

    return files.derived(("go.mod", directory), find)


def _known_modules(files: WorkspaceFiles, src: str) -> list[tuple[str, str]]:
    """Modules of the indexed ``go.mod`` files and the importing file's, longest path first."""

    def indexed() -> list[tuple[str, str]]:
        out = []
        for path in files.with_suffix("go.mod"):
            module = files.parsed(path, "go.mod", _go_module)
            if module:
                out.append((parent(path), module))
        return out

    mods = set(files.derived("go.mods", indexed))
    own = _module_above(files, parent(src))
    if own is not None:
        mods.add(own)
    return sorted(mods, key=lambda m: (-len(m[1]), m))


def _go_files(files: WorkspaceFiles, d: str) -> list[str]:
    """The package in directory ``d``: its ``.go`` files, tests left out."""
    names = files.names_in(d)
    return sorted(cat(d, n) for n in names if n.endswith(".go") and not n.endswith("_test.go"))


def resolve_go(ref: ImportRef, src: str, files: WorkspaceFiles) -> list[str]:
    path = ref.module.strip().strip('"')
    if not path or path.startswith("/"):
        return []
    if path.startswith("."):
        local = join(parent(src), path)
        return _go_files(files, local) if local is not None else []
    for mod_dir, module in _known_modules(files, src):
        if path == module:
            d: str | None = mod_dir
        elif path.startswith(module + "/"):
            d = join(mod_dir, path[len(module) + 1 :])
        else:
            continue
        if d is not None and (found := _go_files(files, d)):
            return found
    # A module whose go.mod is not indexed: directories laid out like the import path's tail,
    # accepted when the go.mod above them names the rest.
    # The match is exact, so candidates need no ranking; only the count is bounded.
    segs = path.split("/")
    for k in range(len(segs), 0, -1):
        for d in sorted(files.dirs_with_suffix("/".join(segs[-k:])))[:_MAX_GO_DIRS]:
            owner = _module_above(files, d)
            if owner is None:
                continue
            mod_dir, module = owner
            rel = d[len(mod_dir) + 1 :] if mod_dir else d
            if (f"{module}/{rel}" if rel else module) == path and (found := _go_files(files, d)):
                return found
    return []


# -- rust -----------------------------------------------------------------------------------


def _crate_src(files: WorkspaceFiles, src: str) -> str | None:
    """The ``src`` directory of the crate holding ``src``: nearest with ``lib.rs``/``main.rs``."""
    for d in ancestors(parent(src)):
        root = cat(d, "src")
        if cat(root, "lib.rs") in files or cat(root, "main.rs") in files:
            return root
    return None


def _rust_mod_file(files: WorkspaceFiles, d: str, crate: str) -> str | None:
    """The file of the module whose children live in ``d``."""
    cands = (cat(d, "lib.rs"), cat(d, "main.rs")) if d == crate else (d + ".rs", d + "/mod.rs")
    for cand in cands:
        if cand in files:
            return cand
    return None


def _rust_path(
    files: WorkspaceFiles, base: str, crate: str, segs: list[str], names: list[str], least: int
) -> list[str]:
    """Module files for ``base::segs`` (most specific first: ``a::b::C`` may be an item of
    ``a::b`` or of ``a``), using at least ``least`` segments; ``names`` may be submodules."""
    for k in range(len(segs), least - 1, -1):
        d = cat(base, "/".join(segs[:k])) if k else base
        module = _rust_mod_file(files, d, crate)
        if module is None:
            continue
        if k < len(segs) or not names:
            return [module]
        out = [_rust_mod_file(files, cat(d, n), crate) or module for n in names]
        return [p for p in out if p]
    return []


def resolve_rust(ref: ImportRef, src: str, files: WorkspaceFiles) -> list[str]:
    crate = _crate_src(files, src)
    if crate is None:
        return []
    d, _, file = src.rpartition("/")
    if not src.startswith(crate + "/"):
        # tests/, examples/, benches/: each file is the root of a crate of its own.
        crate = here = d
    elif file == "mod.rs" or (d == crate and file in ("lib.rs", "main.rs")):
        here = d  # where the current module's children live: foo.rs and foo/mod.rs define foo/
    else:
        here = src[:-3]
    if ref.kind == "mod":
        name = ref.module.strip()
        return _rust_path(files, here, crate, [name], [], 1) if name else []
    text = ref.module.replace(" ", "")
    text, _, group = text.partition("{")
    names = [n for n in ref.names if n and n not in ("self", "*")]
    if group:
        names += [n.strip("{}").partition("::")[0] for n in group.split(",")]
        names = [n for n in dict.fromkeys(names) if n and n not in ("self", "*")]
    segs = [s for s in text.split("::") if s and s != "*"]
    if not segs:
        return []
    if segs[0] == "crate":
        return _rust_path(files, crate, crate, segs[1:], names, 0)
    if segs[0] in ("self", "super"):
        base = here
        if segs[0] == "self":
            segs = segs[1:]
        while segs and segs[0] == "super":
            if base == crate:
                return []
            base, segs = parent(base), segs[1:]
        return _rust_path(files, base, crate, segs, names, 0)
    # 2018 paths: a child module of this one, a 2015-style crate path, or a workspace crate by
    # its directory's name (the library from its own main.rs and tests too).
    for base in dict.fromkeys((here, crate)):
        if found := _rust_path(files, base, crate, segs, names, 1):
            return found
    for name in dict.fromkeys((segs[0], segs[0].replace("_", "-"))):
        for root in sorted(files.dirs_with_suffix(name))[:_MAX_PROBES]:
            other = cat(root, "src")
            if cat(other, "lib.rs") in files:
                return _rust_path(files, other, other, segs[1:], names, 0)
    return []


# -- java -----------------------------------------------------------------------------------


def _java_class(files: WorkspaceFiles, parts: list[str], src: str) -> list[str]:
    """``com.acme.Db`` (or ``com.acme.Db.Inner``, ``com.acme.Db.member``) -> ``Db.java``."""
    for k in range(len(parts), 1, -1):
        by_path = files.with_suffix("/".join(parts[:k]) + ".java")
        package = ".".join(parts[: k - 1])
        by_package = [
            p for p in files.with_suffix(parts[k - 1] + ".java") if files.package_of(p) == package
        ]
        if by_path or by_package:
            return nearest(by_path, src) + nearest(by_package, src)
    return []


def _java_package(files: WorkspaceFiles, parts: list[str]) -> list[str]:
    package = ".".join(parts)
    found = {p for p in files.package_files(package) if p.endswith(".java")}
    for d in files.dirs_with_suffix("/".join(parts)):
        for n in files.names_in(d):
            path = cat(d, n)
            if n.endswith(".java") and files.package_of(path) in ("", package):
                found.add(path)
    return sorted(found)


def resolve_java(ref: ImportRef, src: str, files: WorkspaceFiles) -> list[str]:
    name = ref.module.strip().removeprefix("static ").strip()
    parts = [p for p in name.split(".") if p]
    if not parts:
        return []
    if parts[-1] == "*":
        # ``a.b.*`` is every class of package a.b, or every member of class a.b (static).
        return _java_package(files, parts[:-1]) or _java_class(files, parts[:-1], src)
    return _java_class(files, parts, src)


# -- c# -------------------------------------------------------------------------------------

_EXTERNAL_CS = ("System", "Microsoft", "Windows")


def _cs_dirs(files: WorkspaceFiles, parts: list[str]) -> list[str]:
    """Directories laid out like namespace ``parts``: ``.../Acme/Store``, a project directory
    ``Acme.Store``, or ``Store`` somewhere below a directory named like ``Acme``."""
    dirs = set(files.dirs_with_suffix("/".join(parts)))
    dirs |= files.dirs_with_suffix(".".join(parts))
    if len(parts) >= 2:
        first = parts[0]
        for d in files.dirs_with_suffix(parts[-1]):
            if any(s == first or s.startswith(first + ".") for s in d.split("/")[:-1]):
                dirs.add(d)
    return sorted(dirs)[:_MAX_PROBES]


def _cs_files(files: WorkspaceFiles, dirs: list[str], name: str = "") -> list[str]:
    """``.cs`` files (named ``name`` if given) of ``dirs`` that declare no known namespace."""
    return [
        path
        for d in dirs
        for n in sorted(files.names_in(d))
        if n.endswith(".cs") and (not name or n == name) and not files.package_of(path := cat(d, n))
    ]


def resolve_csharp(ref: ImportRef, src: str, files: WorkspaceFiles) -> list[str]:
    name = ref.module.strip().removeprefix("global ").removeprefix("static ")
    name = name.rpartition("=")[2].strip().removeprefix("global::")
    parts = [p for p in name.split(".") if p]
    if not parts:
        return []
    declared = [p for p in files.package_files(name) if p.endswith(".cs")]
    if declared:
        return nearest(declared, src)
    if len(parts) >= 2:
        # An alias or ``using static`` of a type: its file in the enclosing namespace.
        namespace = ".".join(parts[:-1])
        typed = [
            p for p in files.with_suffix(parts[-1] + ".cs") if files.package_of(p) == namespace
        ]
        if typed:
            return nearest(typed, src)
    if parts[0] in _EXTERNAL_CS:
        return []
    found = _cs_files(files, _cs_dirs(files, parts))
    if not found and len(parts) >= 2:
        found = _cs_files(files, _cs_dirs(files, parts[:-1]), parts[-1] + ".cs")
    return found


# -- c / c++ --------------------------------------------------------------------------------

_INCLUDE_DIRS = ("include", "src")


def resolve_c(ref: ImportRef, src: str, files: WorkspaceFiles) -> list[str]:
    system = ref.module.strip().startswith("<")
    inc = ref.module.strip().strip('"<>').strip()
    if not inc or inc.startswith("/"):
        return []
    here = join(parent(src), inc)
    if here is None:
        return []  # climbs out of the workspace
    bases = (join(base, inc) for base in ("", *_INCLUDE_DIRS))
    for path in (*bases,) if system else (here, *bases):
        if path is not None and path in files:
            return [path]
    if system:
        return []  # `<string.h>` is the system's, whatever file of that name the tree holds
    # Anywhere in the workspace (``-I`` directories we cannot know): a unique suffix match, or
    # the one nearest the including file when that is unique.
    tail = normalize("/".join(p for p in inc.split("/") if p not in (".", "..")))
    if not tail:
        return []
    hits = nearest(files.with_suffix(tail), src)
    if len(hits) == 1:
        return hits
    if len(hits) > 1 and shared_depth(hits[0], src) > shared_depth(hits[1], src):
        return hits[:1]
    return []
