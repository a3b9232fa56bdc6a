"""Keys out of logs and messages: patterns for what looks like a key, and the exact values of
the keys this process holds.

Patterns catch keys by their shape (``Authorization: Bearer ...``, ``api_key=...``, ``hf_...``,
``sk-...``); a key of any shape that this process read (a backend's API key from its
environment variable) is also registered with :func:`register_secret`, and then masked
wherever it appears, in any of the forms an error message may quote it in: as is, escaped by
``repr`` or JSON (a trailing newline becomes ``\\n``), or as the ``repr`` of bytes.
"""

from __future__ import annotations

import json
import logging
import re
import threading

_KNOWN: set[str] = set()
_KNOWN_LOCK = threading.Lock()
_known_sorted: tuple[str, ...] = ()
MIN_SECRET_CHARS = 8
"""Shorter values are not registered: masking them would mangle ordinary text."""


def register_secret(value: str | None) -> None:
    """Mask ``value`` (and its escaped forms) in every later log line and message."""
    global _known_sorted
    if not value:
        return
    forms = {value, value.strip()}
    forms |= {repr(v)[1:-1] for v in list(forms)}
    forms |= {json.dumps(v)[1:-1] for v in list(forms)}
    forms |= {repr(v.encode("utf-8"))[2:-1] for v in (value, value.strip())}
    forms = {f for f in forms if len(f) >= MIN_SECRET_CHARS}
    with _KNOWN_LOCK:
        if forms <= _KNOWN:
            return
        _KNOWN.update(forms)
        _known_sorted = tuple(sorted(_KNOWN, key=len, reverse=True))


_SECRET_PATTERNS = (
    # apiToken / api_key / authorization values in dicts, JSON or namedtuple reprs
    re.compile(
        r"""(?i)((?:api[_-]?token|api[_-]?key|authorization|access[_-]?token)['"]?\s*[:=]\s*['"]?)"""
        r"""(?:(?:Bearer|Basic|Token)\s+)?[^'",)\s}]+"""
    ),
    # Token-length values only, so prose ("the bearer of ...") and package names
    # (hf_transfer, sk-learn-...) stay readable; real keys are far longer and carry digits.
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{12,}"),
    re.compile(r"\b(hf_)[A-Za-z0-9]{20,}"),
    re.compile(r"\b(sk-)(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{20,}"),
)


def redact(text: str) -> str:
    """Mask the keys this process holds, and anything that looks like an API key or token."""
    for known in _known_sorted:
        if known in text:
            text = text.replace(known, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


class RedactingFilter(logging.Filter):
    """Keeps API keys out of every log line, whichever library writes it (pygls logs params)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        # A traceback is formatted after the filters run: format it here (the formatter reuses
        # exc_text) so an exception message carrying a key is masked as well.
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
