"""The LSP layer: the only place that imports pygls and lsprotocol.

``create_server`` wires the handlers of the sibling modules onto one :class:`StarcoderServer`;
``serve`` runs it on stdio (what editors launch) or TCP.
"""

from __future__ import annotations

import logging

from starcoder_ls.scrub import RedactingFilter, redact, register_secret
from starcoder_ls.settings import Settings

__all__ = [
    "RedactingFilter",
    "create_server",
    "redact",
    "register_secret",
    "serve",
    "setup_logging",
]

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
