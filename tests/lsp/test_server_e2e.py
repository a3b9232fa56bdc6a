"""The language server end to end: a real ``starcoder-ls`` process over stdio."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lsp_helpers import backend_calls, inline_at, open_doc, start
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "import os\n\n\ndef handler(event):\n    \n"


def plain(value: object) -> object:
    """pygls hands results of custom methods over as namedtuples."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def test_spec(log: Path, **options: object) -> dict[str, object]:
    spec = "&".join([f"log={log}", *(f"{k}={v}" for k, v in options.items())])
    return {"backend": "test", "model": f"test:{spec}", "debounceMs": 0}


test_spec.__test__ = False  # type: ignore[attr-defined]


async def test_advertises_inline_completion_and_negotiates_encoding(
    client: LanguageClient, tmp_path: Path, backend_log: Path
) -> None:
    result = await start(client, test_spec(backend_log), encodings=["utf-8", "utf-16"])
    caps = result.capabilities
    assert caps.inline_completion_provider is not None
    assert caps.position_encoding == lsp.PositionEncodingKind.Utf8
    # A client with inline completion gets no completion-popup fallback by default.
    assert caps.completion_provider is None
    assert caps.execute_command_provider is not None
    assert "starcoder.stats" in caps.execute_command_provider.commands


async def test_inline_completion_in_an_empty_block(
    client: LanguageClient, tmp_path: Path, backend_log: Path
) -> None:
    await start(client, test_spec(backend_log), root=tmp_path)
    uri = open_doc(client, tmp_path / "app.py", SOURCE)
    result = await inline_at(client, uri, 4, 4)
    assert result is not None and len(result.items) == 1
    item = result.items[0]
    assert item.insert_text == "pass"
    assert item.range == lsp.Range(
        start=lsp.Position(line=4, character=4), end=lsp.Position(line=4, character=4)
    )
    assert item.command is not None and item.command.command == "starcoder.accept"
    calls = backend_calls(backend_log)
    assert len(calls) == 1
    # The prompt went out in the model family's FIM format, with the file's workspace path.
    # Accepting is recorded in the local statistics.
    accepted = await client.workspace_execute_command_async(
        lsp.ExecuteCommandParams(command="starcoder.accept", arguments=item.command.arguments)
    )
    assert accepted is True
    stats = await client.workspace_execute_command_async(
        lsp.ExecuteCommandParams(command="starcoder.stats")
    )
    assert stats["total"]["shown"] >= 1 and stats["total"]["accepted"] >= 1


async def test_same_request_twice_is_served_from_cache(
    client: LanguageClient, tmp_path: Path, backend_log: Path
) -> None:
    await start(client, test_spec(backend_log))
    uri = open_doc(client, tmp_path / "app.py", SOURCE)
    first = await inline_at(client, uri, 4, 4)
    second = await inline_at(client, uri, 4, 4)
    assert first and second and first.items[0].insert_text == second.items[0].insert_text
    assert len(backend_calls(backend_log)) == 1


async def test_utf16_positions_with_emoji_and_crlf(
    client: LanguageClient, tmp_path: Path, backend_log: Path
) -> None:
    await start(client, test_spec(backend_log, reply="None"))
    text = 'label = "🙂🙂"\r\nvalue = \r\n'
    uri = open_doc(client, tmp_path / "emoji.py", text)
    # Line 1 is "value = ": column 8 is the end of the line in every encoding.
    result = await inline_at(client, uri, 1, 8)
    assert result and result.items[0].insert_text == "None"
    assert result.items[0].range.start == lsp.Position(line=1, character=8)
    # An incremental edit after the closing quote, in UTF-16 units (each emoji is 2 units).
    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[
                lsp.TextDocumentContentChangePartial(
                    range=lsp.Range(
                        start=lsp.Position(line=0, character=14),
                        end=lsp.Position(line=0, character=14),
                    ),
                    text=" + suffix",
                )
            ],
        )
    )
    result = await inline_at(client, uri, 0, 23)
    assert result and result.items[0].range.start == lsp.Position(line=0, character=23)
    calls = backend_calls(backend_log)
    assert calls[-1]["prefix_tail"].endswith('label = "🙂🙂" + suffix')


