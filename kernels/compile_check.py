"""Compile the kernels for GPUs this machine may not have, and read what they cost.

Triton compiles for a named target without a GPU or a driver (its wheel ships ``ptxas``), so the
exact launches the heuristics pick for StarCoder's shapes can be built for Ampere, Ada and Hopper
on any machine. A kernel that does not compile for a GPU, asks for more shared memory than the
GPU has, or spills registers to local memory shows up here, in the tests and the benchmark
report, rather than on the team's GPU box. (The CPU interpreter, which runs the kernels in the
tests, checks their arithmetic but compiles nothing.)
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import triton
from starcoder_ls.kernels import decode_attention as attention
from starcoder_ls.kernels import int4_matmul as int4


@dataclass(frozen=True)
class Gpu:
    name: str
    arch: int
    """Compute capability as Triton spells it: 80, 89, 90."""
    sms: int
    shared_memory: int
    """Shared memory one block may opt in to, bytes."""


GPUS = (
    Gpu("A100", 80, 108, 163 * 1024),
    Gpu("L4", 89, 58, 99 * 1024),
    Gpu("H100", 90, 132, 227 * 1024),
)
"""A data-centre Ampere, a small Ada (the 99 KB of shared memory of consumer cards), a Hopper."""


@dataclass(frozen=True)
class Build:
    """One kernel compiled for one GPU, and what it costs per program."""

    kernel: str
    gpu: str
    dtype: str
    launch: str
    """The compile-time constants that matter, num_warps and num_stages."""
    registers: int
    spill_bytes: int
    """Local memory and stack per thread: non-zero means registers spilled."""
    shared_bytes: int
    fits: bool
    """Shared memory within what the GPU allows a block."""
    seconds: float


_DTYPE = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}


def _jit(fn: Any) -> Any:
    """The kernel as a ``JITFunction``, also when TRITON_INTERPRET=1 made it an interpreted
    one (the tests run with the interpreter on)."""
    from triton.runtime.jit import JITFunction

    if isinstance(fn, JITFunction):
        return fn
    raw = fn
    while hasattr(raw, "fn"):
        raw = raw.fn
    return JITFunction(raw)


_RESOURCES = re.compile(r"REG:(\d+) STACK:(\d+) SHARED:\d+ LOCAL:(\d+)")


def _resources(cubin: bytes) -> tuple[int, int]:
    """(registers, spilled bytes) per thread, from the cuobjdump that ships with Triton."""
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cubin")
        Path(path).write_bytes(cubin)
        out = subprocess.run(
            [str(tool), "-res-usage", path], capture_output=True, text=True, check=True
        ).stdout
    found = _RESOURCES.search(out)
    if found is None:
        raise RuntimeError(f"cuobjdump printed no resource usage:\n{out}")
    registers, stack, local = (int(g) for g in found.groups())
    return registers, stack + local


@functools.cache
def _compile(
    name: str,
    signature: tuple[tuple[str, str], ...],
    constants: tuple[tuple[str, Any], ...],
    num_warps: int,
    num_stages: int,
    arch: int,
) -> tuple[int, int, int, float]:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = _jit(_KERNELS[name]())
    consts = dict(constants)
    sig = {arg: "constexpr" if arg in consts else dict(signature)[arg] for arg in fn.arg_names}
    # Pointers are 16-byte aligned (torch allocations are), as the launcher would note.
    aligned = {
        (i,): [["tt.divisibility", 16]]
        for i, arg in enumerate(fn.arg_names)
        if sig[arg].startswith("*")
    }
    started = time.perf_counter()
    compiled = triton.compile(
        ASTSource(fn, sig, consts, aligned),
        target=GPUTarget("cuda", arch, 32),
        options={"num_warps": num_warps, "num_stages": num_stages},
    )
    seconds = time.perf_counter() - started
    registers, spills = _resources(compiled.asm["cubin"])
    return registers, spills, int(compiled.metadata.shared), seconds


_KERNELS = {
    "decode stage 1": lambda: attention._decode_stage1,
    "decode stage 2": lambda: attention._decode_stage2,
    "int4 matmul": lambda: int4._int4_matmul_kernel,
    "int4 split-K sum": lambda: int4._split_k_reduce_kernel,
}


def _build(
    kernel: str,
    gpu: Gpu,
    dtype: str,
    types: dict[str, str],
    constants: dict[str, Any],
    num_warps: int,
    num_stages: int,
    shown: tuple[str, ...],
) -> Build:
    registers, spills, shared, seconds = _compile(
        kernel,
        tuple(sorted(types.items())),
        tuple(sorted(constants.items())),
        num_warps,
        num_stages,
        gpu.arch,
    )
    launch = " ".join(f"{k}={constants[k]}" for k in shown)
    return Build(
        kernel=kernel,
        gpu=gpu.name,
        dtype=dtype,
        launch=f"{launch} warps={num_warps} stages={num_stages}",
        registers=registers,
        spill_bytes=spills,
        shared_bytes=shared,
        fits=shared <= gpu.shared_memory,
        seconds=seconds,
    )


def decode_attention_builds(
    gpu: Gpu,
    *,
    heads: int,
    kv_heads: int,
    head_dim: int,
    dtype: torch.dtype,
    batch: int = 8,
    context: int = 8192,
    mask: bool = True,
) -> list[Build]:
    """The launches ``decode_attention`` makes for this decode step on ``gpu``."""
    block_n = attention.default_block_n(head_dim, context, heads // kv_heads)
    splits = attention.gpu_num_splits(batch * kv_heads, context, block_n, sms=gpu.sms)
    single = splits == 1
    constants, warps, stages = attention.stage1_launch(
        heads // kv_heads, head_dim, block_n, dtype, interpreted=False
    )
    t = _DTYPE[dtype]
    part = t if single else "fp32"  # the single-split launch writes the output directly
    types = {
        "q_ptr": f"*{t}",
        "k_ptr": f"*{t}",
        "v_ptr": f"*{t}",
        "mask_ptr": "*u8" if mask else "*i32",
        "starts_ptr": "*i32",
        "lengths_ptr": "*i32",
        "out_ptr": f"*{t}",
        "part_o_ptr": f"*{part}",
        "part_lse_ptr": f"*{part}",
        "qk_scale": "fp32",
    }
    types |= {arg: "i32" for arg in _jit(attention._decode_stage1).arg_names if arg not in types}
    constants |= {"USE_MASK": mask, "SINGLE_SPLIT": single}
    builds = [
        _build(
            "decode stage 1",
            gpu,
            t,
            types,
            constants,
            warps,
            stages,
            ("GROUP", "BLOCK_G", "BLOCK_N", "BLOCK_D", "SINGLE_SPLIT"),
        )
    ]
    if not single:
        merge, merge_warps = attention.stage2_launch(heads, splits, head_dim, interpreted=False)
        merge_types = {"part_o_ptr": "*fp32", "part_lse_ptr": "*fp32", "out_ptr": f"*{t}"}
        merge_types |= {
            arg: "i32" for arg in _jit(attention._decode_stage2).arg_names if arg not in merge_types
        }
        builds.append(
            _build(
                "decode stage 2",
                gpu,
                t,
                merge_types,
                merge,
                merge_warps,
                1,
                ("BLOCK_H", "BLOCK_S", "BLOCK_D"),
            )
        )
    return builds


def int4_matmul_builds(
    gpu: Gpu, *, m: int, k: int, n: int, dtype: torch.dtype, bias: bool = True
) -> list[Build]:
    """The launches ``int4_matmul`` makes for an (m, k) x (k, n) product on ``gpu``."""
    from starcoder_ls.kernels.integration import GROUP_SIZE

    cfg = int4.gpu_config(m, n, k, GROUP_SIZE, dtype, sms=gpu.sms, shared_memory=gpu.shared_memory)
    k_tiles = triton.cdiv(k, cfg.block_k)
    split = triton.cdiv(k_tiles, triton.cdiv(k_tiles, cfg.split_k))
    t = _DTYPE[dtype]
    types = {
        "x_ptr": f"*{t}",
        "qw_ptr": "*i32",
        "scales_ptr": f"*{t}",
        "zeros_ptr": f"*{t}",
        "bias_ptr": f"*{t}",
        "out_ptr": f"*{t}" if split == 1 else "*fp32",
    }
    types |= {arg: "i32" for arg in _jit(int4._int4_matmul_kernel).arg_names if arg not in types}
    constants = int4.kernel_constants(cfg, GROUP_SIZE, split, dtype, bias)
    builds = [
        _build(
            "int4 matmul",
            gpu,
            t,
            types,
            constants,
            cfg.num_warps,
            cfg.num_stages,
            ("BLOCK_M", "BLOCK_N", "BLOCK_K", "SPLIT_K"),
        )
    ]
    if split > 1:
        reduce_types = {"ws_ptr": "*fp32", "bias_ptr": f"*{t}", "out_ptr": f"*{t}"}
        reduce_types |= {"numel": "i32", "N": "i32"}
        reduce = {
            "SPLIT_K": split,
            "HAS_BIAS": bias,
            "EMULATE_BF16": False,
            "BLOCK": int4.REDUCE_BLOCK,
        }
        builds.append(
            _build(
                "int4 split-K sum",
                gpu,
                t,
                reduce_types,
                reduce,
                int4.REDUCE_WARPS,
                1,
                ("SPLIT_K", "BLOCK"),
            )
        )
    return builds


# ------------------------------------------------------------------------------- the matrix

ATTENTION_LAYOUTS = {
    "StarCoder-1B": (16, 1, 128),
    "StarCoder-3B": (22, 1, 128),
    "StarCoder-15B": (48, 1, 128),
    "StarCoder2-15B": (48, 4, 128),
}
"""(query heads, KV heads, head dim) of the models the kernels are for."""
LINEAR_SHAPES = {
    "StarCoder-15B qkv": (6144, 6400),
    "StarCoder-15B attn out": (6144, 6144),
    "StarCoder-15B mlp up": (6144, 24576),
    "StarCoder-15B mlp down": (24576, 6144),
    "StarCoder-1B attn out": (2048, 2048),
}
"""(K, N) of linear layers: the 15B model's four, and a small one (more K splits)."""


