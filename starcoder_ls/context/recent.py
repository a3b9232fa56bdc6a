"""Recently edited and viewed code: a small ring of line ranges from open documents.

What the user just wrote in another file (the function they added, the test they are fixing) is
often what the next completion needs, and no index ranks it: it may not even be saved. llama.vim
keeps such a ring of chunks and sends it with every request; this is the same idea. A chunk is
taken when the user edits a region, or when a completion is asked for there; a chunk that
overlaps one already in the ring replaces it (and moves to the front), so typing in one place
keeps one entry up to date rather than filling the ring.

Chunks hold a copy of their text from the moment they were taken, so they survive the document
being closed; secret files are never taken.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from starcoder_ls.context.workspace import is_secret

CHUNK_LINES = 16
CAPACITY = 16


@dataclass(frozen=True)
class Chunk:
    uri: str
    path: str
    """Workspace-relative path (or the file name outside any workspace)."""
    start_line: int
    """0-based, inclusive."""
    end_line: int
    text: str
    time: float
    edited: bool


class RecentRing:
    """Thread-safe: the event loop records, completion threads read."""

    def __init__(self, capacity: int = CAPACITY, chunk_lines: int = CHUNK_LINES) -> None:
        self.capacity = capacity
        self.chunk_lines = chunk_lines
        self._chunks: list[Chunk] = []
        self._lock = threading.Lock()

    def record(
        self,
        uri: str,
        path: str,
        line: int,
        line_count: int,
        line_text: Callable[[int], str],
        *,
        edited: bool,
    ) -> None:
        """Take the chunk of ``chunk_lines`` lines centred on ``line``."""
        if not path or is_secret(path):
            return
        half = self.chunk_lines // 2
        start = max(0, min(line - half, line_count - self.chunk_lines))
        end = min(line_count - 1, start + self.chunk_lines - 1)
        text = "".join(
            t if t.endswith("\n") else t + "\n" for t in map(line_text, range(start, end + 1))
        )
        if not text.strip():
            return
        chunk = Chunk(uri, path, start, end, text, time.monotonic(), edited)
        with self._lock:
            kept = [
                c
                for c in self._chunks
                if not (c.uri == uri and c.start_line <= end and start <= c.end_line)
            ]
            replaced = len(kept) != len(self._chunks)
            # An edit near an earlier one keeps it marked as an edit.
            if replaced and not edited:
                chunk = Chunk(
                    uri, path, start, end, text, chunk.time, self._was_edited(uri, start, end)
                )
            kept.insert(0, chunk)
            self._chunks = kept[: self.capacity]

    def _was_edited(self, uri: str, start: int, end: int) -> bool:
        return any(
            c.edited and c.uri == uri and c.start_line <= end and start <= c.end_line
            for c in self._chunks
        )

    def forget(self, uri: str) -> None:
        """Drop a document's chunks (it was deleted, or renamed away)."""
        with self._lock:
            self._chunks = [c for c in self._chunks if c.uri != uri]

    def version(self, excluding_uri: str | None = None) -> int:
        """Changes to the ring outside one document (a key for reusing retrieved context)."""
        with self._lock:
            return hash(
                tuple((c.uri, c.start_line, c.time) for c in self._chunks if c.uri != excluding_uri)
            )

    def chunks(self) -> list[Chunk]:
        """Most recent first."""
        with self._lock:
            return list(self._chunks)
