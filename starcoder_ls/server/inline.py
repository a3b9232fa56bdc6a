"""textDocument/inlineCompletion (LSP 3.18) and the textDocument/completion fallback."""

from __future__ import annotations

import logging

from lsprotocol import types as lsp

from starcoder_ls.server.app import Outcome, StarcoderServer

log = logging.getLogger(__name__)

ACCEPT_COMMAND = "starcoder.accept"


def _item_range(ls: StarcoderServer, out: Outcome) -> lsp.Range:
    c = out.completion
    start = ls.lsp_position(out.uri, c.line, c.character)
    end_char = c.replace_end_character if c.replace_end_character is not None else c.character
    end = ls.lsp_position(out.uri, c.line, end_char)
    return lsp.Range(start=start, end=end)


def _item(text: str, rng: lsp.Range, request_id: str) -> lsp.InlineCompletionList:
    """One inline item; its command tells us when the user accepts it."""
    command = lsp.Command(title="accept", command=ACCEPT_COMMAND, arguments=[request_id])
    return lsp.InlineCompletionList(
        items=[lsp.InlineCompletionItem(insert_text=text, range=rng, command=command)]
    )


def _record_shown(ls: StarcoderServer, out: Outcome) -> None:
    if ls.settings.stats:
        ls.stats.shown(out.completion.request_id, out.language_id, out.completion.text)


async def _with_selected_item(
    ls: StarcoderServer, params: lsp.InlineCompletionParams, invoked: bool
) -> lsp.InlineCompletionList | None:
    """VS Code's suggest widget is open: complete as if its selected item were inserted, and
    return an item that starts with that text (VS Code shows nothing otherwise)."""
    info = params.context.selected_completion_info
    assert info is not None
    doc = ls.documents.get(params.text_document.uri)
    if doc is None:
        return None
    r = info.range
    start = doc.offset_at(r.start.line, r.start.character)
    # Complete on a scratch copy of the document with the item applied.
    scratch = doc.copy()
    scratch.apply_change(
        info.text, ((r.start.line, r.start.character), (r.end.line, r.end.character))
    )
    line, char = scratch.position_at(start + len(info.text))
    out = await ls.run_completion_on(scratch, line, char, invoked=invoked, live=doc)
    if out is None:
        return None
    _record_shown(ls, out)
    return _item(info.text + out.completion.text, r, out.completion.request_id)


def register(server: StarcoderServer) -> None:
    @server.feature(
        lsp.TEXT_DOCUMENT_INLINE_COMPLETION,
        lsp.InlineCompletionOptions(),
    )
    async def inline_completion(
        ls: StarcoderServer, params: lsp.InlineCompletionParams
    ) -> lsp.InlineCompletionList | None:
        invoked = params.context.trigger_kind == lsp.InlineCompletionTriggerKind.Invoked
        if params.context.selected_completion_info is not None:
            return await _with_selected_item(ls, params, invoked)
        p = params.position
        out = await ls.run_completion(
            params.text_document.uri, p.line, p.character, invoked=invoked
        )
        if out is None:
            return lsp.InlineCompletionList(items=[])
        _record_shown(ls, out)
        return _item(out.completion.text, _item_range(ls, out), out.completion.request_id)


def register_completion_fallback(server: StarcoderServer) -> None:
    """One completion item with a textEdit, for editors without inline completion."""

    @server.feature(
        lsp.TEXT_DOCUMENT_COMPLETION,
        lsp.CompletionOptions(trigger_characters=[".", "(", " ", "\n"]),
    )
    async def completion(
        ls: StarcoderServer, params: lsp.CompletionParams
    ) -> lsp.CompletionList | None:
        invoked = bool(
            params.context and params.context.trigger_kind == lsp.CompletionTriggerKind.Invoked
        )
        p = params.position
        out = await ls.run_completion(
            params.text_document.uri, p.line, p.character, invoked=invoked
        )
        if out is None:
            return lsp.CompletionList(is_incomplete=True, items=[])
        c = out.completion
        doc = ls.documents.get(out.uri)
        line_text = doc.line_text(c.line) if doc is not None else ""
        # Editors filter items by the word before the cursor: start the edit at that word so the
        # item survives the filter, and re-insert the word in front of the completion.
        word_start = c.character
        while word_start > 0 and (
            line_text[word_start - 1].isalnum() or line_text[word_start - 1] == "_"
        ):
            word_start -= 1
        word = line_text[word_start : c.character]
        rng = _item_range(ls, out)
        rng = lsp.Range(start=ls.lsp_position(out.uri, c.line, word_start), end=rng.end)
        first = c.text.split("\n", 1)[0].strip() or c.text.strip()
        label = (word + first)[:60] or "starcoder"
        item = lsp.CompletionItem(
            label=label,
            kind=lsp.CompletionItemKind.Snippet,
            detail="starcoder-ls",
            documentation=word + c.text,  # plain text: every client can show it
            filter_text=word + c.text,
            sort_text="0",
            preselect=True,
            insert_text_format=lsp.InsertTextFormat.PlainText,
            text_edit=lsp.TextEdit(range=rng, new_text=word + c.text),
            command=lsp.Command(title="accept", command=ACCEPT_COMMAND, arguments=[c.request_id]),
        )
        _record_shown(ls, out)
        return lsp.CompletionList(is_incomplete=True, items=[item])