async def test_invalid_settings_are_reported_and_defaults_kept(
    client: LanguageClient, tmp_path: Path, backend_log: Path
) -> None:
    options = {**test_spec(backend_log), "maxTokens": "lots", "temperature": 7}
    await start(client, options)
    await asyncio.sleep(0.3)
    text = " ".join(m.message for m in client.messages)
    assert "maxTokens" in text and "temperature" in text
    uri = open_doc(client, tmp_path / "app.py", SOURCE)
    result = await inline_at(client, uri, 4, 4)
    assert result and result.items[0].insert_text == "pass"
    status = await client.workspace_execute_command_async(
        lsp.ExecuteCommandParams(command="starcoder.status")
    )
    assert status["settings"]["maxTokens"] == 64 and status["settings"]["temperature"] == 0.0


async def test_cancel_request_stops_the_generation(
    client: LanguageClient, tmp_path: Path, backend_log: Path
) -> None:
    await start(client, test_spec(backend_log, latency_ms=3000))
    uri = open_doc(client, tmp_path / "app.py", SOURCE)
    params = lsp.InlineCompletionParams(
        text_document=lsp.TextDocumentIdentifier(uri=uri),
        position=lsp.Position(line=4, character=4),
        context=lsp.InlineCompletionContext(trigger_kind=lsp.InlineCompletionTriggerKind.Invoked),
    )
    answer = asyncio.ensure_future(
        client.protocol.send_request_async(
            lsp.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="slow-1"
        )
    )
    await asyncio.sleep(0.5)
    t0 = time.monotonic()
    client.protocol.notify(lsp.CANCEL_REQUEST, lsp.CancelParams(id="slow-1"))
    with pytest.raises(Exception, match=r"(?i)cancel"):
        await answer
    # The generation itself stopped: the backend logged a cancelled call well before its 3 s.
    while time.monotonic() - t0 < 2 and not backend_calls(backend_log):
        await asyncio.sleep(0.05)
    calls = backend_calls(backend_log)
    assert calls and calls[0]["finish_reason"] == "cancelled"
    assert time.monotonic() - t0 < 2


async def test_newer_request_for_a_document_supersedes_the_older(
    client: LanguageClient, tmp_path: Path, backend_log: Path
) -> None:
    await start(client, test_spec(backend_log, latency_ms=1500))
    uri = open_doc(client, tmp_path / "app.py", SOURCE)
    first = asyncio.ensure_future(inline_at(client, uri, 4, 4))
    await asyncio.sleep(0.4)
    t0 = time.monotonic()
    second = await inline_at(client, uri, 4, 4)
    older = await first
    assert older is not None and not older.items
    assert second is not None and second.items[0].insert_text == "pass"
    # One generation at a time per document: the older was stopped, not waited for.
    assert time.monotonic() - t0 < 2.5
    # The older generation never ran to its end (it was cancelled in the backend, or before
    # reaching it when the server was still warming up).
    reasons = [c["finish_reason"] for c in backend_calls(backend_log)]
    assert reasons.count("stop") == 1 and set(reasons) <= {"stop", "cancelled"}


async def test_automatic_requests_are_debounced(
    client: LanguageClient, tmp_path: Path, backend_log: Path
) -> None:
    await start(client, {**test_spec(backend_log), "debounceMs": 300})
    uri = open_doc(client, tmp_path / "app.py", SOURCE)
    tasks = []
    for _ in range(5):  # five keystrokes 50 ms apart, each asking (as VS Code does)
        tasks.append(asyncio.ensure_future(inline_at(client, uri, 4, 4, invoked=False)))
        await asyncio.sleep(0.05)
    results = await asyncio.gather(*tasks)
    assert [len(r.items) if r else 0 for r in results] == [0, 0, 0, 0, 1]
    assert len(backend_calls(backend_log)) == 1


async def test_backend_down_gives_empty_results_and_one_warning(
    client: LanguageClient, tmp_path: Path, backend_log: Path
) -> None:
    await start(client, test_spec(backend_log, error="connection refused"))
    uri = open_doc(client, tmp_path / "app.py", SOURCE)
    for _ in range(3):
        result = await inline_at(client, uri, 4, 4)
        assert result is not None and not result.items
    await asyncio.sleep(0.2)
    errors = [m for m in client.messages if "connection refused" in m.message]
    assert len(errors) == 1


async def test_a_flapping_backend_pops_up_one_warning_not_one_per_failure(
    client: LanguageClient, tmp_path: Path, backend_log: Path
) -> None:
    """Failure, success, failure, ...: the successes do not reset the rate limit."""
    options = test_spec(backend_log, error="HTTP 500 from the server", error_every=2)
    await start(client, {**options, "cache": {"enabled": False}})
    text = "".join(f"def f{i}():\n    \n\n" for i in range(8))
    uri = open_doc(client, tmp_path / "flap.py", text)
    answered = 0
    for i in range(8):
        result = await inline_at(client, uri, 3 * i + 1, 4)
        answered += bool(result and result.items)
    await asyncio.sleep(0.2)
    assert answered == 4
    assert len(backend_calls(backend_log)) == 8
    errors = [m for m in client.messages if "HTTP 500" in m.message]
    assert len(errors) == 1


