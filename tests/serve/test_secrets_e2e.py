"""No secret reaches a remote backend: the real language server over stdio, a workspace with 25
kinds of planted credentials along every road into a prompt (in-file near the cursor and 1,200
lines away, import outlines, similar-code windows, the recent-edits ring), secret files and
symlinks to them, and a loopback TGI server that records every request."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pytest_lsp import ClientServerConfig, LanguageClient
from remote_fixtures import FakeRemote
from secret_corpus import ORDINARY_LINES, Scenario, carried, exposed, leaks, located, plant

STATE_DIR = Path(tempfile.gettempdir()) / f"starcoder-ls-secrets-e2e-{os.getpid()}"
LSP_ENV = {
    **{k: v for k, v in os.environ.items() if k.lower() not in {"http_proxy", "https_proxy"}},
    "STARCODER_LS_STATE_DIR": str(STATE_DIR),
    "XDG_CACHE_HOME": str(STATE_DIR / "cache"),
}


@pytest_lsp.fixture(
    config=ClientServerConfig(
        server_command=[sys.executable, "-m", "starcoder_ls", "--log-level", "WARNING"],
        server_env=LSP_ENV,
    ),
)
async def client(lsp_client: LanguageClient) -> AsyncIterator[None]:
    yield
    await lsp_client.shutdown_session()


# Keys as careless environments hold them: a trailing newline (`export KEY=$(cat file)`), shell
# and URL characters, and one that is not a key at all (a line break inside).
NEWLINE_KEY = "hf_Zq9xT4kLmN2pQ8rS5vW1yB6cD3fG7hJ0\n"
ODD_KEY = "hf_Ab$c!d:Ef9$Gh!Ij:Kl7Mn$Op!Qr:St"
BROKEN_KEY = "hf_Uv8wXy\nZa7bCd6eFg5hIj4kLm3nOp"
DEBUG_LOG = STATE_DIR / "debug.log"


@pytest_lsp.fixture(
    config=ClientServerConfig(
        server_command=[
            sys.executable,
            "-m",
            "starcoder_ls",
            "--log-level",
            "DEBUG",
            "--log-file",
            str(DEBUG_LOG),
        ],
        server_env={
            **LSP_ENV,
            "SCLS_NEWLINE_KEY": NEWLINE_KEY,
            "SCLS_ODD_KEY": ODD_KEY,
            "SCLS_BROKEN_KEY": BROKEN_KEY,
        },
    ),
)
async def debug_client(lsp_client: LanguageClient) -> AsyncIterator[None]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    yield
    await lsp_client.shutdown_session()


@pytest.fixture
def remote() -> Iterator[FakeRemote]:
    server = FakeRemote()
    yield server
    server.close()


async def start(client: LanguageClient, root: Path, options: dict[str, Any]) -> None:
    await client.initialize_session(
        lsp.InitializeParams(
            capabilities=lsp.ClientCapabilities(
                text_document=lsp.TextDocumentClientCapabilities(
                    inline_completion=lsp.InlineCompletionClientCapabilities(),
                    synchronization=lsp.TextDocumentSyncClientCapabilities(),
                )
            ),
            initialization_options=options,
            workspace_folders=[lsp.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
        )
    )


def open_doc(client: LanguageClient, path: Path, text: str, language: str = "python") -> str:
    client.text_document_did_open(
        lsp.DidOpenTextDocumentParams(
            text_document=lsp.TextDocumentItem(
                uri=path.as_uri(), language_id=language, version=1, text=text
            )
        )
    )
    return path.as_uri()


async def invoke(client: LanguageClient, uri: str, line: int, character: int) -> Any:
    return await client.text_document_inline_completion_async(
        lsp.InlineCompletionParams(
            text_document=lsp.TextDocumentIdentifier(uri=uri),
            position=lsp.Position(line=line, character=character),
            context=lsp.InlineCompletionContext(
                trigger_kind=lsp.InlineCompletionTriggerKind.Invoked
            ),
        )
    )


async def last_prompt(client: LanguageClient, uri: str) -> dict[str, Any]:
    return await client.workspace_execute_command_async(  # type: ignore[no-any-return]
        lsp.ExecuteCommandParams(command="starcoder.lastPrompt", arguments=[uri])
    )


def edit(client: LanguageClient, uri: str, line: int, text: str, version: int) -> None:
    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                lsp.TextDocumentContentChangePartial(
                    range=lsp.Range(
                        start=lsp.Position(line=line, character=0),
                        end=lsp.Position(line=line, character=0),
                    ),
                    text=text,
                )
            ],
        )
    )


async def run_scenario(
    client: LanguageClient, remote: FakeRemote, scenario: Scenario, options: dict[str, Any]
) -> dict[str, Any]:
    """Complete at the scenario's cursors until the prompt carries context from every road
    (imports, similar code, recent edits); returns what the backend received and the roads."""
    await start(client, scenario.root, options)
    edited = open_doc(client, scenario.edited_file, scenario.edited_text)
    edit(client, edited, scenario.edit_line, "# rotate these\n", 2)
    uri = open_doc(client, scenario.cursor_file, scenario.cursor_text)
    kinds: set[str] = set()
    for _ in range(100):  # the index builds in the background
        for line, col in scenario.cursors:
            await invoke(client, uri, line, col)
        shown = await last_prompt(client, uri)
        kinds = {seg["kind"] for seg in shown.get("segments", [])}
        if {"import", "similar", "recent"} <= kinds:
            break
        await asyncio.sleep(0.1)
    sent = [
        json.dumps(seen.body, ensure_ascii=False) + "\n" + str(seen.body.get("inputs", ""))
        for seen in remote.seen
        if seen.path == "/generate"
    ]
    return {"sent": sent, "kinds": kinds, "shown": shown}


TGI = {
    "backend": "tgi",
    "debounceMs": 0,
    "cache": {"enabled": False},
    "contextTokens": 4096,
    "crossFileTokens": 2048,
}


async def test_no_planted_secret_reaches_a_remote_backend(
    client: LanguageClient, remote: FakeRemote, tmp_path: Path
) -> None:
    scenario = plant(tmp_path / "ws")
    result = await run_scenario(client, remote, scenario, {**TGI, "url": remote.url})
    assert {"import", "similar", "recent"} <= result["kinds"], result["kinds"]
    assert result["sent"], "the backend was never asked"
    text = "\n".join(result["sent"])
    assert leaks(text, scenario.planted) == []
    # ... while every kind's line did reach it (masked): each one was put to the test.
    missing = {p.kind for p in scenario.planted} - set(exposed(text, scenario.planted))
    assert not missing, missing
    # Every road into the prompt carried some of them.
    roads = carried(result["shown"]["segments"], located(scenario.root, scenario.planted))
    assert all(roads.get(kind) for kind in ("import", "similar", "recent")), roads
    assert "<REDACTED>" in text
    # What names credentials without holding one goes out as written.
    assert all(line in text for line in ORDINARY_LINES if line in scenario.cursor_text[-4000:])
    assert "api_key: str" in text


async def test_secret_files_and_links_to_them_are_never_read_or_completed(
    client: LanguageClient, remote: FakeRemote, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    (root / "ignored").mkdir(parents=True)
    subprocess_git(root)
    env_secret = "sk-proj-" + "Zq9xT4kLmN2pQ8rS5vW1yB6cD3fG7hJ0aB" * 2
    (root / ".env").write_text(f"OPENAI_API_KEY={env_secret}\n")
    (root / "settings_local.py").symlink_to(".env")
    (root / ".gitignore").write_text("ignored/\n")
    (root / "ignored" / "cfg.py").write_text(
        'IGNORED_MARKER = "only-in-an-ignored-file"\n\n\ndef helper_cfg():\n    return 1\n'
    )
    (root / "ign.py").symlink_to("ignored/cfg.py")
    app = (
        "import settings_local\nimport ign\nfrom settings_local import OPENAI_API_KEY\n"
        "from ign import helper_cfg\n\n\ndef main():\n    key = settings_local.OPENAI_API_KEY\n"
        "    cfg = ign.helper_cfg()\n    return key, cfg\n\n\ndef run():\n    \n"
    )
    (root / "app.py").write_text(app)
    # Local backend for the context checks: what is read does not depend on redaction.
    await start(client, root, {**TGI, "url": remote.url})
    uri = open_doc(client, root / "app.py", app)
    for _ in range(30):
        await invoke(client, uri, 13, 4)
        await asyncio.sleep(0.1)
    sent = "\n".join(json.dumps(s.body) for s in remote.seen)
    assert sent, "the backend was never asked"
    assert "Zq9xT4kLmN2pQ8rS5vW1yB6cD3fG7hJ0aB" not in sent
    assert "only-in-an-ignored-file" not in sent
    before = len(remote.seen)
    # Completing inside the secret files themselves (and a link to one): no request at all.
    for name, text, language in (
        (".env", f"OPENAI_API_KEY={env_secret}\nOTHER=", "dotenv"),
        ("id_rsa", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA\n", "plaintext"),
        ("secrets.yaml", "db:\n  password: hunter2hunter2\n  user: ", "yaml"),
        ("settings_local.py", f"OPENAI_API_KEY={env_secret}\n", "python"),
    ):
        doc = open_doc(client, root / name, text, language)
        result = await invoke(client, doc, 1, 0)
        assert result is None or not result.items, name
    assert len(remote.seen) == before


def subprocess_git(root: Path) -> None:
    import subprocess

    subprocess.run(["git", "init", "-q", str(root)], check=True)


async def test_backend_keys_never_reach_the_editor_or_the_debug_log(
    debug_client: LanguageClient, remote: FakeRemote, tmp_path: Path
) -> None:
    client = debug_client
    url = remote.url + "/models/bigcode/starcoder"
    options = {**TGI, "backend": "huggingface", "url": url, "apiKeyEnv": "SCLS_NEWLINE_KEY"}
    await start(client, tmp_path, options)
    path = tmp_path / "calc.py"
    path.write_text("def add(a, b):\n    \n")
    uri = open_doc(client, path, path.read_text())
    assert (await invoke(client, uri, 1, 4)).items  # the newline is not part of the key
    assert remote.seen[-1].headers["authorization"] == "Bearer " + NEWLINE_KEY.strip()
    for env, answered in (("SCLS_ODD_KEY", True), ("SCLS_BROKEN_KEY", False)):
        client.workspace_did_change_configuration(
            lsp.DidChangeConfigurationParams(settings={"starcoder": {**options, "apiKeyEnv": env}})
        )
        await asyncio.sleep(0.2)
        result = await invoke(client, uri, 1, 4)
        assert bool(result and result.items) == answered, env
    assert remote.seen[-1].headers["authorization"] == "Bearer " + ODD_KEY
    said = [m.message for m in client.messages] + [m.message for m in client.log_messages]
    assert any("SCLS_BROKEN_KEY contains spaces, line breaks" in m for m in said), said
    log = DEBUG_LOG.read_text()  # written line by line
    assert "DEBUG" in log
    for key in (NEWLINE_KEY, ODD_KEY, BROKEN_KEY):
        for piece in {key.strip(), *key.strip().split("\n"), key.strip()[3:15]}:
            assert piece not in log, piece
            assert not any(piece in m for m in said), piece
