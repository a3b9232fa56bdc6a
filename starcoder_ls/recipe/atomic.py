"""Write outputs so that a failed run never leaves a half-written file where a good one was.

Everything is written under a temporary sibling path and renamed into place only once it is
complete. ``os.replace`` is atomic within one filesystem, and a sibling is always on the same
filesystem as its target.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from starcoder_ls.recipe.errors import RecipeError


def _disk_full_message(target: Path, exc: OSError) -> str:
    return (
        f"no space left on the device while writing {target} ({exc.strerror}); "
        "free some disk space and run the command again (the previous output, if any, is untouched)"
    )


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; move it onto ``target`` on success.

    With ``directory=True`` the temporary path is an (empty) directory. On any exception the
    temporary path is removed and ``target`` is left exactly as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}."
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        _publish_permissions(tmp)
        if directory:
            old = None
            if target.exists():
                old = target.with_name(f".{target.name}.old")
                if old.exists():
                    shutil.rmtree(old)
                target.rename(old)
            tmp.rename(target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except OSError as exc:
        _cleanup(tmp, directory)
        if exc.errno == errno.ENOSPC:
            raise RecipeError(_disk_full_message(target, exc)) from exc
        raise
    except BaseException:
        _cleanup(tmp, directory)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish_permissions(tmp: Path) -> None:
    """mkstemp/mkdtemp create 0600/0700 paths; outputs (models on a shared box) get the modes
    an ordinary ``open`` would have given them under the user's umask."""
    mask = _umask()
    paths = [tmp, *tmp.rglob("*")] if tmp.is_dir() else [tmp]
    for p in paths:
        if not p.is_symlink():
            p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def _cleanup(tmp: Path, directory: bool) -> None:
    if directory:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
