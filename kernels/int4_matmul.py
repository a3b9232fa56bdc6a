"""Fused int4 dequantize-matmul in Triton: ``x @ W.T + bias`` with W packed by ``pack_int4``.

The weight is dequantized in registers, tile by tile, and never exists in memory at full width, so
a decode step reads about a quarter of the bytes of an fp16 weight; that is the whole point for
memory-bound GEMV-like decode. One kernel serves two launch shapes:

- decode (M ≤ 16): a single 16-row M tile, so the grid has only ``N / BLOCK_N`` output tiles;
  split-K spreads the K reduction over several programs until the GPU's SMs are filled, writes
  fp32 partials to a workspace, and a second small kernel adds them up in a fixed order, so the
  result does not depend on scheduling (no atomics);
- prefill (M > 16): larger M tiles, no split, and grouped program ordering so that consecutive
  programs reuse the same weight tiles from L2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl

from .int4 import Int4Weight

__all__ = ["Int4MatmulConfig", "int4_matmul", "int4_matmul_config"]

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_DECODE_MAX_M = 16
_MAX_SPLIT_K = 32
# Stand-in for the SM count off CUDA (Triton's interpreter runs programs one after another, so
# more splits only add work; two still exercise the split-K path in ordinary use).
_CPU_SMS = 2
_MIN_SHARED_MEMORY = 99 * 1024
REDUCE_BLOCK, REDUCE_WARPS = 1024, 4
"""The split-K sum's launch: outputs per program, and warps."""  # what consumer Ampere/Ada GPUs let one block opt in to


@dataclass(frozen=True)
class Int4MatmulConfig:
    """Tile sizes and split-K of one launch; the heuristic picks one, tests and benchmarks can
    force one. ``block_k`` must divide the weight's group size so that each K tile needs a single
    row of scales and zeros."""

    block_m: int
    block_n: int
    block_k: int
    split_k: int = 1
    group_m: int = 8
    num_warps: int = 4
    num_stages: int = 3

    def validate(self, group_size: int) -> None:
        for name in ("block_m", "block_n", "block_k"):
            value = getattr(self, name)
            if value < 16 or value & (value - 1):
                raise ValueError(f"{name} must be a power of two ≥ 16, got {value}")
        if group_size % self.block_k:
            raise ValueError(f"block_k={self.block_k} must divide group_size={group_size}")
        if self.split_k < 1 or self.group_m < 1:
            raise ValueError("split_k and group_m must be ≥ 1")


def _sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).multi_processor_count)
    return _CPU_SMS


def _shared_memory(device: torch.device) -> int:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return int(getattr(props, "shared_memory_per_block_optin", 0) or _MIN_SHARED_MEMORY)
    return 1 << 30  # the interpreter has no shared memory to run out of


