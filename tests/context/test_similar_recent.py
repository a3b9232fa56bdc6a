"""Similar-code windows (Jaccard over identifier sets) and the recent-edits ring."""

from __future__ import annotations

import random

from starcoder_ls.context.recent import RecentRing
from starcoder_ls.context.similar import STRIDE, WindowIndex, identifiers, windows


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _filler(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    words = [f"word{rng.randrange(10_000)}" for _ in range(n * 4)]
    return [" ".join(words[i * 4 : i * 4 + 4]) + "\n" for i in range(n)]


def test_windows_cover_the_file_with_overlap():
    lines = [f"v{i} = {i}\n" for i in range(45)]
    starts = [s for s, _ in windows(lines)]
    assert starts == [0, STRIDE, 2 * STRIDE, 3 * STRIDE]  # the last window is shorter
    assert windows(["short = 1\n"]) == [(0, {"short"})]


def test_query_ranks_the_most_similar_window_first():
    index = WindowIndex()
    index.add("noise.py", _filler(1, 200))
    target = _filler(2, 60)
    target[30:35] = [
        "session = open_session(config)\n",
        "rows = session.fetch_rows(table_name, limit=page_size)\n",
        "for row in rows:\n",
        "    emit_record(row, schema)\n",
        "session.close()\n",
    ]
    index.add("db/helpers.py", target)
    query = identifiers("session = open_session(config)\nrows = session.fetch_rows(table_name")
    best = index.query(query, k=2)
    assert best and best[0].path == "db/helpers.py"
    assert best[0].start_line <= 30 and best[0].end_line >= 34
    assert index.query(query, k=2, exclude="db/helpers.py") == []


def test_overlapping_windows_of_one_file_merge():
    index = WindowIndex()
    lines = _filler(3, 30)
    lines[12] = "alpha beta gamma delta epsilon\n"
    index.add("a.py", lines)
    (match,) = index.query({"alpha", "beta", "gamma", "delta", "epsilon"}, k=3, min_score=0.01)
    assert (match.start_line, match.end_line) == (0, 29)


def test_removed_files_disappear_and_compaction_keeps_results():
    index = WindowIndex()
    for i in range(80):
        index.add(f"f{i}.py", _filler(i, 40))
    special = ["unique_token_one unique_token_two unique_token_three\n"] * 5
    keep = index.add("keep.py", special + _filler(999, 30))
    index.add("late.py", ["late_token other_token\n"] * 3)
    for i in range(80):
        index.remove(f"f{i}.py")
    assert index.live == len(keep) + 1
    assert index.frequency("unique_token_one") == 1  # exact at once, before any compaction
    index.compact_map()
    best = index.query({"unique_token_one", "unique_token_two"}, k=1, min_score=0.01)
    assert [m.path for m in best] == ["keep.py"]
    # After compaction, removing a file still removes that file's windows and no other's.
    index.remove("late.py")
    assert index.frequency("late_token") == 0 and index.live == len(keep)
    assert [m.path for m in index.query({"unique_token_one"}, k=1, min_score=0.01)] == ["keep.py"]


def test_frequency_counts_live_windows_through_edits():
    index = WindowIndex()
    index.add("a.py", ["helper(x)\n"] * 25)  # two windows
    index.add("b.py", ["helper(y)\n"])
    assert index.frequency("helper") == 3
    for _ in range(5):  # re-indexing an edited file replaces its windows
        index.add("a.py", ["helper(x)\n"] * 25)
    assert index.frequency("helper") == 3
    index.add("a.py", ["other(x)\n"])
    assert index.frequency("helper") == 1 and index.frequency("other") == 1


def test_ring_keeps_latest_chunk_per_region_and_skips_secrets():
    ring = RecentRing(capacity=3, chunk_lines=4)
    doc = [f"line {i}" for i in range(100)]
    ring.record("file:///a.py", "a.py", 10, 100, doc.__getitem__, edited=True)
    ring.record("file:///a.py", "a.py", 11, 100, doc.__getitem__, edited=False)
    assert len(ring.chunks()) == 1 and ring.chunks()[0].edited  # same region, still an edit
    ring.record("file:///b.py", "b.py", 50, 100, doc.__getitem__, edited=True)
    ring.record("file:///c.py", "c.py", 0, 100, doc.__getitem__, edited=False)
    ring.record("file:///d.py", "d.py", 0, 100, doc.__getitem__, edited=False)
    assert [c.path for c in ring.chunks()] == ["d.py", "c.py", "b.py"]
    ring.record("file:///.env", ".env", 0, 100, doc.__getitem__, edited=True)
    assert ".env" not in [c.path for c in ring.chunks()]
    version = ring.version("file:///d.py")
    ring.record("file:///d.py", "d.py", 1, 100, doc.__getitem__, edited=True)
    assert ring.version("file:///d.py") == version  # changes in d.py itself do not count
    ring.forget("file:///d.py")
    assert "d.py" not in [c.path for c in ring.chunks()]
