"""API keys for the team server: where they come from, and checking a request's key.

Keys come from a file (one per line; blank lines and ``#`` comments are skipped) and from the
``STARCODER_LS_API_KEYS`` environment variable (separated by commas or whitespace). The file is
read again when it changes, so a key can be added or revoked without a restart.

Only SHA-256 digests of the keys are kept in memory, and a presented key is compared with every
one of them by ``hmac.compare_digest``, never stopping at the first match: how long a check
takes says nothing about how much of a key was right, or which key matched. Keys are never
logged, and no message repeats a presented key.

Whether keys are required is decided once, at start-up. A key file that later becomes empty,
unreadable or malformed never opens the server: the last good keys stay in force, and the log
says why the file was not taken.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import stat
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

ENV_VAR = "STARCODER_LS_API_KEYS"
MIN_KEY_CHARS = 16
RELOAD_EVERY_S = 1.0
"""How often the key file's modification time is looked at, at most."""


_SECRET_PARAM = re.compile(
    r"(?i)([?&][^=&#\s]*(?:key|token|secret|passw|auth|sig|credential)[^=&#\s]*=)[^&#\s]*"
)


def redact_query(target: str) -> str:
    """A request target with the values of key-like query parameters masked (for the log)."""
    return _SECRET_PARAM.sub(r"\1***", target) if "?" in target else target


class AccessLogRedaction(logging.Filter):
    """Masks key-like query parameters (``?api_key=...``) in uvicorn's access log lines.

    Keys belong in the ``Authorization`` header, but a client that puts one in the URL must
    not get it written to a log file in clear."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        return True


class ApiKeyError(ValueError):
    """The keys cannot be used (missing file, a key too short to be secret)."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def parse_keys(text: str, where: str) -> list[str]:
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*", "", line)  # a comment: "#" at the start or after a space
        for key in re.split(r"[\s,]+", line):
            if not key:
                continue
            if len(key) < MIN_KEY_CHARS:
                raise ApiKeyError(
                    f"{where}, line {number}: a key has {len(key)} characters; use at least "
                    f"{MIN_KEY_CHARS} random ones (e.g. `openssl rand -hex 24`)"
                )
            keys.append(key)
    return keys


class ApiKeys:
    """The set of accepted keys; none at start-up means the server is open (loopback use)."""

    def __init__(self, key_file: str | Path | None = None, *, env: bool = True) -> None:
        self.path = Path(key_file).expanduser() if key_file else None
        self._env = parse_keys(os.environ.get(ENV_VAR, ""), ENV_VAR) if env else []
        self._lock = threading.Lock()
        self._checked = 0.0
        self._mtime: float | None = None
        self._digests: tuple[bytes, ...] = ()
        self._problem = ""
        self._load(first=True)
        self._required = bool(self._digests)

    @property
    def enabled(self) -> bool:
        """Whether requests need a key: fixed at start-up, whatever the file says later."""
        return self._required

    def __len__(self) -> int:
        return len(self._digests)

    def _load(self, first: bool = False) -> None:
        keys = list(self._env)
        if self.path is not None:
            try:
                info = self.path.stat()
                text = self.path.read_text(encoding="utf-8")
            except OSError as exc:
                if first:
                    raise ApiKeyError(f"cannot read the API key file {self.path}: {exc}") from exc
                self._keep(f"cannot read the API key file {self.path} ({exc})")
                return
            try:
                keys += parse_keys(text, str(self.path))
            except ApiKeyError as exc:
                if first:
                    raise
                self._mtime = info.st_mtime
                self._keep(str(exc))
                return
            if first and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                log.warning(
                    "the API key file %s can be read by other users; chmod 600 it", self.path
                )
            if not keys:
                if first:
                    raise ApiKeyError(f"the API key file {self.path} holds no key")
                # Never an open server: emptying the file is not a way to switch keys off.
                self._mtime = info.st_mtime
                self._keep(f"the API key file {self.path} now holds no key")
                return
            self._mtime = info.st_mtime
            if not first:
                log.info("API keys reloaded from %s: %d key(s)", self.path, len(keys))
        self._problem = ""
        self._digests = tuple(_digest(k) for k in keys)

    def _keep(self, why: str) -> None:
        """A reload that cannot be taken: keep the keys in force, and say so once per cause."""
        if why != self._problem:
            self._problem = why
            log.error(
                "%s; keeping the %d key(s) in force (to stop the server, stop it; an empty "
                "file never switches keys off)",
                why,
                len(self._digests),
            )

    def _maybe_reload(self) -> None:
        if self.path is None:
            return
        now = time.monotonic()
        if now - self._checked < RELOAD_EVERY_S:
            return
        with self._lock:
            self._checked = now
            try:
                mtime = self.path.stat().st_mtime
            except OSError as exc:  # gone for a moment (an editor saving it), or for good
                self._keep(f"cannot read the API key file {self.path} ({exc.strerror})")
                return
            if mtime != self._mtime:
                self._load()

    def check(self, authorization: str | None) -> str | None:
        """None when the ``Authorization`` header carries a valid key, otherwise why not."""
        if not self._required:
            return None
        self._maybe_reload()
        if not self._digests:  # cannot happen (a reload keeps the last keys); refuse if it does
            return "the server has no valid API key configured; see its log"
        if not authorization:
            return "missing API key: send the header `Authorization: Bearer <key>`"
        scheme, _, presented = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return "the Authorization header must be `Bearer <key>`"
        digest = _digest(presented.strip())
        ok = False
        for known in self._digests:
            ok |= hmac.compare_digest(digest, known)
        return None if ok else "invalid API key"