def matrix(
    gpus: tuple[Gpu, ...] = GPUS,
    dtypes: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16),
    rows: tuple[int, ...] = (1, 24, 48, 512),
) -> list[Build]:
    """Every distinct launch the heuristics make for these models' decode attention (batch 8,
    8k tokens) and linear layers (``rows`` tokens at a time), compiled for ``gpus``."""
    seen: dict[tuple[str, str, str, str], Build] = {}
    for gpu in gpus:
        for dtype in dtypes:
            for heads, kv_heads, head_dim in ATTENTION_LAYOUTS.values():
                for build in decode_attention_builds(
                    gpu, heads=heads, kv_heads=kv_heads, head_dim=head_dim, dtype=dtype
                ):
                    seen.setdefault((build.kernel, build.gpu, build.dtype, build.launch), build)
            for k, n in LINEAR_SHAPES.values():
                for m in rows:
                    for build in int4_matmul_builds(gpu, m=m, k=k, n=n, dtype=dtype):
                        seen.setdefault((build.kernel, build.gpu, build.dtype, build.launch), build)
    return list(seen.values())


def main(argv: list[str] | None = None) -> int:
    """``python -m starcoder_ls.kernels.compile_check [--gpu H100] [--json]``: compile the
    matrix and print it. Run it without TRITON_INTERPRET=1: under the interpreter Triton's own
    library functions are interpreted too, and cannot be compiled."""
    import argparse
    import dataclasses
    import json
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--gpu", action="append", choices=[g.name for g in GPUS])
    parser.add_argument("--dtype", action="append", choices=["float16", "bfloat16"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("compile_check: unset TRITON_INTERPRET to compile kernels", file=sys.stderr)
        return 2
    gpus = tuple(g for g in GPUS if not args.gpu or g.name in args.gpu)
    dtypes = tuple(getattr(torch, d) for d in args.dtype or ["float16", "bfloat16"])
    builds = matrix(gpus, dtypes)
    if args.json:
        print(json.dumps([dataclasses.asdict(b) for b in builds], indent=1))
    else:
        for b in builds:
            print(
                f"{b.gpu:5} {b.dtype:4} {b.kernel:16} {b.launch:70} regs={b.registers:3} "
                f"spill={b.spill_bytes}B smem={b.shared_bytes // 1024}K"
                + ("" if b.fits else " DOES NOT FIT")
            )
    return 0 if all(b.fits for b in builds) else 1


if __name__ == "__main__":
    raise SystemExit(main())