def _stages(
    block_m: int, block_n: int, block_k: int, x_bytes: int, shared_memory: int, want: int
) -> int:
    """Pipeline depth that fits shared memory: H100s take ``want``, 100 KB consumer GPUs fewer.

    Each stage buffers an x tile and the int32 weight tile as loaded, one word per k (eight times
    the packed bytes, the price of the simple unpacking); the dequantized dot operand is one more
    buffer outside the pipeline.
    """
    per_stage = block_m * block_k * x_bytes + block_k * block_n * 4
    fixed = block_k * block_n * x_bytes
    return max(1, min(want, (shared_memory - fixed) // per_stage))


def int4_matmul_config(
    m: int,
    n: int,
    k: int,
    group_size: int,
    device: torch.device,
    dtype: torch.dtype = torch.float16,
) -> Int4MatmulConfig:
    """The launch the heuristic picks for an ``(m, k) @ (k, n)`` product with ``x`` in ``dtype``.

    Decode is bound by reading the weight: 16 × 64 output tiles with long (128) K steps keep many
    programs streaming it, and split-K targets about two programs per SM (e.g. K = N = 2048 gives
    32 tiles × 8 splits = 256 programs on an H100's 132 SMs), while each split still covers whole
    K tiles. Prefill is bound by the tensor cores: bigger M tiles as M grows, 128-wide N tiles and
    32-deep K steps, with the stages that fit. Warps and K depths are the ones that compile
    without register spills for sm_80, sm_89 and sm_90 (``compile_check``; eight warps for the
    decode tile: with four, Hopper spills 160 bytes per thread).
    """
    if device.type != "cuda":
        # Triton's interpreter runs programs one after another and pays per tile operation,
        # not per element: the fewest, largest tiles are fastest (about 10x on the bundled
        # model's layers against the GPU tiles).
        return Int4MatmulConfig(
            min(256, max(16, triton.next_power_of_2(m))),
            min(1024, max(16, triton.next_power_of_2(n))),
            group_size,
        )
    return gpu_config(
        m, n, k, group_size, dtype, sms=_sm_count(device), shared_memory=_shared_memory(device)
    )


def gpu_config(
    m: int,
    n: int,
    k: int,
    group_size: int,
    dtype: torch.dtype,
    *,
    sms: int,
    shared_memory: int,
) -> Int4MatmulConfig:
    """``int4_matmul_config`` on a GPU with ``sms`` SMs and ``shared_memory`` bytes per block
    (opt-in), so a launch can be planned, and compiled, for a GPU this machine lacks."""
    x_bytes = dtype.itemsize
    if m <= _DECODE_MAX_M:
        block_n, block_k = 64, min(128, group_size)
        tiles = triton.cdiv(n, block_n)
        k_tiles = triton.cdiv(k, block_k)
        want = triton.cdiv(2 * sms, tiles)
        split = max(1, min(want, k_tiles, _MAX_SPLIT_K))
        # Whole K tiles per split; drop splits that would be left with nothing to do.
        split = triton.cdiv(k_tiles, triton.cdiv(k_tiles, split))
        stages = _stages(_DECODE_MAX_M, block_n, block_k, x_bytes, shared_memory, 4)
        return Int4MatmulConfig(
            _DECODE_MAX_M, block_n, block_k, split_k=split, num_warps=8, num_stages=stages
        )
    block_k = min(32, group_size)
    block_m, warps = (32, 4) if m <= 32 else (64, 8) if m <= 64 else (128, 8)
    stages = _stages(block_m, 128, block_k, x_bytes, shared_memory, 4)
    return Int4MatmulConfig(block_m, 128, block_k, num_warps=warps, num_stages=stages)


@triton.jit
def _round_to_bf16(v):
    """fp32 ``v`` rounded to the nearest bfloat16 (ties to even), still held as fp32.

    Only for Triton's CPU interpreter, which multiplies bf16 ``tl.dot`` operands as their raw
    integer bits and truncates fp32 → bf16 casts. Rounding by hand and multiplying in fp32 is
    exactly the arithmetic of a bf16 ``tl.dot`` with fp32 accumulation on a GPU.
    """
    bits = v.to(tl.uint32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _int4_matmul_kernel(
    x_ptr,
    qw_ptr,
    scales_ptr,
    zeros_ptr,
    bias_ptr,
    out_ptr,
    M,
    N,
    K,
    stride_xm,
    stride_xk,
    stride_qk,
    stride_qn,
    stride_sg,
    stride_sn,
    stride_om,
    stride_on,
    stride_os,
    tiles_per_split,
    GROUP_SIZE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    SPLIT_K: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    EMULATE_BF16: tl.constexpr,
):
    """One (BLOCK_M, BLOCK_N) output tile over one split of K.

    With ``SPLIT_K == 1`` it writes the finished tile (bias added, cast to the output dtype);
    otherwise ``out_ptr`` is the fp32 workspace and split ``s`` writes its partial sums at
    ``s * stride_os``.
    """
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    # Grouped ordering: GROUP_M consecutive M tiles walk the N tiles together, so the weight tiles
    # they share are still in L2 when the neighbours ask for them.
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_rows = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + (pid % num_pid_in_group) % group_rows
    pid_n = (pid % num_pid_in_group) // group_rows

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < M
    mask_n = offs_n < N
    x_rows = x_ptr + offs_m.to(tl.int64)[:, None] * stride_xm
    w_cols = offs_n[None, :] * stride_qn

    k_tiles = tl.cdiv(K, BLOCK_K)
    tile_start = pid_k * tiles_per_split
    tile_end = tl.minimum(tile_start + tiles_per_split, k_tiles)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for tile in range(tile_start, tile_end):
        offs_k = tile * BLOCK_K + tl.arange(0, BLOCK_K)
        mask_k = offs_k < K
        a = tl.load(
            x_rows + offs_k[None, :] * stride_xk,
            mask=mask_m[:, None] & mask_k[None, :],
            other=0.0,
        )
        # Eight consecutive k share one int32 word; the repeated loads hit the same cache lines.
        packed = tl.load(
            qw_ptr + (offs_k // 8)[:, None] * stride_qk + w_cols,
            mask=mask_k[:, None] & mask_n[None, :],
            other=0,
        )
        # BLOCK_K divides GROUP_SIZE, so the whole K tile lies in one group.
        group = (tile * BLOCK_K) // GROUP_SIZE
        scale = tl.load(scales_ptr + group * stride_sg + offs_n * stride_sn, mask=mask_n, other=0.0)
        zero = tl.load(zeros_ptr + group * stride_sg + offs_n * stride_sn, mask=mask_n, other=0.0)
        codes = (packed >> ((offs_k % 8) * 4)[:, None]) & 0xF
        w = (codes.to(tl.float32) - zero.to(tl.float32)[None, :]) * scale.to(tl.float32)[None, :]
        if EMULATE_BF16:
            acc = tl.dot(a.to(tl.float32), _round_to_bf16(w), acc, input_precision="ieee")
        else:
            acc = tl.dot(a, w.to(x_ptr.dtype.element_ty), acc, input_precision=INPUT_PRECISION)

    out_ptrs = (
        out_ptr
        + pid_k.to(tl.int64) * stride_os
        + offs_m.to(tl.int64)[:, None] * stride_om
        + offs_n[None, :] * stride_on
    )
    mask_out = mask_m[:, None] & mask_n[None, :]
    if SPLIT_K == 1:
        if HAS_BIAS:
            acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
        if EMULATE_BF16:
            acc = _round_to_bf16(acc)
        tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=mask_out)
    else:
        tl.store(out_ptrs, acc, mask=mask_out)


@triton.jit
def _split_k_reduce_kernel(
    ws_ptr,
    bias_ptr,
    out_ptr,
    numel,
    N,
    SPLIT_K: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    EMULATE_BF16: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Sums the split-K partials in split order, so the result is the same on every run."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    partials = ws_ptr + offs
    for _ in range(SPLIT_K):
        acc += tl.load(partials, mask=mask, other=0.0)
        partials += numel  # pointer steps, so split * numel never overflows int32
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs % N, mask=mask, other=0.0).to(tl.float32)
    if EMULATE_BF16:
        acc = _round_to_bf16(acc)
    tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)


def kernel_constants(
    cfg: Int4MatmulConfig,
    group_size: int,
    split: int,
    dtype: torch.dtype,
    has_bias: bool,
    emulate_bf16: bool = False,
) -> dict[str, Any]:
    """The main kernel's compile-time constants for a launch: what ``int4_matmul`` passes, and
    what ``compile_check`` compiles for GPUs this machine may not have."""
    return {
        "GROUP_SIZE": group_size,
        "BLOCK_M": cfg.block_m,
        "BLOCK_N": cfg.block_n,
        "BLOCK_K": cfg.block_k,
        "GROUP_M": cfg.group_m,
        "SPLIT_K": split,
        "HAS_BIAS": has_bias,
        # TF32 would cost fp32 inputs 13 mantissa bits; 16-bit inputs take the default.
        "INPUT_PRECISION": "ieee" if dtype == torch.float32 else None,
        "EMULATE_BF16": emulate_bf16,
    }


def int4_matmul(
    x: torch.Tensor,
    w: Int4Weight,
    bias: torch.Tensor | None = None,
    *,
    config: Int4MatmulConfig | None = None,
) -> torch.Tensor:
    """``x @ W.T + bias`` for ``x`` of shape ``(..., in_features)``; the result is in ``x.dtype``.

    Agrees with ``int4_matmul_reference`` up to the order of the fp32 accumulation. ``config``
    overrides the heuristic launch (``int4_matmul_config``).
    """
    if x.dtype not in _DTYPES:
        raise ValueError(f"x must be float16, bfloat16 or float32, got {x.dtype}")
    if x.shape[-1] != w.in_features:
        raise ValueError(f"x has {x.shape[-1]} features, the weight expects {w.in_features}")
    if x.device != w.device:
        raise ValueError(f"x is on {x.device}, the weight on {w.device}")
    n, k = w.out_features, w.in_features
    if bias is not None and (tuple(bias.shape) != (n,) or bias.device != x.device):
        raise ValueError(f"bias must have shape ({n},) on {x.device}")

    lead = x.shape[:-1]
    if x.stride(-1) != 1:
        x = x.contiguous()
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    if m == 0:
        return out.view(*lead, n)
    cfg = config or int4_matmul_config(m, n, k, w.group_size, x.device, x.dtype)
    cfg.validate(w.group_size)

    k_tiles = triton.cdiv(k, cfg.block_k)
    tiles_per_split = triton.cdiv(k_tiles, cfg.split_k)
    split = triton.cdiv(k_tiles, tiles_per_split)  # no split without K tiles of its own
    # One set of strides serves scales and zeros (both are contiguous unless built by hand).
    scales, zeros = w.scales.contiguous(), w.zeros.contiguous()
    bias_arg = bias.contiguous() if bias is not None else out  # never read without HAS_BIAS
    target = out if split == 1 else torch.empty(split, m, n, dtype=torch.float32, device=x.device)
    # Off CUDA the kernels can only be running in Triton's interpreter (see _round_to_bf16).
    emulate_bf16 = x.dtype == torch.bfloat16 and x.device.type != "cuda"
    grid = (triton.cdiv(m, cfg.block_m) * triton.cdiv(n, cfg.block_n), split)
    _int4_matmul_kernel[grid](
        x2,
        w.qweight,
        scales,
        zeros,
        bias_arg,
        target,
        m,
        n,
        k,
        x2.stride(0),
        x2.stride(1),
        w.qweight.stride(0),
        w.qweight.stride(1),
        scales.stride(0),
        scales.stride(1),
        n,
        1,
        m * n,
        tiles_per_split,
        **kernel_constants(cfg, w.group_size, split, x.dtype, bias is not None, emulate_bf16),
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    if split > 1:
        _split_k_reduce_kernel[(triton.cdiv(m * n, REDUCE_BLOCK),)](
            target,
            bias_arg,
            out,
            m * n,
            n,
            SPLIT_K=split,
            HAS_BIAS=bias is not None,
            EMULATE_BF16=emulate_bf16,
            BLOCK=REDUCE_BLOCK,
            num_warps=REDUCE_WARPS,
        )
    return out.view(*lead, n)
