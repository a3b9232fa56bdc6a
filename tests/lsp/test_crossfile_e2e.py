"""Cross-file context through the real server: background indexing with progress, a definition
from another file in the prompt, and updates from edits, saves and file watching."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from lsp_helpers import inline_at, inline_caps, open_doc
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

PRICING = '''\
def apply_discount(amount: float, code: str) -> float:
    """Price after a discount code."""
    return amount * RATES.get(code, 1.0)
'''
MAIN = "from shop.pricing import apply_discount\n\n\ndef checkout(total, code):\n    return \n"
# The fake model answers with a function name only when the prompt shows that function's
# definition: a completion that uses cross-file context, or none.
PICK = r"def%20(apply_%5Cw%2B)%5C("


def _repo(root: Path, *, pricing: bool = True) -> Path:
    (root / "shop").mkdir(parents=True)
    (root / "app").mkdir()
    (root / "shop" / "__init__.py").write_text("")
    if pricing:
        (root / "shop" / "pricing.py").write_text(PRICING)
    (root / "app" / "main.py").write_text(MAIN)
    (root / ".env").write_text("SECRET_TOKEN=planted-e2e-secret\n")
    return root


def _calls(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


async def _start(client: LanguageClient, root: Path, log: Path) -> list[lsp.Registration]:
    registered: list[lsp.Registration] = []

    @client.feature(lsp.CLIENT_REGISTER_CAPABILITY)
    def register(params: lsp.RegistrationParams) -> None:
        registered.extend(params.registrations)

    caps = inline_caps()
    caps.window = lsp.WindowClientCapabilities(work_done_progress=True)
    caps.workspace = lsp.WorkspaceClientCapabilities(
        did_change_watched_files=lsp.DidChangeWatchedFilesClientCapabilities(
            dynamic_registration=True
        )
    )
    await client.initialize_session(
        lsp.InitializeParams(
            capabilities=caps,
            initialization_options={
                "backend": "test",
                "model": f"test:log={log}&pick={PICK}",
                "debounceMs": 0,
                "cache": {"enabled": False},
            },
            workspace_folders=[lsp.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
        )
    )
    return registered


async def _complete_until(client: LanguageClient, uri: str, line: int, col: int, want: str) -> str:
    """Ask until the answer is ``want`` (indexing runs in the background), at most ~10 s."""
    text = ""
    for _ in range(100):
        result = await inline_at(client, uri, line, col)
        text = result.items[0].insert_text if result and result.items else ""
        if text == want:
            return text
        await asyncio.sleep(0.1)
    return text


async def test_definition_from_another_file_reaches_the_prompt(
    client: LanguageClient, tmp_path: Path
) -> None:
    root = _repo(tmp_path / "shop-app")
    log = tmp_path / "backend.jsonl"
    await _start(client, root, log)
    uri = open_doc(client, root / "app" / "main.py", MAIN)
    assert await _complete_until(client, uri, 4, 11, "apply_discount") == "apply_discount"
    last = _calls(log)[-1]
    assert ["import", "shop/pricing.py"] in last["segments"]
    # What the model saw, as an editor's "show the last prompt" gets it.
    shown = await client.workspace_execute_command_async(
        lsp.ExecuteCommandParams(command="starcoder.lastPrompt", arguments=[uri])
    )
    assert "def apply_discount(amount: float, code: str) -> float:" in shown["text"]
    assert {"kind": "import", "path": "shop/pricing.py"}.items() <= shown["segments"][0].items()
    # Indexing reported its progress: a begin and (once the build is done) an end.
    kinds: list[str | None] = []
    for _ in range(100):
        kinds = [getattr(v, "kind", None) for r in client.progress_reports.values() for v in r]
        if "end" in kinds:
            break
        await asyncio.sleep(0.1)
    assert "begin" in kinds and "end" in kinds


async def test_new_file_on_disk_and_edits_in_open_documents_are_indexed(
    client: LanguageClient, tmp_path: Path
) -> None:
    root = _repo(tmp_path / "shop-app", pricing=False)
    log = tmp_path / "backend.jsonl"
    registered = await _start(client, root, log)
    # A module written after start-up, announced by the client's file watcher.
    (root / "shop" / "extra.py").write_text(
        "def apply_coupon(amount, coupon):\n    return amount\n"
    )
    client.workspace_did_change_watched_files(
        lsp.DidChangeWatchedFilesParams(
            changes=[
                lsp.FileEvent(
                    uri=(root / "shop" / "extra.py").as_uri(), type=lsp.FileChangeType.Created
                )
            ]
        )
    )
    main = "from shop.extra import apply_coupon\n\n\ndef pay(amount, c):\n    return \n"
    uri = open_doc(client, root / "app" / "pay.py", main)
    assert await _complete_until(client, uri, 4, 11, "apply_coupon") == "apply_coupon"
    # An unsaved edit in another open document is used too (after a short quiet time).
    other = open_doc(client, root / "shop" / "extra.py", (root / "shop" / "extra.py").read_text())
    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=other, version=2),
            content_changes=[
                lsp.TextDocumentContentChangePartial(
                    range=lsp.Range(
                        start=lsp.Position(line=0, character=4),
                        end=lsp.Position(line=0, character=16),
                    ),
                    text="apply_voucher",
                )
            ],
        )
    )
    # (A new line: the same line prefix would be answered by forward-typing reuse.)
    edited = main.replace("apply_coupon", "apply_voucher").replace("return ", "total = ")
    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[lsp.TextDocumentContentChangeWholeDocument(text=edited)],
        )
    )
    got = await _complete_until(client, uri, 4, 12, "apply_voucher")
    assert got == "apply_voucher", _calls(log)[-1]
    prompts = "".join(json.dumps(c) for c in _calls(log))
    assert "planted-e2e-secret" not in prompts
    assert [r.method for r in registered] == ["workspace/didChangeWatchedFiles"]
