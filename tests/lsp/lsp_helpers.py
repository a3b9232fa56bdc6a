"""Helpers shared by the end-to-end LSP tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pytest_lsp import LanguageClient


def inline_caps(
    *, encodings: list[str] | None = None, inline: bool = True, pull_config: bool = False
) -> Any:
    return lsp.ClientCapabilities(
        workspace=lsp.WorkspaceClientCapabilities(configuration=True) if pull_config else None,
        general=lsp.GeneralClientCapabilities(position_encodings=encodings) if encodings else None,
        text_document=lsp.TextDocumentClientCapabilities(
            inline_completion=lsp.InlineCompletionClientCapabilities() if inline else None,
            completion=lsp.CompletionClientCapabilities(),
            synchronization=lsp.TextDocumentSyncClientCapabilities(),
        ),
        window=lsp.WindowClientCapabilities(
            show_message=lsp.ShowMessageRequestClientCapabilities()
        ),
    )


async def start(
    client: LanguageClient,
    options: dict[str, Any] | None = None,
    *,
    root: Path | None = None,
    encodings: list[str] | None = None,
    inline: bool = True,
    pull_config: bool = False,
) -> lsp.InitializeResult:
    return await client.initialize_session(
        lsp.InitializeParams(
            capabilities=inline_caps(encodings=encodings, inline=inline, pull_config=pull_config),
            initialization_options=options or {},
            root_uri=root.as_uri() if root else None,
        )
    )


def open_doc(
    client: LanguageClient, path: Path, text: str, language: str = "python", version: int = 1
) -> str:
    uri = path.as_uri()
    client.text_document_did_open(
        lsp.DidOpenTextDocumentParams(
            text_document=lsp.TextDocumentItem(
                uri=uri, language_id=language, version=version, text=text
            )
        )
    )
    return uri


async def inline_at(
    client: LanguageClient, uri: str, line: int, character: int, *, invoked: bool = True
) -> lsp.InlineCompletionList | None:
    kind = (
        lsp.InlineCompletionTriggerKind.Invoked
        if invoked
        else lsp.InlineCompletionTriggerKind.Automatic
    )
    result = await client.text_document_inline_completion_async(
        lsp.InlineCompletionParams(
            text_document=lsp.TextDocumentIdentifier(uri=uri),
            position=lsp.Position(line=line, character=character),
            context=lsp.InlineCompletionContext(trigger_kind=kind),
        )
    )
    assert result is None or isinstance(result, lsp.InlineCompletionList), result
    return result


def backend_calls(log: Path) -> list[dict[str, Any]]:
    if not log.is_file():
        return []
    return [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
