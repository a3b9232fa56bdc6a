"""workspace/executeCommand commands.

* ``starcoder.accept`` (request id): an inline item was accepted. Inline items carry it as
  their ``command``, which LSP clients run on accept.
* ``starcoder.reject`` (request id): an item was dismissed (editors that can tell us).
* ``starcoder.stats``: the local acceptance statistics (never sent anywhere).
* ``starcoder.status``: backend, model, settings in force (no secrets) and whether the backend
  answers, for "why don't I get completions?".
* ``starcoder.lastPrompt`` (optional document URI): the exact prompt last sent to the model for
  that document (or for any), with its segments, so an editor can show what the model saw.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from starcoder_ls import __version__
from starcoder_ls.server.app import StarcoderServer
from starcoder_ls.server.inline import ACCEPT_COMMAND

REJECT_COMMAND = "starcoder.reject"
STATS_COMMAND = "starcoder.stats"
STATUS_COMMAND = "starcoder.status"
LAST_PROMPT_COMMAND = "starcoder.lastPrompt"


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
            "model": ls.engine._model_name() or "default",
            "backend_ok": ls.backend_ok,
            "position_encoding": ls.encoding.value,
            "inline_completion_client": ls.inline_supported,
            "worker": ls.engine.worker_status(),
            "remote": ls.engine.remote_status(),
            "usage": ls.engine.usage.as_dict(),
            "settings": settings,
        }

    @server.command(LAST_PROMPT_COMMAND)
    def last_prompt(ls: StarcoderServer, *args: Any) -> dict[str, Any] | None:
        uri = _request_id(args[0] if len(args) == 1 and isinstance(args[0], list) else args)
        prompt = ls.engine.last_prompt(uri)
        if prompt is None:
            return None
        return {
            "text": prompt.text,
            "family": prompt.family,
            "mode": prompt.mode.value,
            "tokens": prompt.tokens,
            "segments": [
                {k: v for k, v in dataclasses.asdict(seg).items() if k != "text"}
                for seg in prompt.segments
            ],
        }
