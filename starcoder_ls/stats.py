"""Local acceptance statistics: how many completions were shown, accepted and rejected.

They answer "is this model worth it for me?" and never leave the machine: a small JSON file in
the user's state directory (``$STARCODER_LS_STATE_DIR``, else ``$XDG_STATE_HOME/starcoder-ls``,
else ``~/.local/state/starcoder-ls``). ``starcoder-ls stats`` and the ``starcoder.stats`` LSP
command print them.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_PENDING_LIMIT = 512


def state_dir() -> Path:
    if env := os.environ.get("STARCODER_LS_STATE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "starcoder-ls"


@dataclass
class _Shown:
    language: str
    chars: int
    at: float


@dataclass
class Stats:
    """Counters per language; ``pending`` holds shown completions awaiting a verdict."""

    path: Path | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    pending: dict[str, _Shown] = field(default_factory=dict)
    save_delay_s: float = 0.0
    """0: every change is written at once. More: changes are written together at most once per
    this many seconds, off the caller's thread (the server: no file write per completion), and
    by ``flush()``."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _warned: bool = False
    _timer: threading.Timer | None = field(default=None, repr=False)

    @classmethod
    def load(cls, path: Path | None = None, *, save_delay_s: float = 0.0) -> Stats:
        path = path or state_dir() / "stats.json"
        stats = cls(path=path, save_delay_s=save_delay_s)
        try:
            data = json.loads(path.read_text("utf-8"))
            counts = data.get("languages", {})
            if isinstance(counts, dict):
                stats.counts = {
                    str(lang): {k: int(v) for k, v in c.items() if isinstance(v, int)}
                    for lang, c in counts.items()
                    if isinstance(c, dict)
                }
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("ignoring unreadable statistics file %s: %s", path, exc)
        return stats

    def _bump(self, language: str, key: str, n: int = 1) -> None:
        c = self.counts.setdefault(language or "unknown", {})
        c[key] = c.get(key, 0) + n

    def shown(self, request_id: str, language: str, text: str) -> None:
        with self._lock:
            self._bump(language, "shown")
            self.pending[request_id] = _Shown(language or "unknown", len(text), time.time())
            while len(self.pending) > _PENDING_LIMIT:
                self.pending.pop(next(iter(self.pending)))
        self._changed()

    def accepted(self, request_id: str) -> bool:
        """False for an unknown (or already judged) request id."""
        with self._lock:
            s = self.pending.pop(request_id, None)
            if s is None:
                return False
            self._bump(s.language, "accepted")
            self._bump(s.language, "accepted_chars", s.chars)
        self._changed()
        return True

    def rejected(self, request_id: str) -> bool:
        with self._lock:
            s = self.pending.pop(request_id, None)
            if s is None:
                return False
            self._bump(s.language, "rejected")
        self._changed()
        return True

    def summary(self) -> dict[str, Any]:
        with self._lock:
            langs = {k: dict(v) for k, v in sorted(self.counts.items())}
        total: dict[str, int] = {}
        for c in langs.values():
            for k, v in c.items():
                total[k] = total.get(k, 0) + v
        for c in (*langs.values(), total):
            shown = c.get("shown", 0)
            c["acceptance_rate"] = round(c.get("accepted", 0) / shown, 4) if shown else 0.0  # type: ignore[assignment]
        return {"total": total, "languages": langs, "file": str(self.path) if self.path else None}

    def _changed(self) -> None:
        if self.path is None:
            return
        if self.save_delay_s <= 0:
            self.save()
            return
        with self._lock:
            if self._timer is not None:
                return  # a write is already on its way and will include this change
            self._timer = threading.Timer(self.save_delay_s, self._timed_save)
            self._timer.daemon = True
            self._timer.start()

    def _timed_save(self) -> None:
        with self._lock:
            self._timer = None
        self.save()

    def flush(self) -> None:
        """Write a pending delayed change now (at shutdown)."""
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            self.save()

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            data = {"version": 1, "languages": self.counts}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".stats-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot write statistics to %s: %s", self.path, exc)


def format_summary(summary: dict[str, Any]) -> Iterator[str]:
    t = summary["total"]
    yield (
        f"shown {t.get('shown', 0)}, accepted {t.get('accepted', 0)}, rejected "
        f"{t.get('rejected', 0)} (acceptance {100 * t.get('acceptance_rate', 0.0):.1f}%)"
    )
    for lang, c in summary["languages"].items():
        yield (
            f"  {lang}: shown {c.get('shown', 0)}, accepted {c.get('accepted', 0)}, rejected "
            f"{c.get('rejected', 0)}, accepted characters {c.get('accepted_chars', 0)}"
        )
