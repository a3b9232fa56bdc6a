"""The workspace index: persistence, incremental updates, bad input while indexing."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from starcoder_ls.context.background import BackgroundIndexer
from starcoder_ls.context.index import WorkspaceIndex
from starcoder_ls.context.workspaces import Workspaces
from starcoder_ls.settings import WorkspaceSettings


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


FILES = {
    "pkg/__init__.py": "",
    "pkg/a.py": "def alpha(x: int) -> int:\n    '''Alpha.'''\n    return x\n",
    "pkg/b.py": "from pkg.a import alpha\n\n\nclass Beta:\n    def run(self):\n        return alpha(1)\n",
}


def test_persisted_outlines_are_reused_when_content_is_unchanged(tmp_path):
    root = _tree(tmp_path / "ws", FILES)
    cache = tmp_path / "cache"
    first = WorkspaceIndex(root, WorkspaceSettings(), cache_dir=cache)
    report = first.build()
    assert report.files == 3 and report.reused == 0 and report.symbols == 3
    (root / "pkg/a.py").write_text(FILES["pkg/a.py"] + "\n\ndef gamma():\n    pass\n")
    second = WorkspaceIndex(root, WorkspaceSettings(), cache_dir=cache)
    report = second.build()
    assert report.reused == 2  # b.py and __init__.py; a.py changed and was parsed again
    assert [p for p, _ in second.definitions("gamma")] == ["pkg/a.py"]


def test_corrupt_or_foreign_persisted_index_is_ignored(tmp_path):
    root = _tree(tmp_path / "ws", FILES)
    cache = tmp_path / "cache"
    WorkspaceIndex(root, WorkspaceSettings(), cache_dir=cache).build()
    (store,) = cache.glob("*.json")
    store.write_text("{not json")
    report = WorkspaceIndex(root, WorkspaceSettings(), cache_dir=cache).build()
    assert report.files == 3 and report.reused == 0
    data = json.loads(store.read_text())  # rewritten whole
    data["files"]["pkg/a.py"]["outline"] = {"symbols": [["broken"]]}
    store.write_text(json.dumps(data))
    index = WorkspaceIndex(root, WorkspaceSettings(), cache_dir=cache)
    index.build()  # a bad entry is parsed again, not trusted
    assert [s.name for _, s in index.definitions("alpha")] == ["alpha"]


def test_update_and_remove_keep_symbols_and_windows_consistent(tmp_path):
    root = _tree(tmp_path / "ws", FILES)
    index = WorkspaceIndex(root, WorkspaceSettings(persist=False))
    index.build()
    assert index.update("pkg/a.py", "def delta():\n    pass\n")
    assert index.definitions("alpha") == [] and index.definitions("delta")
    index.remove("pkg/b.py")
    assert "pkg/b.py" not in index and not index.definitions("Beta")
    assert not index.update(".env", "SECRET=1\n")  # never indexed, whatever the caller says
    assert ".env" not in index
    before = index.generation("pkg/a.py")
    index.update("pkg/a.py", "def epsilon():\n    pass\n")
    assert index.generation("pkg/a.py") == before  # changes of the file itself do not count
    assert index.generation() > before


def test_changes_since_names_the_edited_files_and_the_usage_they_changed(tmp_path):
    root = _tree(tmp_path / "ws", FILES)
    index = WorkspaceIndex(root, WorkspaceSettings(persist=False))
    index.build()
    start = index.generation()
    assert index.changes_since(start) == (set(), set())
    text = FILES["pkg/b.py"].replace("alpha(1)", "alpha(1) + gamma(2)")
    index.update("pkg/b.py", text)
    paths, names = index.changes_since(start)
    assert paths == {"pkg/b.py"} and names == {"gamma"}  # alpha is used as often as before
    index.update("pkg/c.py", "def c():\n    pass\n")  # a new file: imports may resolve anew
    assert index.changes_since(start) is None
    later = index.generation()
    index.remove("pkg/c.py")
    assert index.changes_since(later) is None
    settled = index.generation()
    for i in range(40):  # more changes than are remembered
        index.update("pkg/b.py", text + f"\nx{i} = 1\n")
    assert index.changes_since(settled) is None
    assert index.changes_since(index.generation() - 2) is not None


def test_files_deleted_while_indexing_and_unparseable_files(tmp_path):
    files = {f"m/f{i:03}.py": f"def f{i}():\n    return {i}\n" for i in range(60)}
    files["m/broken.py"] = "def (((:\n  class\n\x7f garbage ]]]\n"
    root = _tree(tmp_path / "ws", files)
    index = WorkspaceIndex(root, WorkspaceSettings(persist=False))
    deleted = []

    def progress(done: int, total: int, path: str) -> None:
        if not deleted:
            for i in range(30, 60):
                (root / f"m/f{i:03}.py").unlink()
            deleted.append(True)

    index.progress_every_s = 0.0
    report = index.build(progress)
    assert deleted and report.files >= 31  # the first files and the broken one
    assert "m/broken.py" in index
    assert report.skipped["missing"] >= 29
    assert index.definitions("f0") and not index.definitions("f59")


def test_background_indexer_builds_and_coalesces_updates(tmp_path):
    root = _tree(tmp_path / "ws", FILES)
    index = WorkspaceIndex(root, WorkspaceSettings(persist=False))
    seen: list[str] = []
    done = threading.Event()
    indexer = BackgroundIndexer(
        progress=lambda i, phase, d, t: seen.append(phase),
        done=lambda i, r: done.set(),
        quiet_s=0.05,
    )
    indexer.build(index)
    assert done.wait(10)
    for n in range(20):  # an open document typed into: one re-index after the quiet time
        indexer.update(index, "pkg/a.py", f"def typed_{n}():\n    pass\n", delay=0.05)
    assert indexer.idle(10)
    assert index.definitions("typed_19") and not index.definitions("typed_3")
    assert seen[0] == "begin" and seen[-1] == "end"
    indexer.stop()


def test_workspaces_pick_the_deepest_folder_and_never_the_filesystem_root(tmp_path):
    outer = _tree(tmp_path / "outer", {"a.py": "x = 1\n", "inner/b.py": "y = 2\n"})
    ws = Workspaces(WorkspaceSettings(persist=False))
    new = ws.set_roots([outer, outer / "inner", Path("/")])
    assert {i.root for i in new} == {outer.resolve(), (outer / "inner").resolve()}
    index = ws.index_for((outer / "inner" / "b.py").as_uri())
    assert index is not None and index.root == (outer / "inner").resolve()
    assert ws.index_for("untitled:Untitled-1") is None
    assert ws.locate((tmp_path / "elsewhere.py").as_uri()) is None


def test_parallel_first_build_gives_the_same_index(tmp_path, monkeypatch):
    import starcoder_ls.context.index as index_module

    files = {
        f"pkg/m{i:02}.py": f"import os\n\n\nclass C{i}:\n    def run(self, x):\n        return x\n"
        for i in range(24)
    }
    files["pkg/broken.py"] = "def (((\n"
    root = _tree(tmp_path / "ws", files)
    serial = WorkspaceIndex(root, WorkspaceSettings(persist=False))
    serial.build()
    monkeypatch.setattr(index_module, "PARALLEL_MIN_FILES", 1)
    parallel = WorkspaceIndex(root, WorkspaceSettings(persist=False))
    report = parallel.build()
    assert report.files == len(files)
    assert parallel.paths() == serial.paths()
    for path in serial.paths():
        assert parallel.entry(path).outline == serial.entry(path).outline, path
    assert [p for p, _ in parallel.definitions("C7")] == ["pkg/m07.py"]


def test_permission_errors_and_fifos_are_skipped_and_indexing_goes_on(tmp_path, monkeypatch):
    import os
    from pathlib import Path as P

    root = _tree(tmp_path / "ws", {**FILES, "pkg/locked.py": "def hidden():\n    pass\n"})
    os.mkfifo(root / "pkg" / "pipe.py")  # reading a FIFO would block the indexer forever
    real = P.read_bytes

    def read_bytes(self: P) -> bytes:
        if self.name == "locked.py":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(P, "read_bytes", read_bytes)
    index = WorkspaceIndex(root, WorkspaceSettings(persist=False))
    report = index.build()
    assert "pkg/locked.py" not in index and "pkg/pipe.py" not in index
    assert index.definitions("alpha") and not index.definitions("hidden")
    assert report.files == 3
