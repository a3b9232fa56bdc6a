"""Import resolution for the languages that import by file path or module path: Python,
JavaScript/TypeScript, Ruby, Lua and PHP.

Each resolver mirrors what the language's own loader would do with the workspace as its only
search path, closely enough to find the file a reader would open, without the parts that need a
real interpreter (``sys.path`` at run time, ``node_modules``, gem paths): those imports are
external and resolve to nothing. Every candidate is one lookup in :class:`WorkspaceFiles`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starcoder_ls.context.imports_workspace import (
    WorkspaceFiles,
    ancestors,
    cat,
    join,
    nearest,
    parent,
    parse_jsonc,
)
from starcoder_ls.context.symbols import ImportRef

_PY_TAILS = (".py", "/__init__.py", ".pyi", "/__init__.pyi")
_MAX_PROBES = 16
"""Directories probed for a workspace npm package of a given name."""

# -- python ---------------------------------------------------------------------------------


def _py_module(files: WorkspaceFiles, base: str) -> str | None:
    """The file of module ``base`` (a path without extension): ``base.py`` or its package."""
    for cand in (base + t for t in _PY_TAILS) if base else ("__init__.py", "__init__.pyi"):
        if cand in files:
            return cand
    return None


def _py_roots(files: WorkspaceFiles, rels: list[str], src: str) -> list[str]:
    """Source roots under which one of the module paths ``rels`` (``a/b``) exists as a module or
    package: the workspace root, ``src/``, then directories that are not packages themselves
    (``lib/`` for ``lib/pkg/__init__.py``), nearest to ``src`` first. Found through the suffix
    index, so the cost follows the number of real candidates, not of files."""
    found: set[str] = set()
    for rel in rels:
        for tail in _PY_TAILS:
            t = rel + tail
            found.update(path[: len(path) - len(t)].rstrip("/") for path in files.with_suffix(t))
    roots = [r for r in ("", "src") if r in found]
    found.difference_update(roots)
    return roots + nearest([r for r in found if "__init__.py" not in files.names_in(r)], src)


def resolve_python(ref: ImportRef, src: str, files: WorkspaceFiles) -> list[str]:
    parts = [p for p in ref.module.split(".") if p]
    names = [n for n in ref.names if n and n != "*"]
    if ref.level > 0:
        base = parent(src)
        for _ in range(ref.level - 1):
            if not base:
                return []
            base = parent(base)
        roots = [base]
    elif parts:
        rel = "/".join(parts)
        roots = _py_roots(files, [rel, *(f"{rel}/{n}" for n in names)], src)
    else:
        return []
    for root in roots:
        target = cat(root, "/".join(parts)) if parts else root
        module = _py_module(files, target)
        if not names:
            if module is not None:
                return [module]
            continue
        # ``from m import x``: x is a submodule when such a file exists, else a name in m.
        out = [_py_module(files, cat(target, n)) or module for n in names]
        found = [p for p in out if p is not None]
        if found:
            return found
    return []


# -- javascript / typescript ----------------------------------------------------------------

_TS_ORDER = (".ts", ".tsx", ".d.ts", ".mts", ".cts", ".js", ".jsx", ".mjs", ".cjs")
_JS_ORDER = (".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".d.ts", ".mts", ".cts")
_TS_FOR_JS = (
    (".js", (".ts", ".tsx", ".d.ts")),
    (".jsx", (".tsx",)),
    (".mjs", (".mts", ".d.mts")),
    (".cjs", (".cts", ".d.cts")),
)
"""TypeScript lets ``import "./a.js"`` name the source ``a.ts`` that compiles to it."""


def _js_file(files: WorkspaceFiles, target: str, order: tuple[str, ...]) -> str | None:
    """Node/TypeScript lookup of ``target``: the file itself, its TS source, the file with an
    extension added, then the directory's ``index``."""
    if target:
        if target in files:
            return target
        for ext, alts in _TS_FOR_JS:
            if target.endswith(ext):
                stem = target[: -len(ext)]
                for alt in alts:
                    if stem + alt in files:
                        return stem + alt
                break
        for ext in order:
            if target + ext in files:
                return target + ext
    for ext in order:
        cand = cat(target, "index" + ext)
        if cand in files:
            return cand
    return None


@dataclass(frozen=True)
class TsConfig:
    """What module resolution needs from a tsconfig/jsconfig (``extends`` already applied)."""

    base_url: str | None
    """Workspace directory of ``compilerOptions.baseUrl``."""
    paths: tuple[tuple[str, tuple[str, ...]], ...]
    paths_dir: str
    """Directory the ``paths`` targets are relative to."""


