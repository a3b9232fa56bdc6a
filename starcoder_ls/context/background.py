"""One worker thread that builds and updates the workspace indexes, off the server's event loop.

Requests queue up here: full builds (a folder opened, settings changed), single files (an open
document edited or saved, a file changed on disk) and removals. Updates to the same file
coalesce, and an edited open document is re-indexed only after it has been quiet for
``quiet_s`` (every keystroke would re-parse the file for nothing). A failure indexing one file
is logged and skipped: the index keeps serving what it has.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from starcoder_ls.context.index import BuildReport, WorkspaceIndex

log = logging.getLogger(__name__)

Progress = Callable[[WorkspaceIndex, str, int, int], None]
"""``progress(index, phase, done, total)``, phase ``begin``, ``report`` or ``end``."""


@dataclass
class _Update:
    index: WorkspaceIndex
    path: str
    text: str | None
    """An open document's text; None reads the file from disk (or removes it when gone)."""
    due: float
    remove: bool = False


class BackgroundIndexer:
    def __init__(
        self,
        progress: Progress | None = None,
        done: Callable[[WorkspaceIndex, BuildReport], None] | None = None,
        quiet_s: float = 0.75,
    ) -> None:
        self.progress = progress
        self.done = done
        self.quiet_s = quiet_s
        self._builds: list[WorkspaceIndex] = []
        self._updates: dict[tuple[int, str], _Update] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.busy = False

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="starcoder-index", daemon=True)
            self._thread.start()

    def build(self, index: WorkspaceIndex) -> None:
        with self._cond:
            if index not in self._builds:
                self._builds.append(index)
            self._ensure_thread()
            self._cond.notify()

    def update(
        self, index: WorkspaceIndex, path: str, text: str | None = None, *, delay: float = 0.0
    ) -> None:
        with self._cond:
            self._updates[(id(index), path)] = _Update(index, path, text, time.monotonic() + delay)
            self._ensure_thread()
            self._cond.notify()

    def remove(self, index: WorkspaceIndex, path: str) -> None:
        with self._cond:
            self._updates[(id(index), path)] = _Update(index, path, None, 0.0, remove=True)
            self._ensure_thread()
            self._cond.notify()

    def idle(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is queued or running (tests, the CLI)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._cond:
                if not self._builds and not self._updates and not self.busy:
                    return True
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def _next(self) -> WorkspaceIndex | _Update | None:
        with self._cond:
            while not self._stop.is_set():
                if self._builds:
                    self.busy = True
                    return self._builds.pop(0)
                if self._updates:
                    now = time.monotonic()
                    key, upd = min(self._updates.items(), key=lambda kv: kv[1].due)
                    if upd.due <= now:
                        del self._updates[key]
                        self.busy = True
                        return upd
                    self._cond.wait(upd.due - now)
                    continue
                self._cond.wait()
            return None

    def _run(self) -> None:
        while (job := self._next()) is not None:
            try:
                if isinstance(job, WorkspaceIndex):
                    self._build(job)
                elif job.remove:
                    job.index.remove(job.path)
                else:
                    job.index.update(job.path, job.text)
            except Exception:  # one bad file or a bug must not stop indexing for the session
                log.exception("indexing failed")
            finally:
                with self._cond:
                    self.busy = False

    def _build(self, index: WorkspaceIndex) -> None:
        progress = self.progress
        if progress is not None:
            progress(index, "begin", 0, 0)

        def tick(done: int, total: int, _path: str) -> None:
            if progress is not None:
                progress(index, "report", done, total)

        report = index.build(tick, self._stop)
        if progress is not None:
            progress(index, "end", report.files, report.files)
        if self.done is not None:
            self.done(index, report)
