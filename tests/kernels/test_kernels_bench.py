"""bench/kernels_bench.py's GPU sections, run on tiny shapes on the CPU (kernels interpreted),
so the script that produces the GPU numbers cannot rot unnoticed on machines without one."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "kernels_bench", ROOT / "bench" / "kernels_bench.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    if module.HAVE_GPU:
        pytest.skip("with a GPU the benchmark itself is the check")
    return module


@pytest.mark.interpreter
def test_timing_sections_run_and_report(bench: ModuleType) -> None:
    mqa = bench.Shape("tiny-mqa", hidden=64, heads=4, kv_heads=1, layers=2, inner=256, vocab=4096)
    gqa = bench.Shape("tiny-gqa", hidden=96, heads=6, kv_heads=2, layers=2, inner=192, vocab=4096)
    info = bench.machine()
    attention = bench.attention_rows(info, [mqa, gqa], batches=(1, 3), contexts=(40,))
    assert [(r["model"], r["batch"]) for r in attention] == [
        ("tiny-mqa", 1),
        ("tiny-mqa", 3),
        ("tiny-gqa", 1),
        ("tiny-gqa", 3),
    ]
    assert all(r["kernel_ms"] > 0 and r["sdpa_ms"] > 0 for r in attention)
    assert all(math.isnan(r["kernel_peak"]) for r in attention)  # no GPU: no peak to compare

    int4 = bench.int4_rows(info, [mqa], ms=(1, 20))
    assert [(r["layer"], r["m"]) for r in int4] == [
        (layer, m) for layer in ("qkv", "attn out", "mlp up", "mlp down") for m in (1, 20)
    ]
    assert int4[0]["k"] == 64 and int4[0]["n"] == 64 + 2 * 16  # one K and one V head of 16

    e2e = bench.e2e_rows(mqa, tokens=3, prompt_tokens=24, rounds=1)
    assert [(r["weights"], r["kernels"]) for r in e2e] == [
        ("fp16", "off"),
        ("fp16", "on"),
        ("int4 g128", "off"),
        ("int4 g128", "on"),
    ]
    assert all(r["tokens_per_s"] > 0 for r in e2e)
    assert "decode attention: Triton" in e2e[1]["report"]
    assert "int4 weights: 8 layers" in e2e[3]["report"]

    report = bench.render(
        {
            "machine": info,
            "memory": bench.memory_rows(),
            "attention": attention,
            "int4": int4,
            "e2e": e2e,
        }
    )
    assert "## Decode attention" in report and "## Int4 matmul" in report
    assert "| StarCoder-15B |" in report and "no GPU" in report
