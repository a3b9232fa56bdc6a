"""The kernels compile for real GPUs (Ampere, Ada, Hopper) with the launches the heuristics pick
for StarCoder's shapes, without spilling registers and within each GPU's shared memory.

The interpreter, which checks the kernels' arithmetic in the other tests, compiles nothing; this
builds the same source with Triton's GPU compiler (it needs no GPU), in a subprocess because
TRITON_INTERPRET=1 in this one would have Triton interpret its own library functions too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest


def compile_matrix(*args: str) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run(
        [sys.executable, "-m", "starcoder_ls.kernels.compile_check", "--json", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return list(json.loads(out.stdout))


@pytest.mark.slow
def test_every_launch_compiles_for_hopper_and_ada_without_spills() -> None:
    builds = compile_matrix("--gpu", "H100", "--gpu", "L4", "--dtype", "bfloat16")
    kernels = {(b["gpu"], b["kernel"]) for b in builds}
    assert kernels == {
        (gpu, kernel)
        for gpu in ("H100", "L4")
        for kernel in ("decode stage 1", "decode stage 2", "int4 matmul", "int4 split-K sum")
    }
    # every head layout (MQA 16/22/48 heads, GQA 12 per KV head) and every int4 tile shape
    assert len({b["launch"] for b in builds if b["kernel"] == "decode stage 1"}) == 4
    assert {b["launch"].split()[0] for b in builds if b["kernel"] == "int4 matmul"} == {
        f"BLOCK_M={m}" for m in (16, 32, 64, 128)
    }
    for b in builds:
        assert b["fits"], b
        assert b["spill_bytes"] == 0, b
        assert 0 < b["registers"] <= 255, b


def test_the_check_refuses_to_run_under_the_interpreter() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "starcoder_ls.kernels.compile_check"],
        capture_output=True,
        text=True,
        env={**os.environ, "TRITON_INTERPRET": "1"},
        timeout=120,
    )
    assert out.returncode == 2
    assert "unset TRITON_INTERPRET" in out.stderr
