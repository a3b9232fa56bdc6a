"""The set of indexed files, shaped for import resolution.

Resolution runs on every completion request, once per import of the current file, so it must
never walk the file list: every question it asks ("is there a file ``a/b.py``?", "which
directories end in ``com/acme``?", "which files declare namespace ``Acme.Store``?", "what does
``go.mod`` up there say?") is one dict or set lookup here. The indexes are kept up to date file by
file (``add``/``remove`` cost a few dict operations per path segment), never rebuilt.

Config files (``go.mod``, ``tsconfig.json``, ``package.json``, ...) are read only through the
``read`` callable, at most once each until ``add``/``remove`` touches that path again; what is
derived from them (nearest tsconfig of a directory, package names) is cached the same way. This
module never touches the filesystem itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

CONFIG_NAMES = frozenset(
    {"go.mod", "tsconfig.json", "jsconfig.json", "package.json", "composer.json"}
)
"""Files whose contents steer resolution: touching one drops everything derived from configs."""
_TSCONFIG = re.compile(r"[tj]sconfig\..*json")
"""Also ``tsconfig.base.json`` and the like, which ``extends`` may name."""

_CASE_INSENSITIVE = (".php",)
"""Suffixes whose files are also indexed lower-cased (PHP class lookups may differ in case)."""

_EMPTY: frozenset[str] = frozenset()


def normalize(path: str) -> str | None:
    """A workspace-relative posix path with ``.`` and ``..`` folded away; ``None`` for an absolute
    path or one that climbs above the workspace root. The root itself is ``""``."""
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return None
    if (
        "/." not in path
        and not path.startswith(".")
        and "//" not in path
        and not path.endswith("/")
    ):
        return path
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                return None
            out.pop()
        else:
            out.append(part)
    return "/".join(out)


def join(directory: str, rel: str) -> str | None:
    """``directory/rel`` normalised (``None`` when it leaves the workspace or ``rel`` is absolute)."""
    if rel.startswith("/"):
        return None
    return normalize(f"{directory}/{rel}" if directory else rel)


def cat(directory: str, name: str) -> str:
    """``directory/name`` for already clean parts (``name`` alone at the root)."""
    return f"{directory}/{name}" if directory else name


def parent(path: str) -> str:
    return path.rpartition("/")[0]


def ancestors(directory: str) -> Iterator[str]:
    """``directory`` and each directory above it, the root ``""`` last."""
    while True:
        yield directory
        if not directory:
            return
        directory = parent(directory)


def shared_depth(a: str, b: str) -> int:
    """Number of leading path segments ``a`` and ``b`` have in common."""
    return _shared(a.split("/"), b)


def _shared(parts: list[str], b: str) -> int:
    n = 0
    for x, y in zip(parts, b.split("/"), strict=False):
        if x != y:
            break
        n += 1
    return n


def nearest(paths: Iterable[str], to: str) -> list[str]:
    """``paths`` sorted nearest to ``to`` first (most leading segments shared), then by path."""
    paths = list(paths)
    if len(paths) <= 1:
        return paths
    parts = to.split("/")
    top = parts[0] + "/"  # most candidates differ right away: skip their split

    def key(p: str) -> tuple[int, str]:
        return (-_shared(parts, p) if p.startswith(top) else 0, p)

    return sorted(paths, key=key)


_JSON_STRING = r'"(?:\\.|[^"\\])*"'
_JSONC_COMMENT = re.compile(rf"({_JSON_STRING})|//[^\n]*|/\*.*?(?:\*/|$)", re.S)
_JSONC_TRAILING_COMMA = re.compile(rf"({_JSON_STRING})|,(?=\s*[\]}}])")


def _keep_string(m: re.Match[str]) -> str:
    return m.group(1) or ""


def parse_jsonc(text: str) -> Any:
    """JSON with ``//`` and ``/* */`` comments and trailing commas (tsconfig style); ``None`` when
    it still does not parse."""
    text = _JSONC_TRAILING_COMMA.sub(_keep_string, _JSONC_COMMENT.sub(_keep_string, text))
    try:
        return json.loads(text)
    except ValueError:
        return None


def _suffixes(path: str) -> Iterator[str]:
    """``a/b/c`` -> ``a/b/c``, ``b/c``, ``c``."""
    yield path
    i = path.find("/")
    while i >= 0:
        yield path[i + 1 :]
        i = path.find("/", i + 1)


def _put(index: dict[str, set[str]], key: str, value: str) -> None:
    bucket = index.get(key)
    if bucket is None:
        index[key] = {value}
    else:
        bucket.add(value)


def _drop(index: dict[str, set[str]], key: str, value: str) -> None:
    bucket = index.get(key)
    if bucket is not None:
        bucket.discard(value)
        if not bucket:
            del index[key]


class WorkspaceFiles:
    """The set of indexed files (workspace-relative posix paths) with fast lookups for resolution."""

    def __init__(
        self,
        paths: Iterable[str] = (),
        read: Callable[[str], str | None] | None = None,
        packages: Mapping[str, str] | None = None,
    ) -> None:
        self._read = read
        self._files: set[str] = set()
        self._names: dict[str, set[str]] = {}
        """Directory -> names of the files directly inside it."""
        self._dir_count: dict[str, int] = {}
        """Directory -> number of files anywhere below it (the root ``""`` included)."""
        self._suffix: dict[str, set[str]] = {}
        """Path suffix made of whole segments (``store/Db.java``, ``Db.java``) -> files."""
        self._isuffix: dict[str, set[str]] = {}
        """The same, lower-cased, for ``_CASE_INSENSITIVE`` files."""
        self._dir_suffix: dict[str, set[str]] = {}
        """Directory path suffix (``acme/store``, ``store``) -> directories."""
        self._package_of: dict[str, str] = {}
        self._package_files: dict[str, set[str]] = {}
        self._texts: dict[str, str | None] = {}
        self._parsed: dict[str, dict[str, Any]] = {}
        self._derived: dict[Any, Any] = {}
        known = packages or {}
        for path in paths:
            self.add(path, known.get(path, ""))
        for path, package in known.items():
            if path not in self._files:
                self.add(path, package)

    # -- maintenance -------------------------------------------------------------------------

    def add(self, path: str, package: str = "") -> None:
        """Index ``path`` (again), declaring ``package`` (``""``: none known). Re-adding a config
        file is how a change of its contents is announced."""
        norm = normalize(path)
        if not norm:
            return
        if norm not in self._files:
            self._files.add(norm)
            directory, _, name = norm.rpartition("/")
            _put(self._names, directory, name)
            for d in ancestors(directory):
                count = self._dir_count.get(d, 0)
                self._dir_count[d] = count + 1
                if count == 0 and d:
                    for s in _suffixes(d):
                        _put(self._dir_suffix, s, d)
            for s in _suffixes(norm):
                _put(self._suffix, s, norm)
            if name.endswith(_CASE_INSENSITIVE):
                for s in _suffixes(norm.lower()):
                    _put(self._isuffix, s, norm)
        self._set_package(norm, package)
        self._touched(norm)

    def remove(self, path: str) -> None:
        norm = normalize(path)
        if not norm or norm not in self._files:
            return
        self._files.discard(norm)
        directory, _, name = norm.rpartition("/")
        _drop(self._names, directory, name)
        for d in ancestors(directory):
            count = self._dir_count.get(d, 0) - 1
            if count > 0:
                self._dir_count[d] = count
                continue
            self._dir_count.pop(d, None)
            if d:
                for s in _suffixes(d):
                    _drop(self._dir_suffix, s, d)
        for s in _suffixes(norm):
            _drop(self._suffix, s, norm)
        if name.endswith(_CASE_INSENSITIVE):
            for s in _suffixes(norm.lower()):
                _drop(self._isuffix, s, norm)
        self._set_package(norm, "")
        self._touched(norm)

    def _set_package(self, path: str, package: str) -> None:
        old = self._package_of.pop(path, "")
        if old:
            _drop(self._package_files, old, path)
        if package:
            self._package_of[path] = package
            _put(self._package_files, package, path)

    def config_changed(self, path: str) -> None:
        """Forget what was read from ``path`` and all that was derived from configs: for config
        files that changed (or appeared) but are not themselves in the set."""
        norm = normalize(path)
        if norm:
            self._touched(norm, force=True)

    def _touched(self, path: str, force: bool = False) -> None:
        name = path.rpartition("/")[2]
        if force or name in CONFIG_NAMES or _TSCONFIG.fullmatch(name):
            self._texts.pop(path, None)
            self._parsed.pop(path, None)
            self._derived.clear()

    # -- lookups -----------------------------------------------------------------------------

    def __contains__(self, path: object) -> bool:
        return path in self._files

    def __len__(self) -> int:
        return len(self._files)

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def is_dir(self, directory: str) -> bool:
        """Some indexed file lies below ``directory`` (the root counts once anything is indexed)."""
        return directory in self._dir_count

    def names_in(self, directory: str) -> frozenset[str] | set[str]:
        """Names of the files directly in ``directory`` (do not modify)."""
        return self._names.get(directory, _EMPTY)

    def with_suffix(self, suffix: str) -> frozenset[str] | set[str]:
        """Files whose path is ``suffix`` or ends with ``/suffix`` (do not modify)."""
        return self._suffix.get(suffix, _EMPTY)

    def with_suffix_ci(self, suffix: str) -> frozenset[str] | set[str]:
        """``with_suffix`` ignoring case, for PHP files only (do not modify)."""
        return self._isuffix.get(suffix.lower(), _EMPTY)

    def dirs_with_suffix(self, suffix: str) -> frozenset[str] | set[str]:
        """Directories whose path is ``suffix`` or ends with ``/suffix`` (do not modify)."""
        return self._dir_suffix.get(suffix, _EMPTY)

    def package_of(self, path: str) -> str:
        return self._package_of.get(path, "")

    def package_files(self, package: str) -> frozenset[str] | set[str]:
        """Files that declare ``package`` (do not modify)."""
        return self._package_files.get(package, _EMPTY)

    # -- configs -----------------------------------------------------------------------------

    def read(self, path: str) -> str | None:
        """The text of config file ``path`` through the ``read`` callable, cached."""
        if path in self._texts:
            return self._texts[path]
        text: str | None = None
        if self._read is not None:
            try:
                text = self._read(path)
            except (OSError, UnicodeError, ValueError):
                text = None
        self._texts[path] = text
        return text

    def parsed(self, path: str, kind: str, parse: Callable[[str], T]) -> T | None:
        """``parse(read(path))``, cached per path and kind; ``None`` when there is no such file."""
        per_path = self._parsed.setdefault(path, {})
        if kind in per_path:
            value: T | None = per_path[kind]
            return value
        text = self.read(path)
        value = parse(text) if text is not None else None
        per_path[kind] = value
        return value

    def derived(self, key: Any, compute: Callable[[], T]) -> T:
        """``compute()`` cached under ``key`` until a config file is added or removed."""
        if key in self._derived:
            value: T = self._derived[key]
            return value
        value = compute()
        self._derived[key] = value
        return value