def _load_tsconfig(files: WorkspaceFiles, path: str, depth: int = 0) -> TsConfig | None:
    data = files.parsed(path, "jsonc", parse_jsonc)
    if not isinstance(data, dict):
        return None
    here = parent(path)
    inherited: TsConfig | None = None
    extends = data.get("extends")
    if isinstance(extends, str) and extends.startswith(".") and depth < 4:
        target = join(here, extends)
        if target is not None:
            if not target.endswith(".json"):
                target += ".json"
            inherited = _load_tsconfig(files, target, depth + 1)
    opts = data.get("compilerOptions")
    opts = opts if isinstance(opts, dict) else {}
    base_url = inherited.base_url if inherited else None
    if isinstance(opts.get("baseUrl"), str):
        base_url = join(here, opts["baseUrl"])
    raw = opts.get("paths")
    if isinstance(raw, dict):
        paths = tuple(
            (key, tuple(t for t in value if isinstance(t, str)))
            for key, value in raw.items()
            if isinstance(value, list)
        )
        origin = here
    else:
        paths = inherited.paths if inherited else ()
        origin = inherited.paths_dir if inherited else here
    return TsConfig(base_url, paths, base_url if base_url is not None else origin)


def _tsconfig_for(files: WorkspaceFiles, directory: str) -> TsConfig | None:
    def find() -> TsConfig | None:
        for d in ancestors(directory):
            for name in ("tsconfig.json", "jsconfig.json"):
                path = cat(d, name)
                if path in files or files.read(path) is not None:
                    return _load_tsconfig(files, path)
        return None

    return files.derived(("tsconfig", directory), find)


def _alias_targets(cfg: TsConfig, spec: str) -> list[str]:
    """Paths a bare specifier maps to by ``paths`` (exact key, then longest prefix) and
    ``baseUrl``."""
    matches: list[tuple[int, tuple[str, ...], str]] = []
    for pattern, targets in cfg.paths:
        pre, star, post = pattern.partition("*")
        if not star:
            if pattern == spec:
                matches.append((1 << 30, targets, ""))
        elif spec.startswith(pre) and spec.endswith(post) and len(spec) >= len(pre) + len(post):
            matches.append((len(pre), targets, spec[len(pre) : len(spec) - len(post)]))
    matches.sort(key=lambda m: -m[0])
    out = [
        p
        for _, targets, stem in matches
        for t in targets
        if (p := join(cfg.paths_dir, t.replace("*", stem, 1))) is not None
    ]
    if cfg.base_url is not None and (p := join(cfg.base_url, spec)) is not None:
        out.append(p)
    return out


def _package_json(files: WorkspaceFiles, path: str) -> dict[str, Any]:
    data = files.parsed(path, "jsonc", parse_jsonc)
    return data if isinstance(data, dict) else {}


def _declared_packages(files: WorkspaceFiles) -> dict[str, list[str]]:
    """npm package name -> directories, from the ``package.json`` files in the set."""
    out: dict[str, list[str]] = {}
    for path in sorted(files.with_suffix("package.json")):
        if "node_modules/" in path:
            continue
        name = _package_json(files, path).get("name")
        if isinstance(name, str):
            out.setdefault(name, []).append(parent(path))
    return out


def _package_dirs(files: WorkspaceFiles, name: str) -> list[str]:
    """Workspace directories whose ``package.json`` is named ``name`` (a monorepo package): the
    indexed ones, then directories named like the package probed through ``read``."""
    dirs = list(files.derived("npm-packages", lambda: _declared_packages(files)).get(name, ()))
    last = name.rpartition("/")[2]
    for d in sorted(files.dirs_with_suffix(last))[:_MAX_PROBES]:
        if d not in dirs and _package_json(files, cat(d, "package.json")).get("name") == name:
            dirs.append(d)
    return dirs


def _package_entry(files: WorkspaceFiles, d: str, sub: str, order: tuple[str, ...]) -> str | None:
    if sub:
        for base in (cat(d, sub), cat(d, "src/" + sub)):
            if (found := _js_file(files, base, order)) is not None:
                return found
        return None
    meta = _package_json(files, cat(d, "package.json"))
    entries: list[Any] = [meta.get(k) for k in ("source", "module", "main", "types")]
    exports = meta.get("exports")
    if isinstance(exports, dict):
        exports = exports.get(".")
    if isinstance(exports, dict):
        entries.extend(exports.get(k) for k in ("source", "import", "default", "require"))
    else:
        entries.append(exports)
    for entry in entries:
        if (
            isinstance(entry, str)
            and (p := join(d, entry)) is not None
            and (found := _js_file(files, p, order)) is not None
        ):
            return found
    for base in (cat(d, "src"), d):
        for ext in order:
            if (cand := cat(base, "index" + ext)) in files:
                return cand
    return None


def resolve_js(ref: ImportRef, src: str, files: WorkspaceFiles, typescript: bool) -> list[str]:
    spec = ref.module.strip().partition("?")[0]
    if not spec or spec.startswith("/") or ":" in spec:
        return []
    order = _TS_ORDER if typescript else _JS_ORDER
    here = parent(src)
    if spec in (".", "..") or spec.startswith(("./", "../")):
        target = join(here, spec)
        found = _js_file(files, target, order) if target is not None else None
        return [found] if found else []
    cfg = _tsconfig_for(files, here)
    if cfg is not None:
        for target in _alias_targets(cfg, spec):
            if (found := _js_file(files, target, order)) is not None:
                return [found]
    if spec.startswith("@"):
        scope, _, rest = spec.partition("/")
        name, _, sub = rest.partition("/")
        name = f"{scope}/{name}"
    else:
        name, _, sub = spec.partition("/")
    for d in _package_dirs(files, name):
        if (found := _package_entry(files, d, sub, order)) is not None:
            return [found]
    return []


