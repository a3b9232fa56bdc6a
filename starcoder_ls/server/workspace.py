"""The workspace index in the server: background builds with ``$/progress``, updates from document
sync and file watching, the recent-edits ring, and the engine's cross-file context.

All index work happens on the indexer thread; handlers here only queue it, so no notification
waits for a parse.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp

from starcoder_ls.context.background import BackgroundIndexer
from starcoder_ls.context.crossfile import CrossFileContext
from starcoder_ls.context.index import BuildReport, WorkspaceIndex
from starcoder_ls.context.recent import RecentRing
from starcoder_ls.context.workspace import is_secret_path
from starcoder_ls.context.workspaces import Workspaces, uri_to_path

log = logging.getLogger(__name__)

_WATCH_ID = "starcoder-ls-watch"
_tokens = itertools.count(1)


class WorkspaceSupport:
    def __init__(self, ls: Any) -> None:
        self.ls = ls
        self.workspaces = Workspaces(ls.settings.workspace)
        self.recent = RecentRing()
        self.indexer = BackgroundIndexer(progress=self._progress, done=self._done)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.roots: list[Path] = []
        self.progress_supported = False
        self._progress_tokens: dict[int, dict[str, Any]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._last_viewed: dict[str, int] = {}
        self._secret: dict[str, bool] = {}
        ls.engine.crossfile = CrossFileContext(self.workspaces.index_for, self.recent)
        ls.engine.open_lines = self.open_lines

    @property
    def enabled(self) -> bool:
        s = self.ls.settings
        return bool(s.cross_file and s.workspace.index)

    # -- folders and settings -------------------------------------------------------------------

    def start(self, roots: list[Path]) -> None:
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None
        self.roots = roots
        if self.enabled:
            for index in self.workspaces.set_roots(roots):
                self.indexer.build(index)

    def settings_changed(self) -> None:
        if not self.enabled:
            return
        rebuilt = self.workspaces.update_settings(self.ls.settings.workspace)
        rebuilt += self.workspaces.set_roots(self.roots)
        for index in rebuilt:
            self.indexer.build(index)

    def folders_changed(self, added: list[Path], removed: list[Path]) -> None:
        gone = {p.resolve() for p in removed}
        roots = [r for r in self.roots if r.resolve() not in gone]
        roots += [a for a in added if a not in roots]
        self.start(roots)

    # -- documents ------------------------------------------------------------------------------

    def _locate(self, uri: str) -> tuple[WorkspaceIndex, str] | None:
        if not self.enabled or self.secret(uri):
            return None
        return self.workspaces.locate(uri)

    def secret(self, uri: str) -> bool:
        """The document is a credentials file by its name or, through a symlink, by the file
        it really is: never indexed, never in the recent-edits ring, never context."""
        known = self._secret.get(uri)
        if known is None:
            path = uri_to_path(uri)
            root = next((r for r in self.roots if path and path.is_relative_to(r)), None)
            known = path is not None and is_secret_path(path, root)
            if len(self._secret) > 4096:
                self._secret.clear()
            self._secret[uri] = known
        return known

    def opened(self, doc: Any) -> None:
        found = self._locate(doc.uri)
        if found is not None:
            self.indexer.update(found[0], found[1], doc.text)

    def changed(self, doc: Any, line: int | None) -> None:
        if self.secret(doc.uri):
            return
        found = self._locate(doc.uri)
        path = found[1] if found else (uri_to_path(doc.uri) or Path(doc.uri)).name
        if self.ls.settings.cross_file and line is not None:
            self.recent.record(doc.uri, path, line, doc.line_count, doc.line_text, edited=True)
        if found is not None:
            self.indexer.update(found[0], found[1], doc.text, delay=self.indexer.quiet_s)

    def viewed(self, doc: Any, line: int) -> None:
        """A completion was asked for here: remember the chunk once per line, not per key."""
        if not self.ls.settings.cross_file or self._last_viewed.get(doc.uri) == line:
            return
        if self.secret(doc.uri):
            return
        if len(self._last_viewed) > 1000:
            self._last_viewed.clear()
        self._last_viewed[doc.uri] = line
        found = self._locate(doc.uri)
        path = found[1] if found else (uri_to_path(doc.uri) or Path(doc.uri)).name
        self.recent.record(doc.uri, path, line, doc.line_count, doc.line_text, edited=False)

    def saved(self, doc: Any) -> None:
        found = self._locate(doc.uri)
        if found is not None:
            self.indexer.update(found[0], found[1], doc.text)

    def closed(self, uri: str) -> None:
        self._secret.pop(uri, None)
        found = self._locate(uri)
        if found is not None:
            # The file on disk is the truth again (the editor may close without saving).
            self.indexer.update(found[0], found[1], None)

    def watched(self, changes: list[lsp.FileEvent]) -> None:
        for change in changes:
            found = self._locate(change.uri)
            if found is None:
                continue
            index, rel = found
            if self.ls.documents.get(change.uri) is not None:
                continue  # an open document is newer than the file on disk
            if change.type == lsp.FileChangeType.Deleted:
                self.indexer.remove(index, rel)
                self.recent.forget(change.uri)
            else:
                self.indexer.update(index, rel, None)

    def open_lines(self, path: Path) -> list[str] | None:
        uri = path.as_uri()
        doc = self.ls.documents.get(uri)
        if doc is None:
            return None
        return str(doc.text).splitlines(keepends=True)

    def shutdown(self) -> None:
        self.indexer.stop()

    def spawn(self, coro: Any) -> None:
        """Run a coroutine on the event loop, keeping a reference until it is done."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- progress (called on the indexer thread) -------------------------------------------------

    def _on_loop(self, fn: Any, *args: Any) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def _progress(self, index: WorkspaceIndex, phase: str, done: int, total: int) -> None:
        if self.progress_supported:
            self._on_loop(self._send_progress, id(index), index.root.name, phase, done, total)

    def _send_progress(self, key: int, name: str, phase: str, done: int, total: int) -> None:
        """On the event loop. The token is created with the client first (a request); reports
        that come before it is ready are dropped, an end is sent as soon as it is."""
        progress = self.ls.work_done_progress
        state = self._progress_tokens.get(key)
        if phase == "begin":
            token = f"starcoder-index-{next(_tokens)}"
            state = self._progress_tokens[key] = {"token": token, "ready": False, "end": None}

            async def create() -> None:
                try:
                    await progress.create_async(token)
                    progress.begin(
                        token,
                        lsp.WorkDoneProgressBegin(
                            title=f"starcoder-ls: indexing {name}", percentage=0
                        ),
                    )
                except Exception:  # the client refused the token: no progress shown
                    log.debug("progress token refused", exc_info=True)
                    self._progress_tokens.pop(key, None)
                    return
                state["ready"] = True
                if state["end"] is not None:
                    self._send_progress(key, name, "end", state["end"], state["end"])

            self.spawn(create())
            return
        if state is None:
            return
        try:
            if phase == "report" and state["ready"]:
                pct = int(100 * done / total) if total else 0
                message = f"{done}/{total} files"
                progress.report(
                    state["token"], lsp.WorkDoneProgressReport(message=message, percentage=pct)
                )
            elif phase == "end":
                if not state["ready"]:
                    state["end"] = done
                    return
                del self._progress_tokens[key]
                progress.end(state["token"], lsp.WorkDoneProgressEnd(message=f"{done} files"))
        except Exception:  # progress is cosmetic; never let it break indexing
            log.debug("progress notification failed", exc_info=True)

    def _done(self, index: WorkspaceIndex, report: BuildReport) -> None:
        if report.capped:
            message = (
                f"starcoder-ls: {index.root.name}: {report.summary()}. Raise "
                "starcoder.workspace.maxFiles or narrow it with workspace.include/exclude."
            )
            self._on_loop(self.ls.show, lsp.MessageType.Info, message)


