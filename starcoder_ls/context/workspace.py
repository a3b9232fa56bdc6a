"""Which files of a workspace folder the index may read, and reading them safely.

The index reads the user's files on their own machine, but what it reads can end up in a prompt,
and a prompt may go to a remote backend. So the rules are strict and checked before any read:
never a secret file (keys, certificates, ``.env``, credential stores), never a path outside the
workspace root (``..``, a symlink pointing out, a symlink loop), only files the project owns
(``.gitignore`` honoured, vendored directories pruned), only text in a known language and of
sane size. A workspace larger than ``maxFiles`` is indexed up to the cap, and the scan says so.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from starcoder_ls.files import ignored, list_git, quality_problem, read_text_file, walk
from starcoder_ls.languages.registry import language_for
from starcoder_ls.settings import WorkspaceSettings

SECRET_PATTERNS: tuple[str, ...] = (
    ".env",
    ".env.*",
    "*.env",
    ".envrc",
    "*.pem",
    "*.key",
    "*.crt",
    "*.cer",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.kdbx",
    "*.gpg",
    "*.asc",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.ppk",
    ".netrc",
    "_netrc",
    ".npmrc",
    ".pypirc",
    ".git-credentials",
    ".htpasswd",
    "credentials",
    "credentials.*",
    "*credentials*.json",
    "secrets.*",
    "*.secret",
    "*.secrets",
    "*secret*.y*ml",
    "service-account*.json",
    "terraform.tfstate*",
    "*.tfvars",
    ".aws/",
    ".ssh/",
    ".gnupg/",
    ".docker/config.json",
    ".kube/config",
)
"""Files never read for context, whatever the settings say (gitignore syntax)."""

NOT_CODE = frozenset({"json", "yaml", "toml", "markdown", "html", "css", "scss"})
"""Known languages that are data or prose: no definitions to outline, and windows of them
(lock files, changelogs) would crowd similar code out."""

_SECRETS = pathspec.GitIgnoreSpec.from_lines(SECRET_PATTERNS)


def is_secret(rel_path: str) -> bool:
    """A file that may hold credentials: never read, never put in a prompt."""
    return _SECRETS.match_file(rel_path)


def _secret_by_name(path: Path, root: Path | None) -> bool:
    """The secret rules for one path: relative to ``root`` when inside it, otherwise on the
    path's last components (``id_rsa``, ``.kube/config``, ``.ssh/config``)."""
    if root is not None and path.is_relative_to(root):
        return is_secret(path.relative_to(root).as_posix())
    parts = [p for p in path.parts if p not in ("/", "")][-3:]
    return any(is_secret("/".join(parts[i:])) for i in range(len(parts)))


def is_secret_path(path: str | Path, root: Path | None = None) -> bool:
    """A file that looks like credentials by its own name or, through symlinks, by the name of
    the file it really is (``settings_local.py -> .env``)."""
    path = Path(path).absolute()
    if _secret_by_name(path, root):
        return True
    try:
        real = path.resolve()
    except (OSError, RuntimeError):
        return True  # a symlink loop: not worth the risk
    if real == path:
        return False
    real_root = root.resolve() if root is not None else None
    return _secret_by_name(real, real_root)


@dataclass
class ScanResult:
    files: list[str]
    """Workspace-relative posix paths, sorted, at most ``maxFiles``."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Why files were left out: secret, excluded, vendored, unknown_language, not_code,
    generated, outside, over_cap."""
    capped: bool = False
    """The workspace has more candidate files than ``maxFiles``."""
    seen: int = 0


def _spec(patterns: tuple[str, ...]) -> pathspec.GitIgnoreSpec | None:
    return pathspec.GitIgnoreSpec.from_lines(patterns) if patterns else None


class FileFilter:
    """The path-only rules (no reads): secrets, include/exclude, language, vendored."""

    def __init__(self, root: Path, settings: WorkspaceSettings) -> None:
        self.root = root
        self.include = _spec(settings.include)
        self.exclude = _spec(settings.exclude)
        self.max_bytes = settings.max_file_kb * 1024

    def reason(self, rel: str) -> str | None:
        """Why ``rel`` is not indexed, or None when it may be read."""
        if rel.startswith("../") or rel.startswith("/") or "/../" in f"/{rel}":
            return "outside"
        if is_secret(rel):
            return "secret"
        if self.exclude is not None and self.exclude.match_file(rel):
            return "excluded"
        if self.include is not None and not self.include.match_file(rel):
            return "excluded"
        if rel.endswith((".min.js", ".min.css", ".bundle.js", ".map", ".lock")):
            return "generated"
        info = language_for(None, rel)
        if info is None:
            return "unknown_language"
        if info.name in NOT_CODE:
            return "not_code"
        from starcoder_ls.files import vendored_dir

        if vendored_dir(self.root, rel) is not None:
            return "vendored"
        return None


def scan(
    root: Path, settings: WorkspaceSettings, stop: threading.Event | None = None
) -> ScanResult:
    """The files of ``root`` to index, as git lists them (or a gitignore-aware walk)."""
    root = root.resolve()
    result = ScanResult(files=[])
    rules = FileFilter(root, settings)
    listed = list_git(root) if (root / ".git").exists() else None
    escaping: list[str] = []
    candidates = listed if listed is not None else walk(root, set(), escaping)
    for rel in candidates:
        if stop is not None and stop.is_set():
            break
        result.seen += 1
        reason = rules.reason(rel)
        if reason is not None:
            result.skipped[reason] += 1
            continue
        if len(result.files) >= settings.max_files:
            result.capped = True
            result.skipped["over_cap"] += 1
            if listed is None and result.skipped["over_cap"] > settings.max_files:
                break  # a huge plain tree: stop walking, the count is a lower bound
            continue
        result.files.append(rel)
    result.skipped["outside"] += len(escaping)
    result.files.sort()
    return result


def read_source(
    root: Path, rel: str, max_bytes: int, *, vetted: bool = False
) -> tuple[str | None, str | None]:
    """(text, None) or (None, reason) for one workspace file, re-checking the path rules that
    the file system may have changed since the scan (a file replaced by a symlink). ``vetted``
    skips the generated-code check (the file passed it when it was indexed)."""
    if is_secret(rel):
        return None, "secret"
    path = root / rel
    try:
        if not path.is_file():
            return None, "missing"
        real = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None, "unreadable"
    if real != path.absolute():
        # A symlink (or a path through one): the rules apply to the file it really is.
        real_root = root.resolve()
        if not real.is_relative_to(real_root):
            return None, "outside"
        target = real.relative_to(real_root).as_posix()
        if is_secret(target):
            return None, "secret"
        if ignored(real_root, target):
            return None, "ignored"
    text, reason = read_text_file(path, max_bytes)
    if text is None:
        return None, reason
    if not vetted and quality_problem(text) == "generated":
        return None, "generated"
    return text, None


def stat_key(root: Path, rel: str) -> tuple[int, int] | None:
    """(mtime_ns, size) of a file, or None when it is gone or unreadable."""
    try:
        st = os.stat(root / rel)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