# -- ruby, lua --------------------------------------------------------------------------------


def resolve_ruby(ref: ImportRef, src: str, files: WorkspaceFiles) -> list[str]:
    spec = ref.module.strip()
    if not spec or spec.startswith("/"):
        return []
    name = spec if spec.endswith(".rb") else spec + ".rb"
    here = parent(src)
    if ref.kind == "require_relative":
        bases = [here]
    elif spec.startswith("."):
        bases = [""]
    else:
        bases = [cat(a, "lib") for a in ancestors(here)] + [""]
    for base in bases:
        path = join(base, name)
        if path is not None and path in files:
            return [path]
    return []


def resolve_lua(ref: ImportRef, src: str, files: WorkspaceFiles) -> list[str]:
    mod = ref.module.strip()
    if not mod or mod.startswith("/"):
        return []
    if mod.endswith(".lua"):
        mod = mod[:-4]
    rel = mod if "/" in mod else mod.replace(".", "/")
    roots = [a for a in ancestors(parent(src)) if a.rpartition("/")[2] == "lua"][:1]
    roots += [r for r in ("", "lua", "src") if r not in roots]
    for root in roots:
        for cand in (rel + ".lua", rel + "/init.lua"):
            path = join(root, cand)
            if path is not None and path in files:
                return [path]
    return []


# -- php ------------------------------------------------------------------------------------


def _parse_psr4(files: WorkspaceFiles, path: str) -> list[tuple[str, str]]:
    data = files.parsed(path, "jsonc", parse_jsonc)
    out: list[tuple[str, str]] = []
    if not isinstance(data, dict):
        return out
    for section in ("autoload", "autoload-dev"):
        autoload = data.get(section)
        psr4 = autoload.get("psr-4") if isinstance(autoload, dict) else None
        if not isinstance(psr4, dict):
            continue
        for prefix, dirs in psr4.items():
            for d in [dirs] if isinstance(dirs, str) else dirs if isinstance(dirs, list) else []:
                if isinstance(d, str) and (base := join(parent(path), d)) is not None:
                    out.append((prefix.lstrip("\\"), base))
    return out


def _psr4_for(files: WorkspaceFiles, directory: str) -> list[tuple[str, str]]:
    """PSR-4 (prefix, directory) pairs of the indexed ``composer.json`` files and of those above
    ``directory``, longest prefix first."""

    def compute() -> list[tuple[str, str]]:
        paths = set(files.with_suffix("composer.json"))
        for a in ancestors(directory):
            if files.read(cat(a, "composer.json")) is not None:
                paths.add(cat(a, "composer.json"))
        pairs = {pair for p in sorted(paths) for pair in _parse_psr4(files, p)}
        return sorted(pairs, key=lambda pair: (-len(pair[0]), pair))

    return files.derived(("psr4", directory), compute)


def _php_class(files: WorkspaceFiles, parts: list[str], src: str) -> list[str]:
    fq = "\\".join(parts)
    for prefix, base in _psr4_for(files, parent(src)):
        if fq.startswith(prefix):
            path = join(base, fq[len(prefix) :].replace("\\", "/") + ".php")
            if path is not None and path in files:
                return [path]
    if len(parts) >= 2:
        namespace = "\\".join(parts[:-1])
        declared = [
            p for p in files.with_suffix(parts[-1] + ".php") if files.package_of(p) == namespace
        ]
        if declared:
            return nearest(declared, src)
    for k in range(len(parts), 1 if len(parts) > 1 else 0, -1):
        suffix = "/".join(parts[-k:]) + ".php"
        hits = files.with_suffix(suffix) or files.with_suffix_ci(suffix)
        if hits:
            return nearest(hits, src)
    return []


def resolve_php(ref: ImportRef, src: str, files: WorkspaceFiles) -> list[str]:
    name = ref.module.strip()
    for keyword in ("function ", "const "):
        name = name.removeprefix(keyword)
    parts = [p for p in name.split("\\") if p]
    if not parts:
        return []
    targets = [parts + [p for p in n.split("\\") if p] for n in ref.names if n and n != "*"]
    # Group use (``use App\\{A, B}``): one class per name; else the name itself.
    out = [p for target in targets for p in _php_class(files, target, src)[:1]]
    return out or _php_class(files, parts, src)


# -- bash -----------------------------------------------------------------------------------


def resolve_bash(ref: ImportRef, src: str, files: WorkspaceFiles) -> list[str]:
    """A sourced file: relative to the sourcing script's directory, else to the workspace root
    (scripts are often run from there)."""
    spec = ref.module.strip()
    if not spec or spec.startswith(("/", "~")):
        return []
    for base in (parent(src), ""):
        path = join(base, spec)
        if path is not None and path in files:
            return [path]
    return []
