"""The workspace index: every file's outline (definitions, imports), a symbol table, the import
resolver's view of the tree, and the similar-code windows, for one workspace folder.

It is built in the background and updated file by file; readers (completion requests) take a
short lock and see whatever has been indexed so far, so a completion never waits for indexing.
Between runs the outlines are kept in the cache directory and reused for files whose size, mtime
and content hash still match, so a restart re-reads files but does not re-parse them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import tempfile
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from starcoder_ls.context.imports import WorkspaceFiles, resolve_import
from starcoder_ls.context.similar import Match, WindowIndex
from starcoder_ls.context.symbols import FileOutline, ImportRef, Symbol
from starcoder_ls.context.tags import outline
from starcoder_ls.context.workspace import FileFilter, read_source, scan, stat_key
from starcoder_ls.languages.registry import LanguageInfo, for_header, language_for
from starcoder_ls.settings import WorkspaceSettings

log = logging.getLogger(__name__)

_LINES_CACHED = 256
PARALLEL_MIN_FILES = 300
"""A first build with at least this many files to parse uses worker processes."""
_IN_FLIGHT = 4
_BATCH = 16
_BATCH_CHARS = 256 * 1024
FORMAT = 6
"""Version of the persisted outlines, bumped whenever parsing changes what an outline holds
(2: `#include <...>`, no `_` symbols, banner comments are not docs; 3: a declaration's
signature keeps its `;`; 4: JS/TS module-level literal constants): an old index is ignored
and rebuilt."""
_CONFIG_FILES = ("go.mod", "tsconfig.json", "jsconfig.json", "package.json", "composer.json")


@dataclass
class FileEntry:
    path: str
    language: str
    mtime_ns: int
    size: int
    digest: str
    outline: FileOutline


@dataclass
class BuildReport:
    files: int = 0
    reused: int = 0
    """Outlines taken from the persisted index (file unchanged)."""
    skipped: Counter[str] = field(default_factory=Counter)
    capped: bool = False
    seconds: float = 0.0
    symbols: int = 0

    def summary(self) -> str:
        text = f"indexed {self.files} files ({self.symbols} definitions) in {self.seconds:.1f} s"
        if self.capped:
            text += f"; capped at {self.files} files (workspace.maxFiles), the rest is not indexed"
        return text


@dataclass
class _Job:
    """A file read and hashed, waiting for its outline (``parsed`` when it was persisted)."""

    path: str
    info: LanguageInfo
    text: str
    digest: str
    mtime_ns: int
    size: int
    parsed: FileOutline | None
    current: FileEntry | None


def _settle(new: FileOutline, job: _Job) -> FileOutline:
    if new.errors and job.current is not None:
        return _keep_through_errors(new, job.current.outline)
    return new


def _outline_batch(items: list[tuple[str, str, str]]) -> list[FileOutline]:
    """Outlines of (text, language, path) items, in a worker process."""
    return [outline(text, language, path) for text, language, path in items]


def _lower_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)  # below the editor and the model: indexing can wait


def _outline_pool() -> ProcessPoolExecutor | None:
    """Worker processes for the first build of a large workspace: tree-sitter holds the GIL
    while it parses, so threads would not help. Spawned (never forked from a threaded
    server), at low priority; None where processes cannot be started."""
    workers = min(2, os.cpu_count() or 1)
    if workers < 2:
        return None
    try:
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_lower_priority,
        )
    except (OSError, ValueError, ImportError):
        return None


def _keep_through_errors(new: FileOutline, old: FileOutline) -> FileOutline:
    """A file mid-edit often does not parse, and tree-sitter's recovery can swallow its imports
    and definitions into an error node. Keep what the last outline knew alongside what this one
    found, until the file parses cleanly again."""
    import dataclasses

    imports = {(i.module, i.names, i.level, i.kind): i for i in old.imports}
    imports.update({(i.module, i.names, i.level, i.kind): i for i in new.imports})
    names = {(s.name, s.parent) for s in new.symbols}
    symbols = new.symbols + tuple(s for s in old.symbols if (s.name, s.parent) not in names)
    return dataclasses.replace(
        new,
        imports=tuple(sorted(imports.values(), key=lambda i: i.line)),
        symbols=symbols,
        package=new.package or old.package,
    )


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "starcoder-ls" / "index"


@dataclass(frozen=True)
class _Change:
    """One file indexed again or removed: generations ``start`` to ``end``."""

    start: int
    end: int
    path: str
    names: frozenset[str]
    """The identifiers whose usage (windows that hold them) the change altered."""
    moved: bool
    """Added, removed, or its package changed (imports may resolve differently)."""


_CHANGES_KEPT = 32


class WorkspaceIndex:
    """One workspace folder's index. All public methods are thread-safe."""

    def __init__(
        self,
        root: Path,
        settings: WorkspaceSettings | None = None,
        *,
        cache_dir: Path | None = None,
    ) -> None:
        self.root = root.resolve()
        self.settings = settings or WorkspaceSettings()
        self.cache_dir = cache_dir
        self.filter = FileFilter(self.root, self.settings)
        self._lock = threading.RLock()
        self._files: dict[str, FileEntry] = {}
        self._symbols: dict[str, list[tuple[str, int]]] = {}
        self._resolver = WorkspaceFiles(read=self._read_config)
        self._windows = WindowIndex()
        self._config_cache: dict[str, str | None] = {}
        self._lines: OrderedDict[str, tuple[tuple[int, int], list[str]]] = OrderedDict()
        self._changes: Counter[str] = Counter()
        self._generation = 0
        self._reexports: dict[tuple[str, str, str, int], tuple[str, Symbol] | None] = {}
        self._log: deque[_Change] = deque(maxlen=_CHANGES_KEPT)
        """The last changes, for :meth:`changes_since`."""
        """Answers of :meth:`reexported`, until a file changes."""
        self.report = BuildReport()
        self.progress_every_s = 0.2
        """At most this often the build reports progress."""
        self.ready = threading.Event()
        """Set when the first full build has finished."""

    # -- reading ------------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return len(self._files)

    def __contains__(self, path: object) -> bool:
        with self._lock:
            return path in self._files

    def generation(self, excluding: str | None = None) -> int:
        """Changes so far to files other than ``excluding``: retrieved context is reused while
        this stays the same (the prompt's start then stays identical between keystrokes)."""
        with self._lock:
            return self._generation - (self._changes[excluding] if excluding else 0)

    def entry(self, path: str) -> FileEntry | None:
        with self._lock:
            return self._files.get(path)

    def paths(self) -> list[str]:
        with self._lock:
            return sorted(self._files)

    def relative(self, path: str | Path) -> str | None:
        """``path`` relative to the root, or None when it is outside (symlinks resolved)."""
        try:
            rel = Path(path).resolve().relative_to(self.root).as_posix()
        except (ValueError, OSError, RuntimeError):
            return None
        return rel if rel != "." else None

    def defined_elsewhere(self, name: str, path: str | None) -> bool:
        """Whether a file other than ``path`` defines ``name`` (cheap: no list is built)."""
        with self._lock:
            return any(p != path for p, _ in self._symbols.get(name, ()))

    def files_defining(self, names: Iterable[str]) -> set[str]:
        """The files that define any of ``names`` (at the top or as members)."""
        with self._lock:
            return {path for name in names for path, _ in self._symbols.get(name, ())}

    def definitions(self, name: str, limit: int = 64) -> list[tuple[str, Symbol]]:
        """Indexed definitions called ``name``, as (path, symbol), at most ``limit``."""
        with self._lock:
            found = []
            for path, i in self._symbols.get(name, ())[:limit]:
                entry = self._files.get(path)
                if entry is not None and i < len(entry.outline.symbols):
                    found.append((path, entry.outline.symbols[i]))
            return found

    def resolve(self, ref: ImportRef, from_path: str, language: str) -> tuple[str, ...]:
        with self._lock:
            return tuple(
                p
                for p in resolve_import(ref, from_path, language, self._resolver)
                if p != from_path
            )

    def reexported(
        self, path: str, name: str, language: str, depth: int = 3
    ) -> tuple[str, Symbol] | None:
        """Where ``name``, imported from ``path``, is defined: in ``path`` itself, or through the
        imports ``path`` passes on (a Python ``__init__.py``'s ``from .app import Flask``, a
        TypeScript barrel's ``export * from "./schemas"``, a Rust ``pub use``), up to
        ``depth`` files away."""
        key = (path, name, language, depth)
        with self._lock:
            if key in self._reexports:
                return self._reexports[key]
        found = self._reexported(path, name, language, depth)
        with self._lock:
            if len(self._reexports) > 50_000:
                self._reexports.clear()
            self._reexports[key] = found
        return found

    def _reexported(
        self, path: str, name: str, language: str, depth: int
    ) -> tuple[str, Symbol] | None:
        entry = self.entry(path)
        if entry is None:
            return None
        for sym in entry.outline.top_level():
            if sym.name == name:
                return path, sym
        if depth <= 0:
            return None
        for ref in entry.outline.imports:
            if name in ref.bound:  # `from .app import Flask`, `pub use a::Flask`
                original = ref.names[ref.bound.index(name)] if ref.names else name
                if original == "*":
                    original = name
            elif "*" in ref.names:  # `export * from "./schemas"`, `from .core import *`
                original = name
            else:
                continue
            for target in self.resolve(ref, path, language)[:2]:
                found = self.reexported(target, original, language, depth - 1)
                if found is not None:
                    return found
        return None

    def similar(self, tokens: set[str], *, k: int, exclude: str | None) -> list[Match]:
        with self._lock:
            return self._windows.query(tokens, k=k, exclude=exclude)

    def usage(self, name: str) -> int:
        """In how many windows of the workspace's code ``name`` occurs (see
        :meth:`WindowIndex.frequency`)."""
        with self._lock:
            return self._windows.frequency(name)

    def usages(self, names: list[str]) -> list[int]:
        """:meth:`usage` of each of ``names``, under one lock."""
        with self._lock:
            return [self._windows.frequency(name) for name in names]

    def names_used(self, path: str) -> tuple[str, ...]:
        """The identifiers ``path`` uses anywhere (as indexed: an open document's edits arrive
        after a quiet moment)."""
        with self._lock:
            return self._windows.names(path)

    def read_lines(self, path: str) -> list[str] | None:
        """A file's current lines from disk (the index keeps no text), for indexed files only;
        the last few files read are kept while their size and mtime stay the same."""
        key = stat_key(self.root, path)
        if key is None or path not in self:
            return None
        with self._lock:
            hit = self._lines.get(path)
            if hit is not None and hit[0] == key:
                self._lines.move_to_end(path)
                return hit[1]
        text, _ = read_source(self.root, path, self.settings.max_file_kb * 1024, vetted=True)
        if text is None:
            return None
        lines = text.splitlines(keepends=True)
        with self._lock:
            self._lines[path] = (key, lines)
            while len(self._lines) > _LINES_CACHED:
                self._lines.popitem(last=False)
        return lines

    # -- building -----------------------------------------------------------------------------

    def build(
        self,
        progress: Callable[[int, int, str], None] | None = None,
        stop: threading.Event | None = None,
    ) -> BuildReport:
        """Scan and index the folder; ``progress(done, total, path)`` every few files."""
        t0 = time.perf_counter()
        result = scan(self.root, self.settings, stop)
        persisted = self._load() if self.settings.persist else {}
        report = BuildReport(skipped=result.skipped, capped=result.capped)
        total = len(result.files)
        wanted = set(result.files)
        with self._lock:
            for gone in [p for p in self._files if p not in wanted]:
                self._remove_locked(gone)
        import numpy  # noqa: F401  (here, off the request path: the first similar-code query needs it)

        fresh = sum(1 for rel in result.files if rel not in persisted)
        pool = _outline_pool() if fresh >= PARALLEL_MIN_FILES else None
        pending: deque[tuple[list[_Job], Future[list[FileOutline]]]] = deque()
        batch: list[_Job] = []

        def count(status: str) -> None:
            if status == "reused":
                report.reused += 1
            elif status != "indexed":
                report.skipped[status] += 1

        def finish(jobs: list[_Job], future: Future[list[FileOutline]]) -> None:
            try:
                parsed = [_settle(o, job) for o, job in zip(future.result(), jobs, strict=True)]
            except Exception:  # a worker died (out of memory, killed): parse here instead
                log.debug("outline worker failed", exc_info=True)
                parsed = [self._parse(job) for job in jobs]
            for job, one in zip(jobs, parsed, strict=True):
                count(self._register(job, one))

        def send() -> None:
            nonlocal pool
            jobs = batch[:]
            batch.clear()
            items = [(job.text, job.info.name, job.path) for job in jobs]
            try:
                assert pool is not None
                pending.append((jobs, pool.submit(_outline_batch, items)))
            except Exception:  # the pool is broken: carry on in this thread
                pool = None
                for job in jobs:
                    count(self._register(job, self._parse(job)))

        last = 0.0
        try:
            for n, rel in enumerate(result.files):
                if stop is not None and stop.is_set():
                    break
                job = self._prepare(rel, None, persisted.get(rel))
                if isinstance(job, str):
                    count(job)
                elif job.parsed is not None or pool is None:
                    count(self._register(job, job.parsed or self._parse(job)))
                else:
                    # Files go to the workers in batches: one round trip per tiny file would
                    # cost more than parsing it.
                    batch.append(job)
                    if len(batch) >= _BATCH or sum(len(j.text) for j in batch) > _BATCH_CHARS:
                        send()
                while pending and (len(pending) > _IN_FLIGHT or pending[0][1].done()):
                    finish(*pending.popleft())
                now = time.perf_counter()
                if progress is not None and (now - last > self.progress_every_s or n + 1 == total):
                    last = now
                    progress(n + 1, total, rel)
                if n % 16 == 15:
                    time.sleep(0)  # let completion threads in between files
            if batch and pool is not None:
                send()
            while pending:
                finish(*pending.popleft())
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            report.files = len(self._files)
            report.symbols = sum(len(e.outline.symbols) for e in self._files.values())
        report.seconds = time.perf_counter() - t0
        self.report = report
        if self.settings.persist:
            self.save()
        self.ready.set()
        log.info("%s: %s", self.root, report.summary())
        return report

    def update(self, path: str, text: str | None = None) -> bool:
        """(Re-)index one file, from ``text`` (an open document) or from disk.

        Returns False when the file is not indexable (filtered, gone, binary): it is then
        removed from the index.
        """
        name = path.rsplit("/", 1)[-1]
        if name in _CONFIG_FILES or (name.startswith("tsconfig") and name.endswith(".json")):
            with self._lock:  # go.mod, tsconfig.json, ...: import resolution reads them again
                self._config_cache.pop(path, None)
                self._resolver.config_changed(path)
        if self.filter.reason(path) is not None:
            self.remove(path)
            return False
        return self._index_file(path, text, None) in ("indexed", "reused")

    def remove(self, path: str) -> None:
        with self._lock:
            self._remove_locked(path)

    def _index_file(self, rel: str, text: str | None, old: dict | None) -> str:
        """Index one file: ``indexed``, ``reused`` (the persisted outline was still valid) or
        why it was not (``binary``, ``too_large``, ``generated``, ``missing``, ...)."""
        job = self._prepare(rel, text, old)
        if isinstance(job, str):
            return job
        return self._register(job, job.parsed or self._parse(job))

    def _prepare(self, rel: str, text: str | None, old: dict | None) -> _Job | str:
        """Read and hash a file; a status when there is nothing to parse."""
        info = language_for(None, rel)
        if info is None:
            return "unknown_language"
        key = stat_key(self.root, rel)
        if text is None:
            text, reason = read_source(self.root, rel, self.settings.max_file_kb * 1024)
            if text is None or key is None:
                self.remove(rel)
                return reason or "missing"
        elif len(text) > self.settings.max_file_kb * 1024:
            self.remove(rel)
            return "too_large"
        data = text.encode("utf-8", "surrogatepass")
        hashed = digest(data)
        current = self.entry(rel)
        if current is not None and current.digest == hashed:
            return "reused"  # nothing changed (a save without edits, a re-scan)
        parsed: FileOutline | None = None
        if old is not None and old.get("digest") == hashed:
            try:
                parsed = FileOutline.from_json(old["outline"])
            except (KeyError, TypeError, ValueError):
                parsed = None
        mtime, size = key if key is not None else (0, len(data))
        info = for_header(info, rel, text)
        return _Job(rel, info, text, hashed, mtime, size, parsed, current)

    def _parse(self, job: _Job) -> FileOutline:
        return _settle(outline(job.text, job.info, job.path), job)

    def _register(self, job: _Job, parsed: FileOutline) -> str:
        rel = job.path
        lines = job.text.splitlines(keepends=True)
        with self._lock:
            start = self._generation
            old = self._files.get(rel)
            counted_before = self._windows.counts(rel)
            self._remove_locked(rel, logged=False)
            entry = FileEntry(rel, job.info.name, job.mtime_ns, job.size, job.digest, parsed)
            self._windows.add(rel, lines)
            self._files[rel] = entry
            for i, sym in enumerate(parsed.symbols):
                self._symbols.setdefault(sym.name, []).append((rel, i))
            self._resolver.add(rel, parsed.package)
            self._changes[rel] += 1
            self._generation += 1
            self._reexports.clear()
            config = rel.rsplit("/", 1)[-1] in _CONFIG_FILES
            if config:
                self._config_cache.clear()
            # What this changed, for caches that would rather update than start over: the
            # usage of the names the file now uses in more or fewer of its windows; imports
            # resolve anew when a file appears or its package (namespace) changes.
            moved = old is None or old.outline.package != parsed.package or config
            counted = self._windows.counts(rel)
            used = frozenset(
                t
                for t in counted_before.keys() | counted.keys()
                if counted_before.get(t) != counted.get(t)
            )
            self._log.append(_Change(start, self._generation, rel, used, moved))
        return "reused" if job.parsed is not None else "indexed"

    def changes_since(self, generation: int) -> tuple[set[str], set[str]] | None:
        """The files changed since ``generation`` and the names whose usage changed with
        them, or None when a file appeared or went, a package changed, or the changes go
        back further than remembered: then nothing derived from the index still holds."""
        with self._lock:
            changed = [c for c in self._log if c.end > generation]
            if self._generation != generation and (not changed or changed[0].start > generation):
                return None
            if any(c.moved for c in changed):
                return None
            return {c.path for c in changed}, set().union(*(c.names for c in changed))

    def _remove_locked(self, rel: str, logged: bool = True) -> None:
        entry = self._files.pop(rel, None)
        if entry is None:
            return
        self._changes[rel] += 1
        self._generation += 1
        if logged:
            self._log.append(
                _Change(self._generation - 1, self._generation, rel, frozenset(), True)
            )
        self._reexports.clear()
        self._windows.remove(rel)
        for sym in entry.outline.symbols:
            refs = self._symbols.get(sym.name)
            if refs is not None:
                refs[:] = [r for r in refs if r[0] != rel]
                if not refs:
                    del self._symbols[sym.name]
        self._resolver.remove(rel)

    def _read_config(self, rel: str) -> str | None:
        """Small config files (go.mod, tsconfig.json, ...) for import resolution, cached."""
        if rel in self._config_cache:
            return self._config_cache[rel]
        text, _ = (
            read_source(self.root, rel, 256 * 1024) if not rel.startswith("..") else (None, None)
        )
        if text is None:
            try:  # not a source language (go.mod): read it directly, it is small and not secret
                path = self.root / rel
                if (
                    path.is_file()
                    and self.relative(path) == rel
                    and path.stat().st_size < 256 * 1024
                ):
                    text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = None
        self._config_cache[rel] = text
        return text

    # -- persistence --------------------------------------------------------------------------

    def _store(self) -> Path | None:
        if self.cache_dir is None:
            return None
        name = hashlib.sha256(str(self.root).encode()).hexdigest()[:24]
        return self.cache_dir / f"{name}.json"

    def _load(self) -> dict[str, dict]:
        store = self._store()
        if store is None:
            return {}
        try:
            data = json.loads(store.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT or data.get("root") != str(self.root):
                return {}
            files = data["files"]
            return files if isinstance(files, dict) else {}
        except (OSError, ValueError, KeyError, TypeError):
            return {}  # no index yet, or a corrupt one: rebuild

    def save(self) -> None:
        store = self._store()
        if store is None:
            return
        with self._lock:
            files = {
                rel: {
                    "mtime_ns": e.mtime_ns,
                    "size": e.size,
                    "digest": e.digest,
                    "outline": e.outline.to_json(),
                }
                for rel, e in self._files.items()
            }
        payload = {"format": FORMAT, "root": str(self.root), "files": files}
        try:
            store.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=store.parent, prefix=".index-", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(payload, f, separators=(",", ":"))
            os.replace(tmp, store)
        except OSError as exc:
            log.warning("could not save the workspace index to %s: %s", store, exc)

    def iter_entries(self) -> Iterator[FileEntry]:
        with self._lock:
            entries = list(self._files.values())
        yield from entries
