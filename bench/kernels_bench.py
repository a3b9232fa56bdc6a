#!/usr/bin/env python
"""Benchmark report for the Triton kernels (``starcoder_ls.kernels``).

On a CUDA GPU (timings with ``triton.testing.do_bench``, median of its repetitions):

1. Decode attention: one query token per sequence against a KV cache, for the head layouts of
   StarCoder-1B, 3B and 15B (multi-query: one KV head) and StarCoder2-15B (grouped: four), batch
   1, 8 and 32, context 1k, 4k and 8k. The flash-decoding kernel against torch SDPA as
   transformers calls it (``enable_gqa``, no mask). Time, achieved bandwidth (the K/V cache read
   once, plus queries and outputs) and its fraction of the GPU's peak, and the speed ratio.
2. Int4 matmul: the four linear layers of each StarCoder model (fused QKV, attention output, MLP
   up and down) at M = 1, 8 (decode) and 512 (prefill). The fused int4 kernel against torch's
   fp16 matmul on the full weight: time, bandwidth (int4 weights, scales, zero points,
   activations) and its fraction of peak, and the ratio.
3. End to end: decode tokens/s of the transformers backend on a StarCoder-1B-shaped model (random
   weights: speed does not depend on them) with the kernels off and on, fp16 and int4.

Everywhere (also without a GPU):

4. Weight memory of StarCoder-1B/3B/15B in fp16 and in int4 (group 128), counted from the
   models built on the meta device, against a 12 GB GPU.
5. Without a GPU: the kernels' correctness on the same decode shapes through Triton's CPU
   interpreter (shorter contexts: the interpreter is slow), and greedy generation on the bundled
   model with the kernels against the reference path, token for token.

Usage: ``python bench/kernels_bench.py [--json OUT] [--quick]``. Prints a Markdown report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

if not torch.cuda.is_available():
    # The interpreter is the only way to run the kernels here. Triton reads this when the
    # kernels are defined, before starcoder_ls.kernels is imported.
    os.environ["TRITON_INTERPRET"] = "1"
HAVE_GPU = os.environ.get("TRITON_INTERPRET") != "1"
DEVICE = "cuda" if HAVE_GPU else "cpu"
"""Where the timing sections run: the GPU; on a CPU only as a smoke run in the interpreter."""

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Shape:
    """The parts of a model's config that set the kernels' shapes."""

    name: str
    hidden: int
    heads: int
    kv_heads: int
    layers: int
    inner: int
    vocab: int = 49152
    positions: int = 8192

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def linears(self) -> list[tuple[str, int, int]]:
        """(layer, K, N) of one transformer block."""
        kv = 2 * self.kv_heads * self.head_dim
        return [
            ("qkv", self.hidden, self.hidden + kv),
            ("attn out", self.hidden, self.hidden),
            ("mlp up", self.hidden, self.inner),
            ("mlp down", self.inner, self.hidden),
        ]


STARCODER = [
    Shape("StarCoder-1B", hidden=2048, heads=16, kv_heads=1, layers=24, inner=8192),
    Shape("StarCoder-3B", hidden=2816, heads=22, kv_heads=1, layers=36, inner=11264),
    Shape("StarCoder-15B", hidden=6144, heads=48, kv_heads=1, layers=40, inner=24576),
]
STARCODER2_15B = Shape(
    "StarCoder2-15B", hidden=6144, heads=48, kv_heads=4, layers=40, inner=24576, positions=16384
)

# Memory bandwidth from the vendors' data sheets, bytes/s; the first name contained in the
# device's name wins, so the more specific names come first.
PEAK_BANDWIDTH = [
    ("H200", 4.8e12),
    ("H100 NVL", 3.9e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),
    ("GH200", 4.0e12),
    ("A100-SXM4-80GB", 2.039e12),
    ("A100 80GB PCIe", 1.935e12),
    ("A100", 1.555e12),
    ("L40S", 0.864e12),
    ("L40", 0.864e12),
    ("L4", 0.3e12),
    ("A10G", 0.6e12),
    ("A10", 0.6e12),
    ("RTX 4090", 1.008e12),
    ("RTX 3090", 0.936e12),
    ("T4", 0.32e12),
    ("V100", 0.9e12),
]


# --------------------------------------------------------------------------- the machine


def machine() -> dict[str, Any]:
    import triton

    from starcoder_ls.machine import cpu_name

    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton.__version__,
    }
    if HAVE_GPU:
        name = torch.cuda.get_device_name(0)
        info["gpu"] = name
        info["sms"] = torch.cuda.get_device_properties(0).multi_processor_count
        info["peak_bandwidth_gbs"] = next(
            (bw / 1e9 for key, bw in PEAK_BANDWIDTH if key in name), None
        )
        info["copy_bandwidth_gbs"] = copy_bandwidth() / 1e9
    return info


def copy_bandwidth() -> float:
    """What a device-to-device copy achieves (read + write), bytes/s: the practical ceiling."""
    from triton.testing import do_bench

    src = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src))
    return 2 * src.numel() / (ms * 1e-3)


def peak(info: dict[str, Any]) -> float:
    """Bytes/s against which fractions are quoted: the data sheet's, else the measured copy
    (NaN without a GPU)."""
    return 1e9 * float(
        info.get("peak_bandwidth_gbs") or info.get("copy_bandwidth_gbs") or float("nan")
    )


def bench_ms(fn: Callable[[], Any]) -> float:
    """Median milliseconds of ``fn``: ``triton.testing.do_bench`` (CUDA events, L2 flushed
    between runs) on a GPU; a plain clock in the CPU smoke run."""
    if not HAVE_GPU:
        fn()
        times = []
        for _ in range(3):
            started = time.perf_counter()
            fn()
            times.append((time.perf_counter() - started) * 1e3)
        return statistics.median(times)
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=25, rep=100))


def synchronize() -> None:
    if HAVE_GPU:
        torch.cuda.synchronize()


# --------------------------------------------------------------------------- attention


def decode_inputs(
    shape: Shape, batch: int, context: int, dtype: torch.dtype, device: str, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Queries, a cache filled to ``context`` for every row but the last, which is shorter
    (batches mix lengths), and the lengths."""
    gen = torch.Generator(device=device).manual_seed(seed)
    q = torch.randn(batch, shape.heads, shape.head_dim, generator=gen, device=device, dtype=dtype)
    k = torch.randn(
        batch, shape.kv_heads, context, shape.head_dim, generator=gen, device=device, dtype=dtype
    )
    v = torch.randn_like(k)
    lengths = torch.full((batch,), context, device=device, dtype=torch.int32)
    if batch > 1:
        lengths[-1] = max(1, context // 3)
    return q, k, v, lengths


def attention_rows(
    info: dict[str, Any],
    shapes: list[Shape],
    batches: tuple[int, ...] = (1, 8, 32),
    contexts: tuple[int, ...] = (1024, 4096, 8192),
) -> list[dict[str, Any]]:
    import torch.nn.functional as F
    from starcoder_ls.kernels.decode_attention import decode_attention

    rows = []
    for shape in shapes:
        for batch in batches:
            for context in contexts:
                q, k, v, _ = decode_inputs(shape, batch, context, torch.float16, DEVICE)
                scale = shape.head_dim**-0.5
                ours = bench_ms(partial(decode_attention, q, k, v, scale=scale))
                sdpa = bench_ms(
                    partial(
                        F.scaled_dot_product_attention,
                        q.unsqueeze(2),
                        k,
                        v,
                        scale=scale,
                        enable_gqa=shape.kv_heads != shape.heads,
                    )
                )
                moved = (k.numel() + v.numel() + 2 * q.numel()) * 2
                rows.append(
                    {
                        "model": shape.name,
                        "batch": batch,
                        "context": context,
                        "kernel_ms": ours,
                        "sdpa_ms": sdpa,
                        "kernel_gbs": moved / (ours * 1e-3) / 1e9,
                        "kernel_peak": moved / (ours * 1e-3) / peak(info),
                        "sdpa_peak": moved / (sdpa * 1e-3) / peak(info),
                        "speedup": sdpa / ours,
                    }
                )
                del q, k, v
    return rows


# --------------------------------------------------------------------------- int4


def int4_rows(
    info: dict[str, Any], shapes: list[Shape], ms: tuple[int, ...] = (1, 8, 512)
) -> list[dict[str, Any]]:
    import torch.nn.functional as F
    from starcoder_ls.kernels.int4 import pack_int4
    from starcoder_ls.kernels.int4_matmul import int4_matmul

    rows = []
    for shape in shapes:
        for layer, k_dim, n_dim in shape.linears():
            weight = torch.randn(n_dim, k_dim, device=DEVICE, dtype=torch.float16) * 0.02
            packed = pack_int4(weight, 128)
            for m in ms:
                x = torch.randn(m, k_dim, device=DEVICE, dtype=torch.float16)
                ours = bench_ms(partial(int4_matmul, x, packed))
                dense = bench_ms(partial(F.linear, x, weight))
                moved = packed.nbytes + 2 * (x.numel() + m * n_dim)
                dense_moved = 2 * (weight.numel() + x.numel() + m * n_dim)
                rows.append(
                    {
                        "model": shape.name,
                        "layer": layer,
                        "m": m,
                        "k": k_dim,
                        "n": n_dim,
                        "kernel_ms": ours,
                        "fp16_ms": dense,
                        "kernel_peak": moved / (ours * 1e-3) / peak(info),
                        "fp16_peak": dense_moved / (dense * 1e-3) / peak(info),
                        "speedup": dense / ours,
                    }
                )
            del weight, packed
    return rows


# --------------------------------------------------------------------------- end to end


def e2e_rows(
    shape: Shape, *, tokens: int = 128, prompt_tokens: int = 1024, rounds: int = 3
) -> list[dict[str, Any]]:
    """Decode tokens/s of the transformers backend itself (its prompt and step functions)."""
    import shutil
    import tempfile

    from starcoder_ls.models import BUNDLED_HF
    from transformers import AutoModelForCausalLM

    from starcoder_ls.backends.hf import TransformersBackend
    from starcoder_ls.types import CancelToken

    config = gpt_bigcode_config(shape)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        with torch.device(DEVICE):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float16)
        model.save_pretrained(tmp)
        del model
        for name in Path(BUNDLED_HF).iterdir():  # the tokenizer: prompt ids stay in range
            if "token" in name.name:
                shutil.copy(name, tmp)
        prompt = (ROOT / "starcoder_ls" / "backends" / "hf.py").read_text()[:6000]
        for quantize in ("none", "int4"):
            for kernels in ("off", "on"):
                backend = TransformersBackend(
                    tmp, device=DEVICE, dtype="float16", kernels=kernels, quantize=quantize
                )
                ids = backend.tokenize(prompt)[:prompt_tokens]
                rates = []
                for _ in range(rounds):
                    backend._cache, backend._cached_ids = None, []
                    _, logits = backend._evaluate_prompt(ids, CancelToken())
                    synchronize()
                    started = time.perf_counter()
                    token = int(logits.argmax()) if logits is not None else 0
                    for _ in range(tokens):
                        token = int(backend._step(token).argmax())
                    synchronize()
                    rates.append(tokens / (time.perf_counter() - started))
                rows.append(
                    {
                        "model": f"{shape.name} (random weights)",
                        "weights": "fp16" if quantize == "none" else "int4 g128",
                        "kernels": kernels,
                        "tokens_per_s": statistics.median(rates),
                        "memory_gib": (
                            torch.cuda.max_memory_allocated() / 2**30 if HAVE_GPU else float("nan")
                        ),
                        "report": backend.kernels.summary(),
                    }
                )
                backend.close()
                del backend
                if HAVE_GPU:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
    return rows


