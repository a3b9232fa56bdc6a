"""Walking a source tree as git sees it, shared by the workspace index and the training corpus.

Both need the same answers: which files of a directory are the project's own (``.gitignore``
honoured, vendored directories pruned), never leaving the root through a symlink, and a file's
text only when it is text.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pathspec

VENDORED_DIRS: frozenset[str] = frozenset(
    {"vendor", "third_party", "node_modules", "site-packages", "dist-packages", ".git",
     "__pycache__", ".tox", ".venv", "venv", "build", "dist"}
)  # fmt: skip


def run_git(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "echo"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=False)


def _is_vendored(parent: Path, name: str) -> bool:
    """A directory of code we did not write. ``venv`` counts only when it is a virtual
    environment (has ``pyvenv.cfg``): the standard library has a ``venv`` package of its own."""
    if name == "venv":
        return (parent / name / "pyvenv.cfg").is_file()
    return name in VENDORED_DIRS


def vendored_dir(root: Path, rel: str) -> str | None:
    """The top-most vendored directory of a relative path, if it lies in one."""
    parts = rel.split("/")[:-1]
    for i, part in enumerate(parts):
        if _is_vendored(root.joinpath(*parts[:i]), part):
            return "/".join(parts[: i + 1])
    return None


def list_git(root: Path) -> list[str] | None:
    done = run_git(["ls-files", "-z", "-co", "--exclude-standard"], cwd=root)
    if done.returncode != 0:
        return None  # not a usable work tree (e.g. "dubious ownership"): walk it instead
    return sorted({p for p in done.stdout.decode("utf-8", "surrogateescape").split("\0") if p})


def _gitignore(dirpath: Path) -> pathspec.GitIgnoreSpec | None:
    try:
        lines = (dirpath / ".gitignore").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return pathspec.GitIgnoreSpec.from_lines(lines.splitlines())


def _ignored(specs: list[tuple[str, pathspec.GitIgnoreSpec]], rel: str, is_dir: bool) -> bool:
    """Git's rule: the deepest .gitignore with an opinion on the path decides."""
    verdict = False
    for base, spec in specs:
        sub = rel[len(base) + 1 :] if base else rel
        result = spec.check_file(sub + "/" if is_dir else sub)
        if result.include is not None:
            verdict = result.include
    return verdict


def walk(root: Path, vendored: set[str], escaping: list[str]) -> Iterator[str]:
    """Relative posix paths of a plain directory, honouring nested .gitignore files, pruning
    vendored directories and never entering a symlinked directory."""
    specs: dict[str, pathspec.GitIgnoreSpec] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        if (spec := _gitignore(Path(dirpath))) is not None:
            specs[rel_dir] = spec
        active = [
            (b, s) for b, s in specs.items() if not b or rel_dir == b or rel_dir.startswith(b + "/")
        ]
        keep = []
        for d in sorted(dirnames):
            rel = f"{rel_dir}/{d}" if rel_dir else d
            if _is_vendored(Path(dirpath), d):
                vendored.add(rel)
            elif os.path.islink(os.path.join(dirpath, d)):
                if not inside(Path(dirpath, d), root):
                    escaping.append(rel)
            elif not _ignored(active, rel, True):
                keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            rel = f"{rel_dir}/{f}" if rel_dir else f
            if not _ignored(active, rel, False):
                yield rel


def ignored(root: Path, rel: str) -> bool:
    """Whether git (or, outside a repository, the .gitignore files on the way) ignores ``rel``."""
    if (root / ".git").exists():
        done = run_git(["check-ignore", "-q", "--", rel], cwd=root)
        if done.returncode in (0, 1):
            return done.returncode == 0
    parts = rel.split("/")
    specs = []
    for i in range(len(parts)):
        base = "/".join(parts[:i])
        if (spec := _gitignore(root / base if base else root)) is not None:
            specs.append((base, spec))
    return any(
        _ignored(specs, "/".join(parts[: i + 1]), i < len(parts) - 1) for i in range(len(parts))
    )


def inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a symlink loop
        return False


def read_text_file(path: Path, max_bytes: int) -> tuple[str | None, str | None]:
    """(text, None) or (None, skip reason); text has LF line ends and no byte-order mark."""
    try:
        if path.stat().st_size > max_bytes:
            return None, "too_large"
        data = path.read_bytes()
    except OSError:
        return None, "binary"  # unreadable: treat like any other file we cannot learn from
    if b"\0" in data[:8192]:
        return None, "binary"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "binary"
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n"), None


_GENERATED_RE = re.compile(
    r"@generated|DO NOT EDIT|Generated by"
    r"|(?i:auto-?generated|automatically generated|\bgenerated from \S+ with \S)"
)
"""Markers in a file's first lines. ``generated from X with Y`` is how table generators such as
CPython's ``gencodec.py`` sign their output (the codec tables in ``encodings/``: about 15% of the
standard library's tokens, all of them hex literals)."""
_NOT_ALNUM_RE = re.compile(r"[\W_]+")


def quality_problem(text: str) -> str | None:
    """StarCoder's filters for minified and generated code, plus files with nothing in them."""
    if not text.strip():
        return "empty"
    lines = text.splitlines()
    if max(map(len, lines)) > 1000 or len(text) / len(lines) > 100:
        return "generated"
    if _GENERATED_RE.search("\n".join(lines[:5])):
        return "generated"
    return "generated" if _alnum_count(text) / len(text) < 0.25 else None


_NOT_ALNUM_BYTES = bytes(b for b in range(128) if not chr(b).isalnum() or chr(b) == "_")


def _alnum_count(text: str) -> int:
    """Letters and digits in ``text`` (``[^\\W_]``); ASCII text is counted with
    ``bytes.translate``, some fifty times faster than the regular expression."""
    if text.isascii():
        return len(text.encode("ascii").translate(None, _NOT_ALNUM_BYTES))
    return len(_NOT_ALNUM_RE.sub("", text))
