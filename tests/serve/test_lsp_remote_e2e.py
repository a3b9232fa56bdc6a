"""The remote backends end to end, through the language server's real entry point.

An editor-like client (pytest-lsp) starts ``python -m starcoder_ls`` over stdio, opens a
document and asks for an inline completion; the server's HTTP backend talks to a real server
(``starcoder-ls serve`` with the bundled model, llama-cpp-python's own server) or to a loopback
stand-in that checks each request the way TGI, Ollama and the Hugging Face inference API do.

For the real servers the completion is checked against the server's own answer to the exact
prompt the command line prints (``starcoder-ls prompt --json``): the editor's text is what
post-processing makes of that answer, hence a contiguous piece of it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pytest_lsp import ClientServerConfig, LanguageClient
from remote_fixtures import Background, FakeRemote, LlamaCppPythonServer, LlamaServer, counter
from serve_helpers import ServeProcess, free_port
from serve_helpers import key_file as write_key_file

from starcoder_ls.backends.http import HttpBackend
from starcoder_ls.backends.http_dialects import infill_body
from starcoder_ls.postprocess import postprocess
from starcoder_ls.types import (
    CancelToken,
    CompletionMode,
    FimInput,
    GenerationParams,
    Prompt,
    Segment,
)

ROOT = Path(__file__).resolve().parents[2]
MODEL = "starcoder-ls-tiny"
GGUF = ROOT / "models" / MODEL / f"{MODEL}-Q8_0.gguf"
REQUESTS = "starcoder_ls_requests_total"

TEAM_KEY = secrets.token_hex(24)
WRONG_KEY = secrets.token_hex(24)
HF_TOKEN = "hf_" + secrets.token_hex(16)
STATE_DIR = Path(tempfile.gettempdir()) / f"starcoder-ls-remote-e2e-{os.getpid()}"
PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
LSP_ENV = {
    **{k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS},
    "STARCODER_LS_STATE_DIR": str(STATE_DIR),
    "XDG_CACHE_HOME": str(STATE_DIR / "cache"),
    "SCLS_TEAM_KEY": TEAM_KEY,
    "SCLS_WRONG_KEY": WRONG_KEY,
    "HF_TOKEN": HF_TOKEN,
}
LSP_ENV.pop("SCLS_UNSET_KEY", None)

SHAPES = (
    "import math\n\n\nclass Circle:\n    def __init__(self, radius):\n"
    "        self.radius = radius\n\n    def area(self):\n        return \n"
)
SHAPES_CURSOR = (8, 15)  # after "return "
CALC = "def add(a, b):\n    \n"
CALC_CURSOR = (1, 4)  # the empty body of add
BASE = {"debounceMs": 0, "crossFile": False}
"""No debounce (every request here is invoked anyway) and no cross-file context, which the
command line's prompt (no --workspace) does not have either."""


# ----------------------------------------------------------------------------------- the client


@pytest_lsp.fixture(
    config=ClientServerConfig(
        server_command=[sys.executable, "-m", "starcoder_ls", "--log-level", "WARNING"],
        server_env=LSP_ENV,
    ),
)
async def client(lsp_client: LanguageClient) -> AsyncIterator[None]:
    yield
    await lsp_client.shutdown_session()


async def start(client: LanguageClient, options: dict[str, Any], root: Path | None) -> None:
    await client.initialize_session(
        lsp.InitializeParams(
            capabilities=lsp.ClientCapabilities(
                text_document=lsp.TextDocumentClientCapabilities(
                    inline_completion=lsp.InlineCompletionClientCapabilities(),
                    synchronization=lsp.TextDocumentSyncClientCapabilities(),
                ),
                window=lsp.WindowClientCapabilities(
                    show_message=lsp.ShowMessageRequestClientCapabilities()
                ),
            ),
            initialization_options=options,
            root_uri=root.as_uri() if root else None,
        )
    )


def open_doc(client: LanguageClient, path: Path, text: str) -> str:
    path.write_text(text)
    client.text_document_did_open(
        lsp.DidOpenTextDocumentParams(
            text_document=lsp.TextDocumentItem(
                uri=path.as_uri(), language_id="python", version=1, text=text
            )
        )
    )
    return path.as_uri()