# --------------------------------------------------------------------------- memory


def gpt_bigcode_config(shape: Shape) -> Any:
    from transformers import GPTBigCodeConfig

    return GPTBigCodeConfig(
        vocab_size=shape.vocab,
        n_positions=shape.positions,
        n_embd=shape.hidden,
        n_layer=shape.layers,
        n_head=shape.heads,
        n_inner=shape.inner,
        multi_query=shape.kv_heads == 1,
        bos_token_id=0,
        eos_token_id=0,
    )


def memory_rows() -> list[dict[str, Any]]:
    from starcoder_ls.kernels.integration import weight_bytes
    from transformers import AutoModelForCausalLM

    rows = []
    for shape in STARCODER:
        config = gpt_bigcode_config(shape)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        fp16 = weight_bytes(model, quantize="none")
        int4 = weight_bytes(model, quantize="int4")
        # MQA: one K and one V head per layer, fp16, for a full 8k context
        kv = 2 * shape.layers * shape.kv_heads * shape.head_dim * 2 * shape.positions
        rows.append(
            {
                "model": shape.name,
                "params_b": sum(p.numel() for p in model.parameters()) / 1e9,
                "fp16_gib": fp16 / 2**30,
                "int4_gib": int4 / 2**30,
                "kv_cache_8k_gib": kv / 2**30,
                "fits_12gb_int4": (int4 + kv) / 2**30 < 12 * 0.93,  # ~7% for CUDA context
            }
        )
    return rows


