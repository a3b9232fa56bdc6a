"""llm-ls compatible methods, so llm.nvim, llm-vscode and llm-intellij work unchanged with their
server path set to ``starcoder-ls``.

Shapes follow llm-ls's ``custom-types`` crate: params in camelCase (``textDocument``,
``position``, ``requestId``, ``acceptedCompletion``, ``shownCompletions``, ``tokensToClear``,
``contextWindow``, ...), the result in snake_case: ``{"request_id": ..., "completions":
[{"generated_text": ...}]}``.

The model, backend, URL and API token those clients send are NOT used: starcoder-ls completes
with its own configuration (the default offline model unless configured otherwise), so nothing
leaves the machine because a client plugin defaults to a hosted API. ``contextWindow`` caps the
prompt budget and ``tokensToClear`` is removed from the answer, as llm-ls does.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from pygls.exceptions import JsonRpcInvalidParams

from starcoder_ls.server.app import StarcoderServer
from starcoder_ls.server.lifecycle import _plain

log = logging.getLogger(__name__)

GET_COMPLETIONS = "llm-ls/getCompletions"
ACCEPT_COMPLETION = "llm-ls/acceptCompletion"
REJECT_COMPLETION = "llm-ls/rejectCompletion"


def _position(params: dict[str, Any]) -> tuple[str, int, int]:
    try:
        uri = params["textDocument"]["uri"]
        line = int(params["position"]["line"])
        character = int(params["position"]["character"])
    except (KeyError, TypeError, ValueError) as exc:
        raise JsonRpcInvalidParams(
            "llm-ls/getCompletions needs textDocument.uri and position.{line,character}"
        ) from exc
    if not isinstance(uri, str) or line < 0 or character < 0:
        raise JsonRpcInvalidParams("invalid textDocument.uri or position")
    return uri, line, character


def register(server: StarcoderServer) -> None:
    @server.feature(GET_COMPLETIONS)
    async def get_completions(ls: StarcoderServer, raw: Any) -> dict[str, Any]:
        params = _plain(raw)
        if not isinstance(params, dict):
            raise JsonRpcInvalidParams("llm-ls/getCompletions params must be an object")
        uri, line, character = _position(params)
        request_id = str(uuid.uuid4())
        window = params.get("contextWindow")
        budget = window if isinstance(window, int) and window >= 64 else None
        # llm.nvim and llm-vscode debounce on their side and ask when they mean it.
        out = await ls.run_completion(uri, line, character, invoked=True, context_tokens=budget)
        if out is None:
            return {"request_id": request_id, "completions": []}
        text = out.completion.text
        for token in params.get("tokensToClear") or []:
            if isinstance(token, str) and token:
                text = text.replace(token, "")
        if ls.settings.stats:
            ls.stats.shown(request_id, out.language_id, text)
        return {"request_id": request_id, "completions": [{"generated_text": text}]}

    @server.feature(ACCEPT_COMPLETION)
    def accept_completion(ls: StarcoderServer, raw: Any) -> None:
        ls.stats.accepted(_request_id(raw, ACCEPT_COMPLETION))

    @server.feature(REJECT_COMPLETION)
    def reject_completion(ls: StarcoderServer, raw: Any) -> None:
        ls.stats.rejected(_request_id(raw, REJECT_COMPLETION))


def _request_id(raw: Any, method: str) -> str:
    params = _plain(raw)
    request_id = params.get("requestId") if isinstance(params, dict) else None
    if not isinstance(request_id, str):
        raise JsonRpcInvalidParams(f"{method} needs requestId")
    return request_id