async def inline_at(client: LanguageClient, uri: str, line: int, character: int) -> list[str]:
    """The texts of the inline items the editor would show (an invoked request)."""
    result = await client.text_document_inline_completion_async(
        lsp.InlineCompletionParams(
            text_document=lsp.TextDocumentIdentifier(uri=uri),
            position=lsp.Position(line=line, character=character),
            context=lsp.InlineCompletionContext(
                trigger_kind=lsp.InlineCompletionTriggerKind.Invoked
            ),
        )
    )
    assert isinstance(result, lsp.InlineCompletionList), result
    for item in result.items:  # ghost text at the cursor, replacing nothing
        cursor = lsp.Position(line=line, character=character)
        assert item.range == lsp.Range(start=cursor, end=cursor)
    return [str(item.insert_text) for item in result.items]


async def command(client: LanguageClient, name: str, *args: Any) -> Any:
    result = await client.workspace_execute_command_async(
        lsp.ExecuteCommandParams(command=name, arguments=list(args) or None)
    )
    return plain(result)


def plain(value: Any) -> Any:
    """pygls may hand JSON objects over as namedtuples."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def messages(client: LanguageClient) -> list[str]:
    """What the server said to the user (window/showMessage) and to the log (logMessage)."""
    return [m.message for m in client.messages] + [m.message for m in client.log_messages]


async def message_with(client: LanguageClient, needle: str, timeout: float = 10.0) -> str:
    """The first window/showMessage (or logMessage) that contains ``needle``."""
    deadline = time.monotonic() + timeout
    while True:
        texts = messages(client)
        found = [t for t in texts if needle in t]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no message with {needle!r} in {texts}"
        await asyncio.sleep(0.05)


async def cli_prompt(path: Path, line: int, character: int, *settings: str) -> dict[str, Any]:
    """``starcoder-ls prompt FILE:LINE:COL --json`` (1-based) with the same settings."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "starcoder_ls",
        "prompt",
        f"{path}:{line + 1}:{character + 1}",
        "--json",
        *settings,
        cwd=ROOT,
        env=LSP_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


def expected_text(raw: str, document: str, line: int, character: int, cli: dict[str, Any]) -> str:
    """What the server's post-processing makes of ``raw`` at that position."""
    lines = document.split("\n")
    offset = sum(len(x) + 1 for x in lines[:line]) + character
    return postprocess(
        raw,
        prefix=document[:offset],
        suffix=document[offset:],
        mode=CompletionMode(cli["mode"]),
        stop=tuple(cli["stop"]),
        language="python",
    )