# --------------------------------------------------------------------------- interpreter


def interpreter_rows(quick: bool) -> list[dict[str, Any]]:
    """The GPU shapes, shortened, through Triton's CPU interpreter: errors against the
    references in units of the tolerance the tests use."""
    from starcoder_ls.kernels.attention_reference import decode_attention_reference
    from starcoder_ls.kernels.decode_attention import decode_attention
    from starcoder_ls.kernels.int4 import int4_matmul_reference, pack_int4
    from starcoder_ls.kernels.int4_matmul import int4_matmul
    from starcoder_ls.kernels.integration import _TOLERANCE

    rows = []
    context = 300 if quick else 1000
    for shape in [*STARCODER, STARCODER2_15B]:
        for dtype in (torch.float16, torch.bfloat16):
            q, k, v, lengths = decode_inputs(shape, 2, context, dtype, "cpu")
            starts = context - lengths  # right-aligned, as in a padded batch
            started = time.perf_counter()
            got = decode_attention(q, k, v, lengths=lengths, starts=starts)
            seconds = time.perf_counter() - started
            want = decode_attention_reference(q, k, v, lengths=lengths, starts=starts)
            err = float((got.float() - want.float()).abs().max())
            rows.append(
                {
                    "kernel": "decode attention",
                    "model": shape.name,
                    "shape": f"B=2 Hq={shape.heads} Hkv={shape.kv_heads} D={shape.head_dim} "
                    f"S={context},{int(lengths[-1])}",
                    "dtype": str(dtype).removeprefix("torch."),
                    "max_abs_err": err,
                    "tolerance_units": err / _TOLERANCE[dtype],
                    "seconds": seconds,
                }
            )
    gen = torch.Generator().manual_seed(0)
    shape = STARCODER[0]
    for layer, k_dim, n_dim in shape.linears()[:2] if quick else shape.linears():
        weight = torch.randn(n_dim, k_dim, generator=gen) * 0.02
        for dtype in (torch.float16, torch.bfloat16):
            packed = pack_int4(weight.to(dtype), 128)
            for m in (1, 33):
                x = torch.randn(m, k_dim, generator=gen).to(dtype)
                started = time.perf_counter()
                got = int4_matmul(x, packed)
                seconds = time.perf_counter() - started
                want = int4_matmul_reference(x, packed)
                scale = max(1.0, float(want.float().abs().max()))
                err = float((got.float() - want.float()).abs().max()) / scale
                rows.append(
                    {
                        "kernel": "int4 matmul",
                        "model": shape.name,
                        "shape": f"{layer}: M={m} K={k_dim} N={n_dim}",
                        "dtype": str(dtype).removeprefix("torch."),
                        "max_abs_err": err,
                        "tolerance_units": err / _TOLERANCE[dtype],
                        "seconds": seconds,
                    }
                )
    return rows


