"""Similar code: RepoCoder-style sliding windows over the workspace, ranked by Jaccard similarity.

RepoCoder (Zhang et al., 2023) retrieves fixed windows of lines whose identifier sets overlap the
lines before the cursor most; code that looks like what is being written tends to continue like
it. Each file is cut into windows of ``WINDOW`` lines every ``STRIDE`` lines; each window keeps
only its set of identifiers, in an inverted index (identifier -> window ids), so a query touches
only the windows that share a token with it. Window text is not stored: the few windows picked
per request are read back from the file.

Counting is vectorised with numpy (``bincount`` over the posting lists of the query's tokens), so
a query over tens of thousands of windows takes about a millisecond. Identifiers found in more
than ``COMMON_SHARE`` of all windows (``self``, ``return``, ``i``) carry no signal and would make
every query touch every window, so they are left out of the overlap count.

Removing a file takes its window ids out of the posting lists at once (so document frequencies
stay exact) and marks the ids dead; the id slots are reclaimed in one pass once dead windows
outnumber live ones.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left
from dataclasses import dataclass

WINDOW = 20
STRIDE = 10
COMMON_SHARE = 0.25
MIN_TOKEN_LEN = 2
_TOKEN = re.compile(rf"[A-Za-z_$][A-Za-z0-9_$]{{{MIN_TOKEN_LEN - 1},}}")


def identifiers(text: str) -> set[str]:
    """Identifiers of at least ``MIN_TOKEN_LEN`` characters (one-letter names say nothing).
    ``$`` belongs to a name (JavaScript's ``$ZodType``, PHP's ``$user``); a name that starts
    with it also counts without it (a shell's ``$PATH`` uses ``PATH``)."""
    found = set(_TOKEN.findall(text))
    dollars = [t.lstrip("$") for t in found if t[0] == "$"]
    found.update(t for t in dollars if len(t) >= MIN_TOKEN_LEN and not t[0].isdigit())
    return found


@dataclass(frozen=True)
class Match:
    path: str
    start_line: int
    """0-based first line of the window."""
    end_line: int
    """0-based last line (inclusive)."""
    score: float


def windows(lines: list[str]) -> list[tuple[int, set[str]]]:
    """(first line, identifier set) of each window: every ``STRIDE`` lines a window of two
    ``STRIDE``-line chunks (the last one may be shorter); a short file is one window. Each
    chunk is tokenized once and windows are unions of chunk sets."""
    chunks = [
        identifiers("".join(lines[i : i + STRIDE])) for i in range(0, max(len(lines), 1), STRIDE)
    ]
    if len(chunks) == 1:
        return [(0, chunks[0])] if chunks[0] else []
    out = []
    for k in range(len(chunks) - 1):
        tokens = chunks[k] | chunks[k + 1]
        if tokens:
            out.append((k * STRIDE, tokens))
    return out


class WindowIndex:
    """Inverted index of identifier sets, by file; not thread-safe (the workspace index holds a
    lock)."""

    def __init__(self) -> None:
        self._postings: dict[str, array[int]] = {}
        self._path: list[str | None] = []
        self._start = array("I")
        self._size = array("I")
        self._files: dict[str, tuple[range, tuple[str, ...]]] = {}
        """Per file: its window ids (contiguous) and every identifier of its windows."""
        self._dead = 0

    @property
    def live(self) -> int:
        return len(self._path) - self._dead

    def add(self, path: str, lines: list[str]) -> range:
        """Index ``lines`` of ``path`` (replacing what was indexed for it); returns its window
        ids."""
        self.remove(path)
        first = len(self._path)
        postings = self._postings
        seen: set[str] = set()
        for start, tokens in windows(lines):
            wid = len(self._path)
            self._path.append(path)
            self._start.append(start)
            self._size.append(len(tokens))
            seen |= tokens
            for t in tokens:
                try:
                    postings[t].append(wid)
                except KeyError:
                    postings[t] = array("I", (wid,))
        ids = range(first, len(self._path))
        self._files[path] = (ids, tuple(seen))
        return ids

    def remove(self, path: str) -> None:
        """Forget ``path``'s windows. Their ids leave the posting lists at once (lists are in
        id order and a file's ids are one run, so each list loses one slice), which keeps
        document frequencies exact; the id slots are reclaimed by a compaction once dead
        windows outnumber live ones."""
        found = self._files.pop(path, None)
        if found is None:
            return
        ids, tokens = found
        for t in tokens:
            posting = self._postings.get(t)
            if posting is None:
                continue
            a, b = bisect_left(posting, ids.start), bisect_left(posting, ids.stop)
            del posting[a:b]
            if not posting:
                del self._postings[t]
        for wid in ids:
            self._path[wid] = None
            self._size[wid] = 0
        self._dead += len(ids)
        if self._dead > 1000 and self._dead > self.live:
            self._compact()

    def _compact(self) -> None:
        import numpy as np

        remap = np.full(len(self._path), -1, dtype=np.int64)
        alive = [i for i, p in enumerate(self._path) if p is not None]
        remap[alive] = np.arange(len(alive))
        self._postings = {
            token: array("I", remap[np.frombuffer(posting, dtype=np.uint32)].astype(np.uint32))
            for token, posting in self._postings.items()
        }
        self._files = {
            path: (range(int(remap[ids.start]), int(remap[ids.start]) + len(ids)), tokens)
            for path, (ids, tokens) in self._files.items()
        }
        self._path = [self._path[i] for i in alive]
        self._start = array("I", (self._start[i] for i in alive))
        self._size = array("I", (self._size[i] for i in alive))
        self._dead = 0

    def compact_map(self) -> None:
        """Compact now (tests and long sessions)."""
        self._compact()

    def names(self, path: str) -> tuple[str, ...]:
        """Every identifier of ``path``'s windows (empty for a file not indexed)."""
        found = self._files.get(path)
        return found[1] if found is not None else ()

    def counts(self, path: str) -> dict[str, int]:
        """In how many of ``path``'s windows each of its identifiers occurs: what the file adds
        to :meth:`frequency`."""
        found = self._files.get(path)
        if found is None:
            return {}
        ids, tokens = found
        out = {}
        for t in tokens:
            posting = self._postings.get(t)
            if posting is not None:
                out[t] = bisect_left(posting, ids.stop) - bisect_left(posting, ids.start)
        return out

    def frequency(self, token: str) -> int:
        """In how many windows ``token`` occurs: how much of the workspace uses a name."""
        posting = self._postings.get(token)
        return 0 if posting is None else len(posting)

    def query(
        self, tokens: set[str], *, k: int = 4, exclude: str | None = None, min_score: float = 0.05
    ) -> list[Match]:
        """The ``k`` windows most similar to ``tokens`` (Jaccard), best first."""
        total = len(self._path)
        if not tokens or total == 0:
            return []
        cap = max(8, int(COMMON_SHARE * max(self.live, 1)))
        found = (self._postings.get(t) for t in tokens)
        lists = [p for p in found if p is not None and len(p) <= cap]
        if not lists:
            return []
        import numpy as np  # loaded with the first query, not at the server's start

        ids = np.concatenate([np.frombuffer(p, dtype=np.uint32) for p in lists])
        inter = np.bincount(ids, minlength=total)
        hit = np.nonzero(inter)[0]
        shared = inter[hit].astype(np.float64)
        sizes = np.frombuffer(self._size, dtype=np.uint32)[hit].astype(np.float64)
        scores = shared / np.maximum(len(tokens) + sizes - shared, 1.0)
        scores[sizes == 0] = 0.0  # dead windows
        top = k * 8
        if len(hit) > top:  # only the best few need sorting
            keep = np.argpartition(-scores, top)[:top]
            hit, scores = hit[keep], scores[keep]
        order = np.argsort(-scores, kind="stable")
        out: list[Match] = []
        for wid, score in zip(hit[order].tolist(), scores[order].tolist(), strict=True):
            if score < min_score:
                break
            path = self._path[wid]
            if path is None or path == exclude:
                continue
            start = self._start[wid]
            out.append(Match(path, start, start + WINDOW - 1, round(score, 4)))
            # (The last window of a file may be shorter; readers clamp to the file's end.)
        return _merge_overlaps(out)[:k]


def _merge_overlaps(matches: list[Match]) -> list[Match]:
    """Overlapping windows of one file become one span (its best score), best first."""
    merged: list[Match] = []
    of_path: dict[str, list[int]] = {}  # where each file's spans are in ``merged``
    for m in matches:
        spans = of_path.setdefault(m.path, [])
        for i in spans:
            other = merged[i]
            if m.start_line <= other.end_line + 1 and other.start_line <= m.end_line + 1:
                merged[i] = Match(
                    m.path,
                    min(m.start_line, other.start_line),
                    max(m.end_line, other.end_line),
                    max(m.score, other.score),
                )
                break
        else:
            spans.append(len(merged))
            merged.append(m)
    return merged