async def http_get(url: str, key: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
        response = await http.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return response.text


async def http_post(url: str, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
        response = await http.post(url, json=body, headers=headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def openai_body(cli: dict[str, Any], max_tokens: int = 64) -> dict[str, Any]:
    """The body the openai/starcoder-ls backends send for the prompt ``cli`` shows
    (greedy; a newline ends a single-line request)."""
    stop = (["\n"] if cli["mode"] == "single_line" else []) + cli["stop"]
    return {
        "model": MODEL,
        "prompt": cli["prompt"],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "top_p": 1.0,
        "stop": stop,
        "stream": False,
    }


# ---------------------------------------------------------------------------------- the servers


@pytest.fixture(scope="module", autouse=True)
def state_dir() -> Iterator[Path]:
    yield STATE_DIR
    shutil.rmtree(STATE_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_key_file(tmp_path_factory.mktemp("keys"), TEAM_KEY)


def _serve(backend: str, key_file: Path, log: Path) -> ServeProcess:
    return ServeProcess(
        ["--backend", backend, "--api-key-file", str(key_file), "--threads", "1"],
        log=log,
        env={"STARCODER_LS_API_KEYS": ""},  # only the file's key
    )


@pytest.fixture(scope="module")
def team_llamacpp(
    key_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    server = _serve("llamacpp", key_file, tmp_path_factory.mktemp("serve") / "serve.log")
    yield server
    server.stop()


TRANSFORMERS_NEEDS = ("torch", "transformers", "starcoder_ls.serve.batch")
LLAMA_CPP_SERVER_NEEDS = (
    "llama_cpp.server", "fastapi", "uvicorn", "sse_starlette", "starlette_context",
    "pydantic_settings",
)  # fmt: skip


def missing(modules: tuple[str, ...]) -> str | None:
    """The first of ``modules`` that cannot be imported (found without importing it)."""
    for name in modules:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except ModuleNotFoundError:
            return name
    return None


def selected(request: pytest.FixtureRequest, fixture: str, param: str | None = None) -> bool:
    """Whether a test of this module that runs in this session uses ``fixture`` (with
    ``param`` as the ``team`` parameter)."""
    for item in request.session.items:
        if getattr(item, "module", None) is not request.module:
            continue
        if fixture not in getattr(item, "fixturenames", ()):
            continue
        callspec = getattr(item, "callspec", None)
        if param is None or (callspec is not None and callspec.params.get("team") == param):
            return True
    return False


def start_transformers(key_file: Path, tmp: pytest.TempPathFactory) -> Background[ServeProcess]:
    log = tmp.mktemp("serve") / "serve.log"
    return Background(lambda: _serve("transformers", key_file, log))


def start_llama_cpp_server(tmp: pytest.TempPathFactory) -> Background[LlamaCppPythonServer]:
    log = tmp.mktemp("llama-cpp-server") / "server.log"

    def start() -> LlamaCppPythonServer:
        server = LlamaCppPythonServer(GGUF, port=free_port(), log=log)
        server.wait_ready()
        return server

    return Background(start)


@pytest.fixture(scope="module", autouse=True)
def slow_starts(
    request: pytest.FixtureRequest, key_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Background[Any]]]:
    """The servers that take seconds to load their model start at once, in the background,
    when a selected test needs them; the tests that need no model run meanwhile. (A fixture
    that finds its server not started here starts it itself.)"""
    started: dict[str, Background[Any]] = {}
    if selected(request, "team", "transformers") and not missing(TRANSFORMERS_NEEDS):
        started["transformers"] = start_transformers(key_file, tmp_path_factory)
    if selected(request, "llama_cpp_server") and not missing(LLAMA_CPP_SERVER_NEEDS):
        started["llama_cpp_server"] = start_llama_cpp_server(tmp_path_factory)
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture(scope="module")
def team_transformers(
    slow_starts: dict[str, Background[Any]],
    key_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> ServeProcess:
    if module := missing(TRANSFORMERS_NEEDS):
        pytest.skip(f"serve --backend transformers needs {module}, which is not installed")
    if "transformers" not in slow_starts:
        slow_starts["transformers"] = start_transformers(key_file, tmp_path_factory)
    server: ServeProcess = slow_starts["transformers"].result()
    return server


@pytest.fixture(scope="module", params=["llamacpp", "transformers"])
def team(request: pytest.FixtureRequest) -> ServeProcess:
    """The team server with each of its engines (llama.cpp one request at a time,
    transformers with batching)."""
    server: ServeProcess = request.getfixturevalue(f"team_{request.param}")
    return server


@pytest.fixture(scope="module")
def llama_cpp_server(
    slow_starts: dict[str, Background[Any]], tmp_path_factory: pytest.TempPathFactory
) -> LlamaCppPythonServer:
    if module := missing(LLAMA_CPP_SERVER_NEEDS):
        pytest.skip(f"llama-cpp-python's server needs {module}, which is not installed")
    if "llama_cpp_server" not in slow_starts:
        slow_starts["llama_cpp_server"] = start_llama_cpp_server(tmp_path_factory)
    server: LlamaCppPythonServer = slow_starts["llama_cpp_server"].result()
    return server


@pytest.fixture(scope="module")
def remote() -> Iterator[FakeRemote]:
    server = FakeRemote()
    yield server
    server.close()


async def served(server: ServeProcess, route: str, status: int) -> float:
    metrics = await http_get(f"{server.url}/metrics", TEAM_KEY)
    return counter(metrics, REQUESTS, route=route, status=str(status))


# ------------------------------------------------ TGI, Ollama, Hugging Face (loopback stand-in)

TGI_BODY = {
    "inputs": "<fim_prefix>def f():\n    <fim_suffix>\n<fim_middle>",
    "parameters": {"max_new_tokens": 8, "do_sample": False, "return_full_text": False},
}
STAND_IN_REFUSALS = [
    pytest.param("/generate", {"parameters": {"temperature": 0}}, 422, "temperature", id="t0"),
    pytest.param("/generate", {"parameters": {"top_p": 1.0}}, 422, "top_p", id="top_p-1"),
    pytest.param("/generate", {"parameters": {"stop": list("abcde")}}, 422, "up to 4", id="stops"),
    pytest.param("/generate", {"parameters": {"max_tokens": 8}}, 422, "max_tokens", id="openai"),
    pytest.param("/generate", {"inputs": ""}, 422, "cannot be empty", id="no-inputs"),
    pytest.param("/api/generate", {"model": ""}, 400, "model is required", id="no-model"),
    pytest.param("/api/generate", {"model": "x:1b"}, 404, "not found", id="not-pulled"),
    pytest.param("/api/generate", {"options": {"max_tokens": 8}}, 400, "invalid", id="option"),
    pytest.param("/models/a/b", {}, 401, "Authorization", id="hf-no-token"),
]


@pytest.mark.parametrize("path, change, status, words", STAND_IN_REFUSALS)
def test_the_stand_in_refuses_what_the_real_servers_refuse(
    remote: FakeRemote, path: str, change: dict[str, Any], status: int, words: str
) -> None:
    """The loopback stand-in is only as good as its checks: a body the real server refuses
    gets the real server's status here too (and the documented body is accepted)."""
    good: dict[str, Any] = json.loads(json.dumps(TGI_BODY))  # a deep copy
    if path == "/api/generate":
        good = {"model": "starcoder2:3b", "prompt": "x", "raw": True, "stream": False}
    headers = {"Authorization": f"Bearer {HF_TOKEN}"}
    with httpx.Client(base_url=remote.url, trust_env=False, timeout=10) as http:
        accepted = http.post(path, json=good, headers=headers)
        assert accepted.status_code == 200, accepted.text
        bad = {**good, **change}
        if "parameters" in change:
            bad["parameters"] = {**good["parameters"], **change["parameters"]}
        refused = http.post(path, json=bad, headers={} if path.startswith("/models") else headers)
    assert refused.status_code == status, refused.text
    assert words in refused.json()["error"]


FAKE_CASES = [
    pytest.param("tgi", {}, "/generate", id="tgi-greedy"),
    pytest.param("tgi", {"temperature": 0.2, "topP": 0.9}, "/generate", id="tgi-sampled"),
    pytest.param("ollama", {"model": "starcoder2:3b"}, "/api/generate", id="ollama"),
    pytest.param(
        "huggingface",
        {"model": "bigcode/starcoder", "path": "/models/bigcode/starcoder"},
        "/models/bigcode/starcoder",
        id="huggingface",
    ),
]


@pytest.mark.parametrize("backend, extra, path", FAKE_CASES)
async def test_remote_dialect_returns_the_servers_text_at_the_cursor(
    client: LanguageClient,
    remote: FakeRemote,
    tmp_path: Path,
    backend: str,
    extra: dict[str, Any],
    path: str,
) -> None:
    extra = dict(extra)
    url = remote.url + extra.pop("path", "")
    options = {**BASE, "backend": backend, "url": url, "maxTokens": 48, **extra}
    seen = len(remote.requests(path))
    await start(client, options, None)
    uri = open_doc(client, tmp_path / "calc.py", CALC)
    assert await inline_at(client, uri, *CALC_CURSOR) == ["return a + b"]

    requests = remote.requests(path)[seen:]
    assert [r.status for r in requests] == [200]
    request = requests[0]
    sent = await command(client, "starcoder.lastPrompt", uri)
    assert "def add(a, b):\n    " in sent["text"]
    body = request.body
    if backend == "ollama":
        assert body["model"] == "starcoder2:3b" and sent["family"] == "starcoder2"
        assert body["prompt"] == sent["text"]
        assert body["raw"] is True and body["stream"] is False  # the prompt is FIM already
        assert body["options"]["num_predict"] == 48
        assert body["options"]["temperature"] == 0
        assert "authorization" not in request.headers
        return
    assert body["inputs"] == sent["text"]
    parameters = body["parameters"]
    assert parameters["max_new_tokens"] == 48
    assert parameters["return_full_text"] is False
    assert parameters["stop"] and len(parameters["stop"]) <= 4
    if "temperature" in extra:
        assert parameters["do_sample"] is True
        assert (parameters["temperature"], parameters["top_p"]) == (0.2, 0.9)
    else:  # greedy: TGI refuses temperature 0, so none is sent
        assert parameters["do_sample"] is False and "temperature" not in parameters
    if backend == "huggingface":
        assert request.headers["authorization"] == f"Bearer {HF_TOKEN}"  # HF_TOKEN by default
    else:
        assert "authorization" not in request.headers


REFUSALS = [
    pytest.param(
        {"backend": "ollama", "model": "starcoder2:15b"},
        "/api/generate",
        404,
        ("HTTP 404", "starcoder2:15b", "not found"),
        id="ollama-model-not-pulled",
    ),
    pytest.param(
        {
            "backend": "huggingface",
            "model": "bigcode/starcoder",
            "path": "/models/bigcode/starcoder",
            "apiKeyEnv": "SCLS_UNSET_KEY",
        },
        "/models/bigcode/starcoder",
        401,
        ("HTTP 401", "SCLS_UNSET_KEY", "is not set"),
        id="huggingface-no-token",
    ),
]


@pytest.mark.parametrize("extra, path, status, words", REFUSALS)
async def test_remote_refusal_is_reported_and_gives_no_completion(
    client: LanguageClient,
    remote: FakeRemote,
    tmp_path: Path,
    extra: dict[str, Any],
    path: str,
    status: int,
    words: tuple[str, ...],
) -> None:
    extra = dict(extra)
    url = remote.url + extra.pop("path", "")
    seen = len(remote.requests(path))
    await start(client, {**BASE, "url": url, **extra}, None)
    uri = open_doc(client, tmp_path / "calc.py", CALC)
    assert await inline_at(client, uri, *CALC_CURSOR) == []
    assert [r.status for r in remote.requests(path)[seen:]] == [status]  # not retried
    message = await message_with(client, words[0])
    assert all(w in message for w in words), message
    assert HF_TOKEN not in message


# --------------------------------------------------------------------- starcoder-ls serve: keys


async def test_team_server_refuses_a_wrong_key_and_the_editor_recovers(
    client: LanguageClient, team_llamacpp: ServeProcess, tmp_path: Path
) -> None:
    options = {
        **BASE,
        "backend": "starcoder-ls",
        "url": team_llamacpp.url,
        "apiKeyEnv": "SCLS_WRONG_KEY",
    }
    refused = await served(team_llamacpp, "/v1/completions", 401)
    await start(client, options, tmp_path)
    uri = open_doc(client, tmp_path / "shapes.py", SHAPES)
    assert await inline_at(client, uri, *SHAPES_CURSOR) == []
    message = await message_with(client, "HTTP 401")
    assert "SCLS_WRONG_KEY" in message and "refused" in message, message
    assert await served(team_llamacpp, "/v1/completions", 401) == refused + 1
    status = await command(client, "starcoder.status")
    assert status["backend_ok"] is False
    # Keys never reach the editor, whichever was sent.
    assert not any(WRONG_KEY in t or TEAM_KEY in t for t in messages(client))

    # Another wrong setting fails differently, and says so at once (not a minute later).
    unset = {**options, "apiKeyEnv": "SCLS_UNSET_KEY"}
    client.workspace_did_change_configuration(
        lsp.DidChangeConfigurationParams(settings={"starcoder": unset})
    )
    assert await inline_at(client, uri, *SHAPES_CURSOR) == []
    message = await message_with(client, "SCLS_UNSET_KEY is not set")
    assert "HTTP 401" in message, message

    # The same session, pointed at the right variable: completions come back.
    right = {**options, "apiKeyEnv": "SCLS_TEAM_KEY"}
    client.workspace_did_change_configuration(
        lsp.DidChangeConfigurationParams(settings={"starcoder": right})
    )
    accepted = await served(team_llamacpp, "/v1/completions", 200)
    texts = await inline_at(client, uri, *SHAPES_CURSOR)
    assert len(texts) == 1 and texts[0].strip()
    assert await served(team_llamacpp, "/v1/completions", 200) == accepted + 1
    status = await command(client, "starcoder.status")
    assert status["backend_ok"] is True
    assert status["settings"]["apiKeyEnv"] == "SCLS_TEAM_KEY"
    # With the key the server also told what it serves: prompts in the model's own format.
    assert (await command(client, "starcoder.lastPrompt", uri))["family"] == "starcoder-ls"


# ----------------------------------------------------------------- starcoder-ls serve (/infill)


async def test_llamacpp_server_dialect_against_the_team_server_infill(
    client: LanguageClient, team_llamacpp: ServeProcess, tmp_path: Path
) -> None:
    options = {
        **BASE,
        "backend": "llamacpp-server",
        "url": team_llamacpp.url,
        "apiKeyEnv": "SCLS_TEAM_KEY",
    }
    infill = await served(team_llamacpp, "/infill", 200)
    openai = await served(team_llamacpp, "/v1/completions", 200)
    await start(client, options, tmp_path)
    uri = open_doc(client, tmp_path / "shapes.py", SHAPES)
    texts = await inline_at(client, uri, *SHAPES_CURSOR)
    assert await served(team_llamacpp, "/infill", 200) == infill + 1
    assert await served(team_llamacpp, "/v1/completions", 200) == openai  # not this route

    # /infill gets the parts, and the server puts them in the model's FIM format itself.
    line, character = SHAPES_CURSOR
    offset = sum(len(x) + 1 for x in SHAPES.split("\n")[:line]) + character
    cli = await cli_prompt(
        tmp_path / "shapes.py",
        *SHAPES_CURSOR,
        *("--backend", "llamacpp-server", "--url", team_llamacpp.url),
    )
    body = {
        "input_prefix": SHAPES[:offset],
        "input_suffix": SHAPES[offset:],
        "input_extra": [],
        "n_predict": 64,
        "temperature": 0.0,
        "stop": (["\n"] if cli["mode"] == "single_line" else []) + cli["stop"],
        "stream": False,
        "cache_prompt": True,
    }
    answer = await http_post(f"{team_llamacpp.url}/infill", body, TEAM_KEY)
    raw = answer["content"]
    assert len(texts) == 1 and texts[0].strip(), (texts, raw)
    assert texts[0] in raw
    assert texts[0] == expected_text(raw, SHAPES, *SHAPES_CURSOR, cli)


# -------------------------------------------------------------------- llama-cpp-python's server


@pytest.mark.slow
async def test_openai_dialect_against_llama_cpp_python_server(
    client: LanguageClient, llama_cpp_server: LlamaCppPythonServer, tmp_path: Path
) -> None:
    log_line = '"POST /v1/completions HTTP/1.1" 200'
    before = llama_cpp_server.output().count(log_line)
    options = {**BASE, "backend": "openai", "url": llama_cpp_server.url, "model": MODEL}
    await start(client, options, tmp_path)
    uri = open_doc(client, tmp_path / "shapes.py", SHAPES)
    texts = await inline_at(client, uri, *SHAPES_CURSOR)
    assert llama_cpp_server.output().count(log_line) == before + 1

    cli = await cli_prompt(
        tmp_path / "shapes.py",
        *SHAPES_CURSOR,
        *("--backend", "openai", "--url", llama_cpp_server.url, "--model", MODEL),
    )
    assert (await command(client, "starcoder.lastPrompt", uri))["text"] == cli["prompt"]
    answer = await http_post(f"{llama_cpp_server.url}/v1/completions", openai_body(cli))
    raw = answer["choices"][0]["text"]
    assert len(texts) == 1 and texts[0].strip(), (texts, raw)
    assert texts[0] in raw


# ------------------------------------------------------------------ starcoder-ls serve (OpenAI)


@pytest.mark.slow
async def test_team_server_completion_is_the_servers_answer(
    team: ServeProcess, client: LanguageClient, tmp_path: Path
) -> None:
    # docs/serve.md's client settings: no model; the server says what it serves.
    options = {**BASE, "backend": "starcoder-ls", "url": team.url, "apiKeyEnv": "SCLS_TEAM_KEY"}
    before = await served(team, "/v1/completions", 200)
    await start(client, options, tmp_path)
    uri = open_doc(client, tmp_path / "shapes.py", SHAPES)
    texts = await inline_at(client, uri, *SHAPES_CURSOR)
    assert await served(team, "/v1/completions", 200) == before + 1  # one request, accepted

    # The prompt the language server sent is the one the command line prints.
    sent = await command(client, "starcoder.lastPrompt", uri)
    cli = await cli_prompt(
        tmp_path / "shapes.py",
        *SHAPES_CURSOR,
        *("--backend", "starcoder-ls", "--url", team.url, "--api-key-env", "SCLS_TEAM_KEY"),
    )
    # The bundled model's own FIM format, learned from the server (GET /v1/models).
    assert sent["family"] == cli["family"] == "starcoder-ls"
    assert sent["text"] == cli["prompt"] and sent["mode"] == cli["mode"]
    # The editor gets what post-processing makes of the server's answer to that prompt.
    answer = await http_post(f"{team.url}/v1/completions", openai_body(cli), TEAM_KEY)
    raw = answer["choices"][0]["text"]
    assert answer["model"] == MODEL
    assert len(texts) == 1 and texts[0].strip(), (texts, raw)
    assert texts[0] in raw
    assert texts[0] == expected_text(raw, SHAPES, *SHAPES_CURSOR, cli)
    status = await command(client, "starcoder.status")
    assert status["backend"] == "starcoder-ls" and status["backend_ok"] is True


# ------------------------------------------------------------------- llama.cpp's own llama-server

# Real code with imports the workspace resolves: the HTTP backend and the modules it uses.
WORKSPACE = (
    "starcoder_ls/backends/http.py",
    "starcoder_ls/backends/http_dialects.py",
    "starcoder_ls/backends/base.py",
    "starcoder_ls/types.py",
    "starcoder_ls/scrub.py",
)
DOC = WORKSPACE[0]


def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    for rel in WORKSPACE:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, root / rel)
    return root


def cursor_after(text: str, needle: str) -> tuple[int, int]:
    """0-based line and column just after the first ``needle``."""
    offset = text.index(needle) + len(needle)
    line = text.count("\n", 0, offset)
    return line, offset - (text.rfind("\n", 0, offset) + 1)


def start_llama_server(tmp: pytest.TempPathFactory, model: Path, *flags: str) -> LlamaServer:
    log = tmp.mktemp("llama-server") / "server.log"
    return LlamaServer(model, port=free_port(), log=log, flags=flags).wait_ready()


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama-server with its defaults: the model's 512-token context, a batch of 2048 (which
    leaves no room for other files' context: n_ctx - n_batch - 2 x n_predict < 0)."""
    server = start_llama_server(tmp_path_factory, GGUF)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def llama_server_small_batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama-server with -b 256: 258 tokens of the 512 are kept for other files' context."""
    server = start_llama_server(tmp_path_factory, GGUF, "-b", "256")
    yield server
    server.stop()


async def test_llamacpp_server_dialect_fits_a_real_llama_server(
    client: LanguageClient, llama_server: LlamaServer, tmp_path: Path
) -> None:
    # The default settings (a 1,536-token prompt budget) against -c 512: the client asks the
    # server for its context and fits the prompt to it.
    root = workspace(tmp_path)
    await start(
        client, {"backend": "llamacpp-server", "url": llama_server.url, "debounceMs": 0}, root
    )
    text = (root / DOC).read_text()
    uri = open_doc(client, root / DOC, text)
    await inline_at(client, uri, *cursor_after(text, "rest, stopped = "))
    assert not [m for m in messages(client) if "HTTP" in m], messages(client)
    remote = (await command(client, "starcoder.status"))["remote"]
    assert (remote["n_ctx"], remote["model"], remote["fim"]) == (512, GGUF.name, True)
    assert 0.5 < remote["token_rate"] < 2

    # The first prompt carried other files' context; this server kept none of it. The user is
    # told how to start the server so that it does, and the budget goes to this file.
    assert remote["extra_context_tokens"] == 0
    notice = await message_with(client, "-b 256")
    assert "n_ctx is 512" in notice
    await inline_at(client, uri, *cursor_after(text, "return self._llama.notice if "))
    last = await command(client, "starcoder.lastPrompt", uri)
    assert last["segments"] and {seg["path"] for seg in last["segments"]} == {DOC}
    assert len(messages(client)) == 1  # said once


async def test_llamacpp_server_prompt_the_estimate_undercounts_is_cut_and_sent_again(
    client: LanguageClient, llama_server: LlamaServer, tmp_path: Path
) -> None:
    # Chinese comments: the model's byte-level tokenizer spends about 3.5 times the estimate.
    # The server refuses the first prompt with its exact count; the client cuts the prompt to
    # that count, sends it again, and budgets the next ones with the rate it learned.
    body = "".join(
        f"    # 第{i}步：计算向量的长度和方向，然后归一化\n    x{i} = v[{i}] * 2\n"
        for i in range(80)
    )
    text = f"def normalize(v):\n{body}    return \n\n\ndef main():\n    pass\n"
    await start(client, {"backend": "llamacpp-server", "url": llama_server.url, **BASE}, tmp_path)
    uri = open_doc(client, tmp_path / "vec.py", text)
    await inline_at(client, uri, *cursor_after(text, "    return "))
    assert not [m for m in messages(client) if "HTTP" in m], messages(client)
    remote = (await command(client, "starcoder.status"))["remote"]
    assert remote["refits"] == 1 and remote["token_rate"] > 2.5
    await inline_at(client, uri, *cursor_after(text, "x40 = v[40] * "))
    remote = (await command(client, "starcoder.status"))["remote"]
    assert remote["refits"] == 1  # the next prompt fitted at once


def test_other_files_context_reaches_llama_server_or_the_user_is_told(
    llama_server: LlamaServer, llama_server_small_batch: LlamaServer
) -> None:
    extra = tuple(
        Segment(
            "definition", f"lib/m{i}.py", 1, 2, f"def helper_{i}(x):\n    return x * {i} + 17\n"
        )
        for i in range(3)
    )
    fim = FimInput(prefix="def f(x):\n    return ", suffix="\n", path="main.py", extra=extra)
    prompt = Prompt(text="", family="starcoder-ls", stop=(), fim=fim)
    for server, arrives in ((llama_server_small_batch, True), (llama_server, False)):
        backend = HttpBackend("llamacpp-server", url=server.url, timeout_ms=30_000)
        try:
            backend.generate(prompt, GenerationParams(max_tokens=4), CancelToken())
            learned, notice = backend.status()["extra_context_tokens"], backend.notice
        finally:
            backend.close()
        # The server's own account of the prompt it assembled from the same parts.
        status, answer = server.infill(infill_body(prompt, GenerationParams(max_tokens=1), ""))
        assert status == 200, answer
        held = [f"return x * {i} + 17" in answer["prompt"] for i in range(3)]
        assert held == [arrives] * 3, answer["prompt"]
        assert (learned is None, notice == "") == (arrives, arrives), (learned, notice)


async def test_llamacpp_server_without_fim_completes_left_to_right(
    client: LanguageClient, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    from starcoder_ls.models.packaged import DEFAULT, path_if_ready

    gemma = path_if_ready(DEFAULT)  # a vocabulary without FIM tokens
    if gemma is None:
        pytest.skip(f"{DEFAULT.name} is not installed (scripts/setup.sh installs it)")
    server = start_llama_server(tmp_path_factory, gemma, "-c", "1024")
    try:
        await start(client, {"backend": "llamacpp-server", "url": server.url, **BASE}, tmp_path)
        uri = open_doc(client, tmp_path / "calc.py", CALC)
        texts = await inline_at(client, uri, *CALC_CURSOR)  # /infill: 501, then /completion
        remote = (await command(client, "starcoder.status"))["remote"]
        assert (remote["fim"], remote["n_ctx"]) == (False, 1024)
        assert texts and texts[0].strip()
        await inline_at(client, uri, *CALC_CURSOR)
        assert (await command(client, "starcoder.lastPrompt", uri))["family"] == "left-to-right"
        assert not [m for m in messages(client) if "HTTP" in m], messages(client)
    finally:
        server.stop()