def greedy_rows(tokens: int = 24) -> list[dict[str, Any]]:
    """The bundled model on the CPU: the kernels (interpreted) against the reference path."""
    from starcoder_ls.models import BUNDLED_HF

    from starcoder_ls.backends.hf import TransformersBackend
    from starcoder_ls.types import CancelToken

    source = (ROOT / "starcoder_ls" / "backends" / "hf.py").read_text()
    markers = ("def resolve_device", "class Transformers", "def _truncate_cache", "def _end_ids")
    cuts = [source.index(marker) for marker in markers]
    prompts = [source[max(0, c - 1500) : c + 20] for c in cuts]
    rows = []
    for quantize in ("none", "int4"):
        outputs: dict[str, list[list[int]]] = {}
        for kernels in ("off", "on"):
            backend = TransformersBackend(
                str(BUNDLED_HF), device="cpu", kernels=kernels, quantize=quantize, n_threads=1
            )
            outputs[kernels] = []
            for prompt in prompts:
                ids = backend.tokenize(prompt)[-400:]  # the bundled model has 512 positions
                backend._cache, backend._cached_ids = None, []
                _, logits = backend._evaluate_prompt(ids, CancelToken())
                out = []
                for _ in range(tokens):
                    token = int(logits.argmax())
                    out.append(token)
                    logits = backend._step(token)
                outputs[kernels].append(out)
            backend.close()
        same = sum(a == b for a, b in zip(outputs["off"], outputs["on"], strict=True))
        rows.append(
            {
                "weights": "fp32" if quantize == "none" else "int4 g128",
                "prompts": len(prompts),
                "tokens_each": tokens,
                "identical_prompts": same,
            }
        )
    return rows