async def test_a_replaced_document_gets_a_fresh_completion_not_the_shown_rest(
    client: LanguageClient, tmp_path: Path, backend_log: Path
) -> None:
    await start(client, test_spec(backend_log, reply="return%20a%20%2B%20b"))
    uri = open_doc(client, tmp_path / "calc.py", "def add(a, b):\n    \n")
    shown = await inline_at(client, uri, 1, 4)
    assert shown and shown.items[0].insert_text == "return a + b"
    typed = await inline_at(client, uri, 1, 4)  # nothing typed: the shown rest, no backend call
    assert typed and typed.items[0].insert_text == "return a + b"
    assert len(backend_calls(backend_log)) == 1
    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[
                lsp.TextDocumentContentChangeWholeDocument(text="class Database:\n    \n")
            ],
        )
    )
    await inline_at(client, uri, 1, 4)
    assert len(backend_calls(backend_log)) == 2  # asked again: the old completion is stale
    # An edit on another line makes it stale too.
    await inline_at(client, uri, 1, 4)
    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=3),
            content_changes=[
                lsp.TextDocumentContentChangePartial(
                    range=lsp.Range(
                        start=lsp.Position(line=0, character=6),
                        end=lsp.Position(line=0, character=14),
                    ),
                    text="Store",
                )
            ],
        )
    )
    calls = len(backend_calls(backend_log))
    await inline_at(client, uri, 1, 4)
    assert len(backend_calls(backend_log)) == calls + 1


