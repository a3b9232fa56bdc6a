"""The language server survives its model: SIGKILL the worker process in the middle of a
generation, and the server answers, says why once, and completes again after the restart.

The real default model (Gemma-3-270M) runs here because its generations last long enough to be
interrupted on purpose; the bundled test model finishes in milliseconds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_lsp
from conftest import STATE_DIR
from lsp_helpers import inline_at, open_doc, start
from lsprotocol import types as lsp
from pytest_lsp import ClientServerConfig, LanguageClient
from starcoder_ls.models.packaged import DEFAULT, path_if_ready

# Greedy Gemma-3-270M writes a long indented body here (256 tokens take seconds on 2 cores):
# a generation that is still running when the worker is killed.
SOURCE = (
    "import string\n\n\ndef letter_positions():\n"
    '    """Map each lowercase letter to its position in the alphabet, written out in full."""\n'
    "    \n"
)
LINE, COL = 5, 4


def worker_pids() -> list[int]:
    """Model worker processes started (indirectly) by this test process."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    me = os.getpid()

    def descends(pid: int) -> bool:
        for _ in range(10):
            pid = parents.get(pid, 0)
            if pid == me:
                return True
            if pid <= 1:
                return False
        return False

    return [p for p, cmd in commands.items() if "worker_main" in cmd and descends(p)]


async def wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def test_sigkill_mid_generation_then_complete_again(
    client: LanguageClient, tmp_path: Path
) -> None:
    gguf = path_if_ready(DEFAULT)
    if gguf is None:
        pytest.fail(f"the default model {DEFAULT.name} is not installed (scripts/setup.sh)")
    await start(
        client,
        {"model": str(gguf), "maxTokens": 256, "debounceMs": 0, "timeoutMs": 120000},
        root=tmp_path,
    )
    src = tmp_path / "letters.py"
    uri = open_doc(client, src, SOURCE)
    await wait_for(lambda: len(worker_pids()) == 1)

    async def worker_ready() -> bool:
        status = await client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command="starcoder.status")
        )
        return bool(status.get("worker"))

    deadline = time.monotonic() + 60
    while not await worker_ready():
        assert time.monotonic() < deadline, "the model did not load"
        await asyncio.sleep(0.1)
    [pid] = worker_pids()

    request = asyncio.ensure_future(inline_at(client, uri, LINE, COL))
    await asyncio.sleep(1.0)
    assert not request.done(), "the generation ended before it could be interrupted"
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    result = await asyncio.wait_for(request, 30)
    assert result is None or not result.items
    await wait_for(lambda: any("SIGKILL" in m.message for m in client.messages), 10)
    crash = [m for m in client.messages if "SIGKILL" in m.message]
    assert len(crash) == 1 and "model worker died" in crash[0].message

    # The worker is restarted and the same completion now succeeds.
    again = await inline_at(client, uri, LINE, COL)
    assert again is not None and again.items
    assert time.monotonic() - killed_at < 60
    [new_pid] = worker_pids()
    assert new_pid != pid
    status = await client.workspace_execute_command_async(
        lsp.ExecuteCommandParams(command="starcoder.status")
    )
    assert status["backend_ok"] is True


@pytest_lsp.fixture(
    config=ClientServerConfig(
        server_command=[sys.executable, "-m", "starcoder_ls", "--log-level", "WARNING"],
        server_env={
            **os.environ,
            "STARCODER_LS_STATE_DIR": str(STATE_DIR),
            "XDG_CACHE_HOME": str(STATE_DIR / "cache"),
            "STARCODER_LS_WORKER_FAULT": "load:SIGSEGV",
        },
    ),
)
async def crashing_client(lsp_client: LanguageClient) -> AsyncIterator[None]:
    yield
    await lsp_client.shutdown_session()


async def test_a_model_that_crashes_while_loading_is_reported_once(
    crashing_client: LanguageClient, tmp_path: Path
) -> None:
    client = crashing_client
    await start(client, {"debounceMs": 0}, root=tmp_path)
    uri = open_doc(client, tmp_path / "app.py", SOURCE)
    await wait_for(lambda: any("SIGSEGV" in m.message for m in client.messages))
    for _ in range(3):  # typing on: empty answers, no new worker, no new message
        result = await inline_at(client, uri, LINE, COL)
        assert result is None or not result.items
    await asyncio.sleep(0.5)
    crashes = [m.message for m in client.messages if "SIGSEGV" in m.message]
    assert len(crashes) == 1, crashes
    assert "while loading the model" in crashes[0] and "injected fault" in crashes[0]
    assert worker_pids() == []


async def test_typing_costs_the_model_only_the_new_tokens(
    client: LanguageClient, tmp_path: Path
) -> None:
    # The bundled model in its worker, through the editor's requests: after one more character
    # the prompt starts the same way, so the model evaluates only its end (starcoder.status
    # counts what each request evaluated).
    from starcoder_ls.models import BUNDLED_GGUF

    await start(client, {"model": str(BUNDLED_GGUF), "debounceMs": 0}, root=tmp_path)
    body = "".join(f"def helper_{i}(value):\n    return value * {i}\n\n\n" for i in range(40))
    text = body + "total = helper_3(helper_2("
    uri = open_doc(client, tmp_path / "calc.py", text)
    line, col = text.count("\n"), len(text.rsplit("\n", 1)[1])

    async def usage() -> dict[str, int]:
        status = await client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command="starcoder.status")
        )
        return dict(status["usage"])

    await inline_at(client, uri, line, col)
    first = await usage()
    assert first["requests"] == 1 and first["evaluated_tokens"] > 300
    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[
                lsp.TextDocumentContentChangePartial(
                    range=lsp.Range(
                        start=lsp.Position(line=line, character=col),
                        end=lsp.Position(line=line, character=col),
                    ),
                    text="1",
                )
            ],
        )
    )
    await inline_at(client, uri, line, col + 1)
    second = await usage()
    assert second["requests"] == 2
    assert second["evaluated_tokens"] - first["evaluated_tokens"] <= 6, (first, second)
