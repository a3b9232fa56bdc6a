"""Completion reuse: a memory LRU, an optional persistent layer, and forward-typing reuse.

A backend call costs tens to hundreds of milliseconds; the same prompt comes back often (the
user moves away and returns, undoes an edit, reopens the editor), and while the user types the
first characters of a shown completion the rest of it is already known. Everything here is
thread-safe because the server computes completions on worker threads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from starcoder_ls.settings import CacheSettings
from starcoder_ls.types import GenerationParams

log = logging.getLogger(__name__)

KEY_VERSION = 2
_PARAM_FIELDS = tuple(f.name for f in fields(GenerationParams))
"""Part of every key: bump it when what is stored for a key changes meaning, so entries written
by an older version on disk are never served."""


def default_disk_path() -> Path:
    """``$XDG_CACHE_HOME/starcoder-ls/completions``, falling back to ``~/.cache`` as the XDG
    spec says when the variable is unset or not absolute."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "starcoder-ls" / "completions"


class CompletionCache:
    """Generated text by (model, prompt, generation parameters).

    Keys are sha256 digests, so a multi-kilobyte prompt costs 64 bytes of key in memory and on
    disk, and the prompt text (the user's code) is not stored in the key column on disk. The
    disk layer is opened on first use so that starting the server never waits for it; when it
    cannot be opened or used it is dropped with one warning and the memory layer carries on.
    """

    def __init__(self, settings: CacheSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._memory: OrderedDict[str, str] = OrderedDict()
        self._disk: Any = None
        self._disk_failed = not (settings.enabled and settings.disk)
        self.disk_path = Path(settings.disk_path).expanduser() if settings.disk_path else None

    @staticmethod
    def make_key(model_id: str, prompt: str, params: GenerationParams) -> str:
        """A stable digest: the same inputs give the same key in every process. Each part is
        length-prefixed, so no two different inputs run together into the same bytes."""
        h = hashlib.sha256()
        for part in (
            str(KEY_VERSION),
            model_id,
            prompt,
            # repr of ints, floats and str tuples is stable across runs and Python versions
            repr(tuple(getattr(params, name) for name in _PARAM_FIELDS)),
        ):
            data = part.encode("utf-8", "surrogatepass")
            h.update(b"%d:" % len(data))
            h.update(data)
        return h.hexdigest()

    def get(self, key: str) -> str | None:
        if not self.settings.enabled:
            return None
        with self._lock:
            text = self._memory.get(key)
            if text is not None:
                self._memory.move_to_end(key)
                return text
            text = self._disk_get(key)
            if text is not None:
                self._remember(key, text)
            return text

    def put(self, key: str, text: str) -> None:
        if not self.settings.enabled:
            return
        with self._lock:
            self._remember(key, text)
            self._disk_put(key, text)

    def __len__(self) -> int:
        """Entries held in memory."""
        with self._lock:
            return len(self._memory)

    def close(self) -> None:
        with self._lock:
            if self._disk is not None:
                try:
                    self._disk.close()
                except Exception:  # closing a broken cache must not fail shutdown
                    log.debug("closing the completion disk cache failed", exc_info=True)
                self._disk = None
            self._disk_failed = True

    def _remember(self, key: str, text: str) -> None:
        capacity = self.settings.memory_entries
        if capacity <= 0:
            return
        self._memory[key] = text
        self._memory.move_to_end(key)
        while len(self._memory) > capacity:
            self._memory.popitem(last=False)

    def _open_disk(self) -> Any:
        if self._disk is None and not self._disk_failed:
            try:
                import diskcache

                path = self.disk_path or default_disk_path()
                path.mkdir(parents=True, exist_ok=True)
                self._disk = diskcache.Cache(
                    str(path),
                    size_limit=self.settings.disk_size_mb * 1024 * 1024,
                    eviction_policy="least-recently-used",
                )
                self.disk_path = path
            except Exception as exc:
                self._disk_unusable(exc)
        return self._disk

    def _disk_get(self, key: str) -> str | None:
        disk = self._open_disk()
        if disk is None:
            return None
        try:
            value = disk.get(key)
        except Exception as exc:
            self._disk_unusable(exc)
            return None
        return value if isinstance(value, str) else None

    def _disk_put(self, key: str, text: str) -> None:
        disk = self._open_disk()
        if disk is None:
            return
        try:
            disk.set(key, text)
        except Exception as exc:
            self._disk_unusable(exc)

    def _disk_unusable(self, exc: BaseException) -> None:
        """Completion must work without the disk layer: warn once and go memory-only."""
        if not self._disk_failed:
            where = self.disk_path or default_disk_path()
            log.warning(
                "completion disk cache at %s is unusable (%s); caching in memory only", where, exc
            )
        self._disk_failed = True
        disk, self._disk = self._disk, None
        if disk is not None:
            try:
                disk.close()
            except Exception:
                log.debug("closing the unusable disk cache failed", exc_info=True)


@dataclass(frozen=True)
class _Shown:
    line: int
    prefix_line: str
    completion: str


class ForwardCache:
    """The last completion shown in each document, to serve its rest while the user types it.

    VS Code asks for a new completion on every keystroke. When the keystrokes are exactly the
    first characters of what is on screen, the answer is already known: the remaining part,
    with no debounce and no backend call. Any other edit makes the shown completion stale.
    """

    def __init__(self, max_documents: int = 256) -> None:
        self._max_documents = max_documents
        self._lock = threading.Lock()
        self._shown: OrderedDict[str, _Shown] = OrderedDict()

    def remember(self, uri: str, line: int, prefix_line: str, completion: str) -> None:
        """``prefix_line``: the current line's text up to the cursor when it was shown."""
        with self._lock:
            if not completion:
                self._shown.pop(uri, None)
                return
            self._shown[uri] = _Shown(line, prefix_line, completion)
            self._shown.move_to_end(uri)
            while len(self._shown) > self._max_documents:
                self._shown.popitem(last=False)

    def lookup(self, uri: str, line: int, prefix_line: str) -> str | None:
        """The part of the shown completion not typed yet, or None (and the entry is dropped)
        when the text at the cursor no longer continues it."""
        with self._lock:
            shown = self._shown.get(uri)
            if shown is None:
                return None
            if line == shown.line and prefix_line.startswith(shown.prefix_line):
                typed = prefix_line[len(shown.prefix_line) :]
                if len(typed) < len(shown.completion) and shown.completion.startswith(typed):
                    self._shown.move_to_end(uri)
                    return shown.completion[len(typed) :]
            del self._shown[uri]
            return None

    def edited(
        self, uri: str, start: tuple[int, int], end: tuple[int, int] | None, text: str
    ) -> None:
        """An edit of the document (``end`` None: the whole text replaced). Only typing on the
        completion's line, at or after where it was shown, can keep it: anything else (another
        line, a line break, the whole document replaced) makes it stale."""
        with self._lock:
            shown = self._shown.get(uri)
            if shown is None:
                return
            keeps = (
                end is not None
                and start[0] == end[0] == shown.line
                and "\n" not in text
                and "\r" not in text
                and min(start[1], end[1]) >= len(shown.prefix_line)
            )
            if not keeps:
                del self._shown[uri]

    def forget(self, uri: str) -> None:
        """For a closed document."""
        with self._lock:
            self._shown.pop(uri, None)
