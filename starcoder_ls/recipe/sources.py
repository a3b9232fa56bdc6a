"""Where corpus files come from: directories and git repositories, walked as git would.

Sources are directories, local git work trees (listed by git, so .gitignore applies) or git URLs
(cloned shallowly). Walking honours nested .gitignore files, prunes vendored directories, and
never follows a symlink out of the source root.
"""

from __future__ import annotations

import os
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from starcoder_ls.files import (  # noqa: F401  (the corpus stage imports them from here)
    VENDORED_DIRS,
    inside,
    list_git,
    read_text_file,
    run_git,
    vendored_dir,
    walk,
)
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
        done = run_git(["clone", "--depth", "1", "--quiet", target, str(dest)])
        if done.returncode != 0:
            err = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise RecipeError(f"could not clone {target}: {err[-1] if err else 'git failed'}")
        return Source(name or _repo_name(target), dest.resolve(), True)
    raise RecipeError(f"source {target} does not exist (expected a directory or a git URL)")