# --------------------------------------------------------------------------- compiled


def compile_rows() -> list[dict[str, Any]]:
    """``starcoder_ls.kernels.compile_check``: every launch the heuristics make for these models,
    compiled for an A100, an L4 and an H100 (no GPU needed), in a process without the
    interpreter."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run(
        [sys.executable, "-m", "starcoder_ls.kernels.compile_check", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return list(json.loads(out.stdout))


# --------------------------------------------------------------------------- report


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> list[str]:
    """Markdown table: (header, key, format) per column."""
    lines = [
        "| " + " | ".join(h for h, _, _ in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(format(row[k], f) for _, k, f in columns) + " |")
    return lines


def render(results: dict[str, Any]) -> str:
    info = results["machine"]
    out = ["# Triton kernels: decode attention and int4 matmul", ""]
    gpu = info.get("gpu")
    out.append(
        f"Machine: {info['cpu']} ({info['cores']} cores)"
        + (f", {gpu} ({info['sms']} SMs)" if gpu else ", no GPU")
        + f"; Python {info['python']}, torch {info['torch']}, triton {info['triton']}."
    )
    if gpu:
        bw = info.get("peak_bandwidth_gbs")
        out.append(
            f"Peak memory bandwidth: {bw:.0f} GB/s (data sheet); "
            if bw
            else "Peak memory bandwidth: not in the table, so fractions are of the measured copy; "
        )
        out[-1] += f"a device-to-device copy reaches {info['copy_bandwidth_gbs']:.0f} GB/s."
    else:
        out.append(
            "**No CUDA GPU on this machine: no timings.** Correctness through Triton's CPU "
            "interpreter follows."
        )
    out.append("")
    out += ["## Weight memory (fp16 vs int4, group 128; output head kept in fp16)", ""]
    out += table(
        results["memory"],
        [
            ("model", "model", ""),
            ("params (B)", "params_b", ".2f"),
            ("fp16 GiB", "fp16_gib", ".2f"),
            ("int4 GiB", "int4_gib", ".2f"),
            ("KV cache, 8k ctx, GiB", "kv_cache_8k_gib", ".2f"),
            ("int4 + KV fits 12 GB", "fits_12gb_int4", ""),
        ],
    )
    if "compiled" in results:
        builds = results["compiled"]
        spilled = sum(b["spill_bytes"] > 0 for b in builds)
        too_big = sum(not b["fits"] for b in builds)
        out += [
            "",
            "## Compiled for GPUs (sm_80 A100, sm_89 L4, sm_90 H100)",
            "",
            f"Every launch the heuristics make for these models' decode attention (batch 8, 8k "
            f"tokens) and linear layers (1 to 512 rows), fp16 and bf16, built by Triton's GPU "
            f"compiler without a GPU: {len(builds)} builds, {spilled} with register spills, "
            f"{too_big} over the GPU's shared memory. Registers and spills per thread (ptxas), "
            f"shared memory per program.",
            "",
        ]
        out += table(
            [b for b in builds if b["dtype"] == "bf16"],
            [
                ("GPU", "gpu", ""),
                ("kernel", "kernel", ""),
                ("launch", "launch", ""),
                ("registers", "registers", "d"),
                ("spill B", "spill_bytes", "d"),
                ("shared KiB", "shared_kib", ".0f"),
            ],
        )
    if "attention" in results:
        out += ["", "## Decode attention (fp16): flash-decoding kernel vs torch SDPA", ""]
        out += table(
            results["attention"],
            [
                ("model", "model", ""),
                ("batch", "batch", "d"),
                ("context", "context", "d"),
                ("kernel ms", "kernel_ms", ".4f"),
                ("SDPA ms", "sdpa_ms", ".4f"),
                ("kernel GB/s", "kernel_gbs", ".0f"),
                ("kernel % peak", "kernel_peak", ".0%"),
                ("SDPA % peak", "sdpa_peak", ".0%"),
                ("speedup", "speedup", ".2f"),
            ],
        )
    if "int4" in results:
        out += ["", "## Int4 matmul (group 128) vs torch fp16 matmul", ""]
        out += table(
            results["int4"],
            [
                ("model", "model", ""),
                ("layer", "layer", ""),
                ("M", "m", "d"),
                ("K", "k", "d"),
                ("N", "n", "d"),
                ("int4 ms", "kernel_ms", ".4f"),
                ("fp16 ms", "fp16_ms", ".4f"),
                ("int4 % peak", "kernel_peak", ".0%"),
                ("fp16 % peak", "fp16_peak", ".0%"),
                ("speedup", "speedup", ".2f"),
            ],
        )
    if "e2e" in results:
        out += ["", "## End to end: transformers backend decode, 128 new tokens after 1k", ""]
        out += table(
            results["e2e"],
            [
                ("model", "model", ""),
                ("weights", "weights", ""),
                ("kernels", "kernels", ""),
                ("tokens/s", "tokens_per_s", ".1f"),
                ("peak GiB", "memory_gib", ".2f"),
            ],
        )
    if "interpreter" in results:
        out += [
            "",
            "## Correctness in Triton's CPU interpreter (kernel vs PyTorch reference)",
            "",
            "Error: largest absolute difference (int4: relative to the output's scale), and "
            "the same in units of the start-up self-check's per-dtype tolerance (below 1 passes).",
            "",
        ]
        out += table(
            results["interpreter"],
            [
                ("kernel", "kernel", ""),
                ("model", "model", ""),
                ("shape", "shape", ""),
                ("dtype", "dtype", ""),
                ("max error", "max_abs_err", ".2e"),
                ("x tolerance", "tolerance_units", ".3f"),
                ("interpreter s", "seconds", ".1f"),
            ],
        )
    if "greedy" in results:
        out += ["", "## Greedy generation, bundled model: kernels vs reference path", ""]
        out += table(
            results["greedy"],
            [
                ("weights", "weights", ""),
                ("prompts", "prompts", "d"),
                ("tokens each", "tokens_each", "d"),
                ("identical", "identical_prompts", "d"),
            ],
        )
    if "seconds" in results:
        out += ["", f"Generated in {results['seconds']:.0f} s."]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="fewer shapes (a smoke run)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results: dict[str, Any] = {"machine": machine(), "memory": memory_rows()}
    results["compiled"] = [{**b, "shared_kib": b["shared_bytes"] / 1024} for b in compile_rows()]
    if HAVE_GPU:
        info = results["machine"]
        if args.quick:
            results["attention"] = attention_rows(info, STARCODER, (1, 8), (1024, 8192))
            results["int4"] = int4_rows(info, STARCODER, (1, 8))
            results["e2e"] = e2e_rows(STARCODER[0], rounds=2)
        else:
            results["attention"] = attention_rows(info, [*STARCODER, STARCODER2_15B])
            results["int4"] = int4_rows(info, STARCODER)
            results["e2e"] = e2e_rows(STARCODER[0])
    else:
        results["interpreter"] = interpreter_rows(args.quick)
        results["greedy"] = greedy_rows(tokens=24 if args.quick else 32)
    results["seconds"] = time.perf_counter() - started
    report = render(results)
    print(report)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
