"""The workspace folders of a session, each with its index, and the document-to-index lookup.

An editor may open several folders; a document belongs to the deepest folder that holds it, and
its cross-file context comes from that folder's index only (two unrelated projects open side by
side must not leak into each other's prompts).
"""

from __future__ import annotations

import threading
from pathlib import Path

from starcoder_ls.context.index import BuildReport, WorkspaceIndex, default_cache_dir
from starcoder_ls.documents import uri_path
from starcoder_ls.settings import WorkspaceSettings


def uri_to_path(uri: str) -> Path | None:
    """``documents.uri_path`` as a ``Path``: the file of a ``file:`` URI, None for others."""
    path = uri_path(uri)
    return Path(path) if path else None


class Workspaces:
    """Indexes by root; thread-safe."""

    def __init__(self, settings: WorkspaceSettings | None = None, cache_dir: Path | None = None):
        self.settings = settings or WorkspaceSettings()
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
        self._indexes: dict[Path, WorkspaceIndex] = {}
        self._by_uri: dict[str, tuple[WorkspaceIndex, str] | None] = {}
        """Where each document lives, remembered: resolving a path costs system calls, and
        every keystroke asks."""
        self._lock = threading.Lock()

    def set_roots(self, roots: list[Path]) -> list[WorkspaceIndex]:
        """Keep indexes for ``roots``; returns the new ones (to be built)."""
        wanted = {}
        for root in roots:
            try:
                resolved = root.resolve()
            except (OSError, RuntimeError):
                continue
            if resolved.is_dir() and resolved != Path(resolved.anchor):
                wanted[resolved] = root  # never index a whole file system
        with self._lock:
            new = []
            kept = {r: i for r, i in self._indexes.items() if r in wanted}
            for root in wanted:
                if root not in kept:
                    kept[root] = WorkspaceIndex(
                        root,
                        self.settings,
                        cache_dir=self.cache_dir if self.settings.persist else None,
                    )
                    new.append(kept[root])
            self._indexes = kept
            self._by_uri.clear()
            return new

    def update_settings(self, settings: WorkspaceSettings) -> list[WorkspaceIndex]:
        """New settings rebuild every index (the set of files may differ)."""
        if settings == self.settings:
            return []
        self.settings = settings
        with self._lock:
            roots = list(self._indexes)
            self._indexes = {}
            self._by_uri.clear()
        return self.set_roots(roots)

    def indexes(self) -> list[WorkspaceIndex]:
        with self._lock:
            return list(self._indexes.values())

    def index_for(self, uri: str) -> WorkspaceIndex | None:
        """The index of the deepest workspace folder holding the document, if any."""
        found = self.locate(uri)
        return found[0] if found is not None else self._folder_of(uri)

    def locate(self, uri: str) -> tuple[WorkspaceIndex, str] | None:
        """(index, workspace-relative path) of a document inside a workspace folder."""
        with self._lock:
            if uri in self._by_uri:
                return self._by_uri[uri]
        index = self._folder_of(uri)
        path = uri_to_path(uri)
        rel = index.relative(path) if index is not None and path is not None else None
        found = (index, rel) if index is not None and rel else None
        with self._lock:
            if len(self._by_uri) > 10_000:
                self._by_uri.clear()
            self._by_uri[uri] = found
        return found

    def _folder_of(self, uri: str) -> WorkspaceIndex | None:
        path = uri_to_path(uri)
        if path is None:
            return None
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):
            return None
        with self._lock:
            best: WorkspaceIndex | None = None
            for root, index in self._indexes.items():
                if resolved.is_relative_to(root) and (
                    best is None or len(root.parts) > len(best.root.parts)
                ):
                    best = index
            return best


def build_for_cli(root: Path, settings: WorkspaceSettings, *, progress: bool) -> WorkspaceIndex:
    """Index ``root`` in the foreground, with a progress bar on stderr when it is a terminal."""
    workspaces = Workspaces(settings)
    (index,) = workspaces.set_roots([root]) or [WorkspaceIndex(root, settings)]
    report: BuildReport
    if progress:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        with Progress(
            TextColumn("indexing {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            transient=True,
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task(root.name, total=None)

            def tick(done: int, total: int, _path: str) -> None:
                bar.update(task, completed=done, total=total)

            report = index.build(tick)
    else:
        report = index.build()
    if report.capped:
        import sys

        print(f"starcoder-ls: {report.summary()}", file=sys.stderr)
    return index
