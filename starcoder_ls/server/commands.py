"""workspace/executeCommand commands.

* ``starcoder.accept`` (request id): an inline item was accepted. Inline items carry it as
  their ``command``, which LSP clients run on accept.
* ``starcoder.reject`` (request id): an item was dismissed (editors that can tell us).
* ``starcoder.stats``: the local acceptance statistics (never sent anywhere).
* ``starcoder.status``: backend, model, settings in force (no secrets) and whether the backend
  answers, for "why don't I get completions?".
"""

from __future__ import annotations

from typing import Any

from starcoder_ls import __version__
from starcoder_ls.server.app import StarcoderServer
from starcoder_ls.server.inline import ACCEPT_COMMAND

REJECT_COMMAND = "starcoder.reject"
STATS_COMMAND = "starcoder.stats"
STATUS_COMMAND = "starcoder.status"


def _request_id(args: Any) -> str | None:
    if isinstance(args, (list, tuple)) and args and isinstance(args[0], str):
        return args[0]
    return None


def register(server: StarcoderServer) -> None:
    @server.command(ACCEPT_COMMAND)
    def accept(ls: StarcoderServer, *args: Any) -> bool:
        rid = _request_id(args[0] if len(args) == 1 and isinstance(args[0], list) else args)
        return ls.stats.accepted(rid) if rid else False

    @server.command(REJECT_COMMAND)
    def reject(ls: StarcoderServer, *args: Any) -> bool:
        rid = _request_id(args[0] if len(args) == 1 and isinstance(args[0], list) else args)
        return ls.stats.rejected(rid) if rid else False

    @server.command(STATS_COMMAND)
    def stats(ls: StarcoderServer, *args: Any) -> dict[str, Any]:
        return ls.stats.summary()

    @server.command(STATUS_COMMAND)
    def status(ls: StarcoderServer, *args: Any) -> dict[str, Any]:
        settings = ls.settings.to_json()
        return {
            "version": __version__,
            "backend": ls.settings.backend,
            "model": ls.engine._model_name() or "bundled",
            "backend_ok": ls.backend_ok,
            "position_encoding": ls.encoding.value,
            "inline_completion_client": ls.inline_supported,
            "settings": settings,
        }