async def test_bad_requests_never_crash_the_server(
    client: LanguageClient, tmp_path: Path, backend_log: Path
) -> None:
    await start(client, test_spec(backend_log))
    # A document that was never opened.
    missing = await inline_at(client, (tmp_path / "nope.py").as_uri(), 0, 0)
    assert missing is not None and not missing.items
    uri = open_doc(client, tmp_path / "app.py", SOURCE)
    # Positions far out of range are clamped to the end of the document.
    result = await inline_at(client, uri, 999, 999)
    assert result is not None
    # A 10 MB document and binary-looking content.
    big = "x = 1\n" * (10 * 1024 * 1024 // 6)
    big_uri = open_doc(client, tmp_path / "big.py", big)
    t0 = time.monotonic()
    await inline_at(client, big_uri, 100, 0)
    assert time.monotonic() - t0 < 10
    bin_uri = open_doc(client, tmp_path / "blob.py", "\x00\x01\ufffd" * 1000)
    await inline_at(client, bin_uri, 0, 5)
    # Unknown method: an error response, and the server still answers afterwards.
    with pytest.raises(Exception, match=r"not found|Method"):
        await client.protocol.send_request_async("starcoder/noSuchMethod", {})
    result = await inline_at(client, uri, 4, 4)
    assert result and result.items[0].insert_text == "pass"


async def test_llm_ls_methods_keep_llm_ls_shapes(
    client: LanguageClient, tmp_path: Path, backend_log: Path
) -> None:
    await start(client, test_spec(backend_log))
    uri = open_doc(client, tmp_path / "app.py", SOURCE)
    params = {
        "textDocument": {"uri": uri},
        "position": {"line": 4, "character": 4},
        "model": "bigcode/starcoder",
        "backend": "huggingface",
        "url": "https://api-inference.huggingface.co",
        "apiToken": "hf_thisIsASecretThatMustNotLeak",
        "fim": {
            "enabled": True,
            "prefix": "<fim_prefix>",
            "middle": "<fim_middle>",
            "suffix": "<fim_suffix>",
        },
        "tokensToClear": ["<|endoftext|>"],
        "contextWindow": 1024,
        "tlsSkipVerifyInsecure": False,
        "ide": "neovim",
        "requestBody": {"parameters": {"max_new_tokens": 60}},
    }
    result = await client.protocol.send_request_async("llm-ls/getCompletions", params)
    result = plain(result)
    assert isinstance(result, dict)
    assert set(result) == {"request_id", "completions"}
    assert result["completions"] == [{"generated_text": "pass"}]
    accept = {"requestId": result["request_id"], "acceptedCompletion": 0, "shownCompletions": [0]}
    assert await client.protocol.send_request_async("llm-ls/acceptCompletion", accept) is None
    stats = await client.workspace_execute_command_async(
        lsp.ExecuteCommandParams(command="starcoder.stats")
    )
    assert stats["total"]["accepted"] >= 1


async def test_completion_fallback_for_clients_without_inline_completion(
    client: LanguageClient, tmp_path: Path, backend_log: Path
) -> None:
    result = await start(client, test_spec(backend_log, reply="None"), inline=False)
    assert result.capabilities.completion_provider is not None
    uri = open_doc(client, tmp_path / "app.py", "value = fo\n")
    items = await client.text_document_completion_async(
        lsp.CompletionParams(
            text_document=lsp.TextDocumentIdentifier(uri=uri),
            position=lsp.Position(line=0, character=10),
        )
    )
    assert isinstance(items, lsp.CompletionList) and len(items.items) == 1
    edit = items.items[0].text_edit
    assert isinstance(edit, lsp.TextEdit)
    # The edit starts at the word being typed so the editor's filter keeps the item.
    assert edit.range.start == lsp.Position(line=0, character=8)
    assert edit.new_text.startswith("fo")


def test_malformed_json_rpc_does_not_kill_the_server(tmp_path: Path) -> None:
    def frame(obj: object | bytes) -> bytes:
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        return b"Content-Length: %d\r\n\r\n" % len(body) + body

    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"capabilities": {}, "initializationOptions": {"backend": "test"}},
    }
    stream = b"".join(
        [
            frame(init),
            frame(b"{not json"),
            frame({"jsonrpc": "2.0", "id": 2, "method": "textDocument/inlineCompletion"}),
            frame({"jsonrpc": "2.0", "id": 3, "method": "shutdown"}),
            frame({"jsonrpc": "2.0", "method": "exit"}),
        ]
    )
    proc = subprocess.run(
        [sys.executable, "-m", "starcoder_ls"],
        input=stream,
        capture_output=True,
        timeout=60,
        cwd=ROOT,
        env={"STARCODER_LS_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    out = proc.stdout.decode()
    assert '"id": 1' in out and '"id": 3' in out  # answered before and after the garbage
    assert '"id": 2' in out and '"error"' in out  # invalid params: an error response
    assert "Traceback" not in out


async def test_bundled_model_over_lsp_matches_the_cli(
    client: LanguageClient, tmp_path: Path
) -> None:
    """No settings at all: the bundled GGUF through llama.cpp, in the server process."""
    src = tmp_path / "shapes.py"
    src.write_text(
        "import math\n\n\nclass Circle:\n    def __init__(self, radius):\n"
        "        self.radius = radius\n\n    def area(self):\n        return \n"
    )
    await start(client, {"debounceMs": 0}, root=tmp_path)
    uri = open_doc(client, src, src.read_text())
    result = await inline_at(client, uri, 8, 15)
    status = await client.workspace_execute_command_async(
        lsp.ExecuteCommandParams(command="starcoder.status")
    )
    assert status["backend"] == "llamacpp" and status["backend_ok"] is True
    assert status["model"].endswith("starcoder-ls-tiny-Q8_0.gguf")
    proc = subprocess.run(
        [sys.executable, "-m", "starcoder_ls", "complete", f"{src}:9:16", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    cli = json.loads(proc.stdout)
    # Same pipeline, greedy decoding: the editor gets exactly what the command line prints.
    got = result.items[0].insert_text if result and result.items else ""
    assert got == cli["completion"]
    assert cli["family"] == "starcoder-ls" and cli["prompt_tokens"] > 20


async def test_completion_continues_the_selected_suggestion(
    client: LanguageClient, tmp_path: Path, backend_log: Path
) -> None:
    """VS Code's suggest widget is open on `path`: the inline item must start with it."""
    await start(client, test_spec(backend_log, reply=".join(a, b)"))
    uri = open_doc(client, tmp_path / "app.py", "import os\nx = os.pa\n")
    selected = lsp.Range(
        start=lsp.Position(line=1, character=7), end=lsp.Position(line=1, character=9)
    )
    result = await client.text_document_inline_completion_async(
        lsp.InlineCompletionParams(
            text_document=lsp.TextDocumentIdentifier(uri=uri),
            position=lsp.Position(line=1, character=9),
            context=lsp.InlineCompletionContext(
                trigger_kind=lsp.InlineCompletionTriggerKind.Automatic,
                selected_completion_info=lsp.SelectedCompletionInfo(range=selected, text="path"),
            ),
        )
    )
    assert result is not None and len(result.items) == 1
    assert result.items[0].insert_text == "path.join(a, b)"
    assert result.items[0].range == selected
    # The model saw the document with the suggestion applied.
    assert backend_calls(backend_log)[-1]["prefix_tail"].endswith("x = os.path")


def test_tcp_transport(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "starcoder_ls", "lsp", "--tcp", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env={"STARCODER_LS_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except OSError:
                assert time.monotonic() < deadline, "the server never listened"
                time.sleep(0.2)
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"capabilities": {}, "initializationOptions": {"backend": "test"}},
            }
        ).encode()
        with conn:
            conn.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            data = b""
            while b"inlineCompletionProvider" not in data:
                chunk = conn.recv(65536)
                assert chunk, data
                data += chunk
        assert b'"id": 1' in data
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_settings_change_at_run_time_push_and_pull(
    client: LanguageClient, tmp_path: Path, backend_log: Path
) -> None:
    await start(client, test_spec(backend_log), pull_config=True)
    uri = open_doc(client, tmp_path / "app.py", SOURCE)
    assert (await inline_at(client, uri, 4, 4)).items[0].insert_text == "pass"  # type: ignore[union-attr]
    # Push: the notification carries the section.
    pushed = {"starcoder": test_spec(backend_log, reply="return%201")}
    client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(settings=pushed))
    result = await inline_at(client, uri, 4, 4)
    assert result and result.items[0].insert_text == "return 1"
    # Pull: an empty notification; the server asks for the `starcoder` section.
    client.set_configuration(test_spec(backend_log, reply="return%202"), section="starcoder")
    client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(settings=None))
    await asyncio.sleep(0.5)
    result = await inline_at(client, uri, 4, 4)
    assert result and result.items[0].insert_text == "return 2"


async def test_missing_model_file_is_reported_at_start(
    client: LanguageClient, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"
    await start(client, {"model": str(missing)})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not client.messages:
        await asyncio.sleep(0.1)
    assert any(str(missing) in m.message for m in client.messages), client.messages
    # Still alive: requests get an empty answer, not a crash.
    uri = open_doc(client, tmp_path / "app.py", SOURCE)
    result = await inline_at(client, uri, 4, 4)
    assert result is not None and not result.items


class _Pipe:
    """The bare JSON-RPC stream of a server process (no LSP client library in between)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc, self._id = proc, 0

    def send(self, method: str, params: object, *, request: bool = True) -> int:
        msg: dict[str, object] = {"jsonrpc": "2.0", "method": method, "params": params}
        if request:
            self._id += 1
            msg["id"] = self._id
        body = json.dumps(msg).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return self._id

    async def request(self, method: str, params: object) -> object:
        rid = self.send(method, params)
        assert self.proc.stdout is not None
        while True:
            length = 0
            while (line := await self.proc.stdout.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            msg = json.loads(await self.proc.stdout.readexactly(length))
            if msg.get("id") == rid and "method" not in msg:
                return msg.get("result")


async def test_acceptance_statistics_outlive_the_session_and_the_cli_reads_them(
    tmp_path: Path,
) -> None:
    env = {"STARCODER_LS_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "starcoder_ls", cwd=ROOT, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    rpc = _Pipe(proc)
    options = {"backend": "test", "debounceMs": 0}
    caps = {"textDocument": {"inlineCompletion": {}}}
    await rpc.request(
        "initialize", {"processId": None, "capabilities": caps, "initializationOptions": options}
    )
    rpc.send("initialized", {}, request=False)
    doc = {"uri": "file:///w/app.py", "languageId": "python", "version": 1, "text": SOURCE}
    rpc.send("textDocument/didOpen", {"textDocument": doc}, request=False)
    result = await rpc.request(
        "textDocument/inlineCompletion",
        {
            "textDocument": {"uri": doc["uri"]},
            "position": {"line": 4, "character": 4},
            "context": {"triggerKind": 1},
        },
    )
    assert isinstance(result, dict)
    [item] = result["items"]
    assert item["insertText"] == "pass"
    accepted = await rpc.request(
        "workspace/executeCommand",
        {"command": item["command"]["command"], "arguments": item["command"]["arguments"]},
    )
    assert accepted is True
    await rpc.request("shutdown", None)
    rpc.send("exit", None, request=False)
    assert await asyncio.wait_for(proc.wait(), 30) == 0

    cli = subprocess.run(
        [sys.executable, "-m", "starcoder_ls", "stats", "--json"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    report = json.loads(cli.stdout)
    assert report["languages"]["python"]["shown"] == 1
    assert report["languages"]["python"]["accepted"] == 1
    assert report["total"]["acceptance_rate"] == 1.0
