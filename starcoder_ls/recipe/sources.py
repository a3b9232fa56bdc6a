"""Where corpus files come from: directories and git repositories, walked as git would.

Sources are directories, local git work trees (listed by git, so .gitignore applies) or git URLs
(cloned shallowly). Walking honours nested .gitignore files, prunes vendored directories, and
never follows a symlink out of the source root.
"""

from __future__ import annotations

import os
import re
import subprocess
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pathspec

from starcoder_ls.recipe.errors import RecipeError

LANGUAGES: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript",
    ".cjs": "javascript", ".jsx": "javascript", ".ts": "typescript", ".mts": "typescript",
    ".cts": "typescript", ".tsx": "tsx", ".go": "go", ".rs": "rust", ".java": "java",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp",
    ".hh": "cpp", ".hxx": "cpp", ".cs": "csharp", ".rb": "ruby", ".php": "php", ".sh": "shell",
    ".bash": "shell", ".zsh": "shell", ".lua": "lua", ".kt": "kotlin", ".kts": "kotlin",
    ".scala": "scala", ".swift": "swift", ".html": "html", ".htm": "html", ".css": "css",
    ".md": "markdown", ".markdown": "markdown", ".json": "json", ".yaml": "yaml",
    ".yml": "yaml", ".toml": "toml", ".sql": "sql",
}  # fmt: skip
VENDORED_DIRS: frozenset[str] = frozenset(
    {"vendor", "third_party", "node_modules", "site-packages", "dist-packages", ".git",
     "__pycache__", ".tox", ".venv", "venv", "build", "dist"}
)  # fmt: skip
# Why a file was left out; "vendored" counts pruned directories, every other reason files.
NOT_COUNTED = frozenset({".git", "__pycache__"})
_URL_PREFIXES = ("https://", "http://", "git@", "file://", "ssh://", "git://")
_NAME_RE = re.compile(r"^[\w.\-]+$")


@dataclass(frozen=True)
class Source:
    name: str
    root: Path
    is_git: bool


def language_of(path: str) -> str | None:
    return LANGUAGES.get(os.path.splitext(path)[1].lower())


def stdlib_source() -> str:
    """This interpreter's standard library as a source: a corpus of first-party, permissively
    licensed Python that is on every machine (its site-packages is pruned as vendored)."""
    major, minor = sysconfig.get_python_version().split(".")[:2]
    return f"cpython-stdlib-{major}.{minor}={sysconfig.get_paths()['stdlib']}"


def _git(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "echo"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=False)


def _repo_name(url: str) -> str:
    tail = re.split(r"[/:]", url.rstrip("/"))[-1]
    return tail.removesuffix(".git") or "repo"


def open_source(spec: str, workdir: Path) -> Source:
    """Resolve ``[NAME=]PATH|URL`` to a local tree, cloning remote repositories into workdir."""
    name, target = None, spec
    head, sep, tail = spec.partition("=")
    if sep and _NAME_RE.match(head) and not Path(spec).exists():
        name, target = head, tail
    path = Path(target).expanduser()
    if path.is_dir() and not (path / "HEAD").is_file():
        root = path.resolve()
        return Source(name or root.name, root, (root / ".git").exists())
    if target.startswith(_URL_PREFIXES) or target.endswith(".git"):
        dest = workdir / f"clone-{len(list(workdir.iterdir()))}"
        done = _git(["clone", "--depth", "1", "--quiet", target, str(dest)])
        if done.returncode != 0:
            err = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise RecipeError(f"could not clone {target}: {err[-1] if err else 'git failed'}")
        return Source(name or _repo_name(target), dest.resolve(), True)
    raise RecipeError(f"source {target} does not exist (expected a directory or a git URL)")


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
    done = _git(["ls-files", "-z", "-co", "--exclude-standard"], cwd=root)
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