def register(server: Any) -> None:
    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: Any, params: lsp.DidSaveTextDocumentParams) -> None:
        doc = ls.documents.get(params.text_document.uri)
        if doc is not None:
            ls.workspace_support.saved(doc)

    @server.feature(lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(ls: Any, params: lsp.DidChangeWatchedFilesParams) -> None:
        ls.workspace_support.watched(list(params.changes))

    @server.feature(lsp.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def did_change_folders(ls: Any, params: lsp.DidChangeWorkspaceFoldersParams) -> None:
        def paths(folders: Any) -> list[Path]:
            return [p for f in folders or () if (p := uri_to_path(f.uri)) is not None]

        ls.workspace_support.folders_changed(paths(params.event.added), paths(params.event.removed))


def initialized(ls: Any, params: lsp.InitializeParams | None) -> None:
    """Start indexing the folders and ask the client to tell us about file changes."""
    support: WorkspaceSupport = ls.workspace_support
    caps = params.capabilities if params is not None else None
    window = caps.window if caps is not None else None
    support.progress_supported = bool(window and window.work_done_progress)
    roots = list(ls.roots)
    support.start(roots)
    ws = caps.workspace if caps is not None else None
    watch = ws.did_change_watched_files if ws is not None else None
    if roots and watch is not None and watch.dynamic_registration:
        options = lsp.DidChangeWatchedFilesRegistrationOptions(
            watchers=[lsp.FileSystemWatcher(glob_pattern="**/*")]
        )
        registration = lsp.Registration(
            id=_WATCH_ID,
            method=lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES,
            register_options=options,
        )

        async def register_watcher() -> None:
            try:
                await ls.client_register_capability_async(
                    lsp.RegistrationParams(registrations=[registration])
                )
            except Exception:  # the client declined: edits and saves still update the index
                log.debug("file watching not registered", exc_info=True)

        support.spawn(register_watcher())
