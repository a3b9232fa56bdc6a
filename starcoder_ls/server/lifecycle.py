"""initialize / initialized / configuration / shutdown, and the document sync notifications."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp

from starcoder_ls.server.app import StarcoderServer
from starcoder_ls.types import BackendError

log = logging.getLogger(__name__)


def _roots(params: lsp.InitializeParams) -> list[Path]:
    """The workspace folders (or the single root of older clients)."""
    from starcoder_ls.context.workspaces import uri_to_path

    if params.workspace_folders:
        uris = [f.uri for f in params.workspace_folders]
    elif params.root_uri:
        uris = [params.root_uri]
    elif params.root_path:
        return [Path(params.root_path)]
    else:
        return []
    return [p for uri in uris if uri.startswith("file://") and (p := uri_to_path(uri))]


def _plain(value: Any) -> Any:
    """pygls hands unknown objects over as namedtuples; settings want plain dicts."""
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def register(server: StarcoderServer) -> None:
    @server.feature(lsp.INITIALIZE)
    def initialize(ls: StarcoderServer, params: lsp.InitializeParams) -> None:
        ls.init_params = params
        ls.roots = _roots(params)
        ls.root = ls.roots[0] if ls.roots else None
        ls.set_encoding(ls.workspace.position_encoding)
        caps = params.capabilities.text_document
        ls.inline_supported = bool(caps and caps.inline_completion is not None)
        ws = params.capabilities.workspace
        ls.client_pulls_configuration = bool(ws and ws.configuration)
        ls.apply_settings(_plain(params.initialization_options), base=ls.cli_settings)
        from starcoder_ls.server.inline import register_completion_fallback

        if ls.settings.completion_fallback == "on" or (
            ls.settings.completion_fallback == "auto" and not ls.inline_supported
        ):
            register_completion_fallback(ls)

    @server.feature(lsp.INITIALIZED)
    def initialized(ls: StarcoderServer, params: lsp.InitializedParams) -> None:
        # Load the model now, off the event loop, so the first completion does not pay for it
        # and a missing or corrupt model file is reported at start.
        def warm() -> None:
            try:
                backend = ls.engine.backend()
                if notice := getattr(backend, "notice", ""):
                    ls.show(lsp.MessageType.Warning, f"starcoder-ls: {notice}", key="notice")
            except BackendError as exc:
                ls.backend_ok = False
                once = bool(getattr(exc, "at_load", False))
                ls.show(lsp.MessageType.Error, f"starcoder-ls: {exc}", key="backend", once=once)
            except Exception as exc:  # a broken model must not take the server down
                log.exception("loading the backend failed")
                ls.show(lsp.MessageType.Error, f"starcoder-ls: cannot load the model: {exc}")

        threading.Thread(target=warm, name="starcoder-warmup", daemon=True).start()
        from starcoder_ls.server import workspace

        workspace.initialized(ls, ls.init_params)

    @server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(
        ls: StarcoderServer, params: lsp.DidChangeConfigurationParams
    ) -> None:
        raw = _plain(params.settings)
        if isinstance(raw, dict) and raw:
            ls.apply_settings(raw, base=ls.cli_settings)
            return
        # Pull model (VS Code, Neovim): the notification carries nothing; ask for our section.
        if ls.client_pulls_configuration:
            try:
                answer = await ls.workspace_configuration_async(
                    lsp.ConfigurationParams(items=[lsp.ConfigurationItem(section="starcoder")])
                )
            except Exception as exc:  # the client may refuse; keep the current settings
                log.warning("workspace/configuration failed: %s", exc)
                return
            if answer and isinstance(_plain(answer[0]), dict):
                ls.apply_settings(_plain(answer[0]), base=ls.cli_settings)

    @server.feature(lsp.SHUTDOWN)
    def shutdown(ls: StarcoderServer, *args: Any) -> None:
        ls.shutdown_engine()

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: StarcoderServer, params: lsp.DidOpenTextDocumentParams) -> None:
        d = params.text_document
        doc = ls.documents.open(d.uri, d.language_id, d.version, d.text)
        ls.workspace_support.opened(doc)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: StarcoderServer, params: lsp.DidChangeTextDocumentParams) -> None:
        doc = ls.documents.get(params.text_document.uri)
        if doc is None:
            log.warning("didChange for a document that is not open: %s", params.text_document.uri)
            return
        uri = params.text_document.uri
        for change in params.content_changes:
            if isinstance(change, lsp.TextDocumentContentChangePartial):
                r = change.range
                start, end = (r.start.line, r.start.character), (r.end.line, r.end.character)
                ls.engine.forward.edited(uri, start, end, change.text)
                doc.apply_change(change.text, (start, end))
            else:
                ls.engine.forward.edited(uri, (0, 0), None, change.text)
                doc.apply_change(change.text)
        doc.version = params.text_document.version
        first = params.content_changes[0] if params.content_changes else None
        # A whole-text change does not say where the user typed: index it, record no chunk.
        line = (
            first.range.start.line
            if isinstance(first, lsp.TextDocumentContentChangePartial)
            else None
        )
        ls.workspace_support.changed(doc, None if line is None else min(line, doc.line_count - 1))

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: StarcoderServer, params: lsp.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.documents.close(uri)
        ls.workspace_support.closed(uri)
        ls.engine.forward.forget(uri)
        ls.debouncer.forget(uri)
