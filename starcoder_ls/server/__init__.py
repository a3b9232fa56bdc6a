"""The LSP layer: the only place that imports pygls and lsprotocol.

``create_server`` wires the handlers of the sibling modules onto one :class:`StarcoderServer`;
``serve`` runs it on stdio (what editors launch) or TCP.
"""

from __future__ import annotations

import logging
import re

from starcoder_ls.settings import Settings

log = logging.getLogger(__name__)


def create_server(settings: Settings | None = None) -> object:
    from starcoder_ls.server import commands, inline, lifecycle, llmls, workspace
    from starcoder_ls.server.app import StarcoderServer

    server = StarcoderServer(settings)
    lifecycle.register(server)
    inline.register(server)
    llmls.register(server)
    commands.register(server)
    workspace.register(server)
    return server


def serve(settings: Settings | None = None, *, tcp: str | None = None) -> int:
    server = create_server(settings)
    if tcp:
        host, _, port = tcp.rpartition(":")
        if not port.isdigit():
            raise ValueError(f"--tcp expects HOST:PORT, got {tcp!r}")
        server.start_tcp(host or "127.0.0.1", int(port))  # type: ignore[attr-defined]
    else:
        server.start_io()  # type: ignore[attr-defined]
    return 0


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
    """Mask anything that looks like an API key or token."""
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


def setup_logging(level: str = "WARNING", log_file: str | None = None) -> None:
    """Log to a file or stderr (never stdout: that is the LSP channel)."""
    handler: logging.Handler = (
        logging.FileHandler(log_file, encoding="utf-8") if log_file else logging.StreamHandler()
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
