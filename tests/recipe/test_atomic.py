from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from starcoder_ls.recipe.atomic import atomic_path
from starcoder_ls.recipe.errors import RecipeError


def test_directory_is_replaced_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "weights").write_text("good")
    with pytest.raises(RuntimeError), atomic_path(target, directory=True) as tmp:
        (tmp / "weights").write_text("half")
        raise RuntimeError("crash in the middle")
    assert (target / "weights").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary left behind
    with atomic_path(target, directory=True) as tmp:
        (tmp / "weights").write_text("new")
    assert (target / "weights").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_outputs_get_ordinary_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.gguf") as tmp:
            tmp.write_bytes(b"x")
        with atomic_path(tmp_path / "d", directory=True) as tmp:
            (tmp / "a").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.gguf").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "d" / "a").stat().st_mode) == 0o644


def test_full_disk_is_a_clear_error_and_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "model.gguf"
    target.write_bytes(b"good model")
    full_disk = pytest.raises(RecipeError, match="no space left on the device while writing")
    with full_disk, atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert target.read_bytes() == b"good model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf"]
