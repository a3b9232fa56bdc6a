"""Server-side debounce that adapts to how fast the user types and how slow the backend is.

VS Code asks for an inline completion on every keystroke. Sending each one to the model would
queue generations the user never sees, so an automatic request first waits; a newer request for
the same document cancels it while it waits. The wait is

    max(base, 1.3 x typical gap between keystrokes, 0.25 x typical backend latency)

capped at ``4 x base`` (and one second): a fast typist's keystrokes fall inside the window, a
pause longer than their usual gap gets a completion, and a slow backend (whose answers are
costly to throw away) waits a little longer. Invoked requests (the user asked) never wait.
"""

from __future__ import annotations

import threading
import time


class Debouncer:
    def __init__(self, base_ms: int) -> None:
        self.base_ms = base_ms
        self._gap_ms: float | None = None
        self._latency_ms: float | None = None
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def note_request(self, uri: str, now: float | None = None) -> None:
        """Record a keystroke-driven request (the gap since the previous one is the typing pace)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._last.get(uri)
            if last is not None and now < last:
                return  # read the clock before a request that got the lock first: no gap
            self._last[uri] = now
            if last is None:
                return
            gap = (now - last) * 1000
            if gap > 2000:  # a pause, not typing pace
                return
            self._gap_ms = gap if self._gap_ms is None else 0.8 * self._gap_ms + 0.2 * gap

    def note_latency(self, ms: float) -> None:
        with self._lock:
            self._latency_ms = ms if self._latency_ms is None else 0.8 * self._latency_ms + 0.2 * ms

    def forget(self, uri: str) -> None:
        with self._lock:
            self._last.pop(uri, None)

    def delay_ms(self, invoked: bool) -> float:
        if invoked or self.base_ms <= 0:
            return 0.0
        with self._lock:
            wait = float(self.base_ms)
            if self._gap_ms is not None:
                wait = max(wait, 1.3 * self._gap_ms)
            if self._latency_ms is not None:
                wait = max(wait, 0.25 * self._latency_ms)
        return min(wait, 4.0 * self.base_ms, 1000.0)
