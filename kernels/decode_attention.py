"""Flash-decoding attention for multi-query and grouped-query heads, in Triton.

A decode step has one query token per sequence, so there is no query length to parallelise over:
with StarCoder's multi-query attention (one KV head) a batch of 8 is only 8 (row, KV head) pairs,
far fewer than a GPU has SMs. Flash-decoding adds parallelism along the keys instead: stage 1
splits each row's key range among several programs, each writing a normalized partial output
and its log-sum-exp; stage 2 merges the splits. Each stage-1 program serves every query head of
its KV group at once, so each K/V block is read from memory once per group rather than once per
query head, which is the bandwidth saving MQA/GQA exist for.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import triton
import triton.language as tl

from .attention_reference import check_ranges, validate_decode_inputs

__all__ = ["decode_attention", "default_num_splits"]

_NAME = "decode_attention"
_LOG2E = 1.4426950408889634
# A split below this many BLOCK_N blocks spends more on its prologue and the stage-2 merge than
# its extra parallelism returns.
_MIN_BLOCKS_PER_SPLIT = 4
_MAX_DEFAULT_SPLITS = 128
# Stage 2 reads the split results in chunks of this many, so any num_splits fits in registers.
_MERGE_CHUNK = 32


@triton.jit
def _decode_stage1(
    q_ptr,
    k_ptr,
    v_ptr,
    mask_ptr,
    starts_ptr,
    lengths_ptr,
    out_ptr,
    part_o_ptr,
    part_lse_ptr,
    qk_scale,
    seq_len,
    num_kv_heads,
    num_splits,
    stride_qb,
    stride_qh,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_vb,
    stride_vh,
    stride_vn,
    stride_mb,
    stride_mn,
    stride_ob,
    stride_oh,
    stride_pb,
    stride_ph,
    stride_ps,
    stride_lb,
    stride_lh,
    GROUP: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_G: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    USE_MASK: tl.constexpr,
    SINGLE_SPLIT: tl.constexpr,
    UPCAST: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    split = tl.program_id(1)
    b = (pid_bh // num_kv_heads).to(tl.int64)
    hk = (pid_bh % num_kv_heads).to(tl.int64)

    offs_g = tl.arange(0, BLOCK_G)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    g_ok = offs_g < GROUP
    d_ok = offs_d < HEAD_DIM
    heads = hk * GROUP + offs_g
    gd_ok = g_ok[:, None] & d_ok[None, :]

    q = tl.load(
        q_ptr + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :], mask=gd_ok, other=0.0
    )
    if UPCAST:
        q = q.to(tl.float32)

    # Clamped so that out-of-range values (unchecked on the device to avoid a host sync) cannot
    # read outside the cache.
    start = tl.load(starts_ptr + b)
    start = tl.minimum(tl.maximum(start, 0), seq_len)
    length = tl.load(lengths_ptr + b)
    length = tl.minimum(tl.maximum(length, 0), seq_len - start)
    # Splits divide this row's own range, so a short row finishes in few blocks whatever the
    # longest row in the batch is.
    blocks_per_split = tl.cdiv(tl.cdiv(length, BLOCK_N), num_splits)
    lo = split * blocks_per_split * BLOCK_N
    hi = tl.minimum(lo + blocks_per_split * BLOCK_N, length)

    k_base = k_ptr + b * stride_kb + hk * stride_kh
    v_base = v_ptr + b * stride_vb + hk * stride_vh
    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    for off in range(lo, hi, BLOCK_N):
        rel = off + offs_n
        keep = rel < hi
        pos = start + rel
        if USE_MASK:
            attend = tl.load(mask_ptr + b * stride_mb + pos * stride_mn, mask=keep, other=0)
            keep = keep & (attend != 0)
        # V is loaded under the full mask too: a 0 weight times garbage (NaN) in an unused
        # cache slot would still poison the dot product.
        kv_ok = keep[:, None] & d_ok[None, :]
        k_tile = tl.load(k_base + pos[:, None] * stride_kn + offs_d[None, :], mask=kv_ok, other=0.0)
        v_tile = tl.load(v_base + pos[:, None] * stride_vn + offs_d[None, :], mask=kv_ok, other=0.0)
        if UPCAST:
            k_tile = k_tile.to(tl.float32)
            v_tile = v_tile.to(tl.float32)
        s = tl.dot(q, tl.trans(k_tile), input_precision=DOT_PRECISION) * qk_scale
        s = tl.where(keep[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        # While a head has seen no key its max is -inf; subtracting it would give NaN.
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(
            p.to(v_tile.dtype), v_tile, input_precision=DOT_PRECISION
        )
        m_i = m_new

    seen = l_i > 0.0
    l_safe = tl.where(seen, l_i, 1.0)
    out = acc / l_safe[:, None]
    if SINGLE_SPLIT:
        tl.store(
            out_ptr + b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :],
            out.to(out_ptr.dtype.element_ty),
            mask=gd_ok,
        )
    else:
        # log2-domain LSE of this split; -inf (weight 0 in the merge) when it saw no key.
        lse = tl.where(seen, m_i + tl.log2(l_safe), float("-inf"))
        tl.store(
            part_o_ptr
            + b * stride_pb
            + heads[:, None] * stride_ph
            + split * stride_ps
            + offs_d[None, :],
            out,
            mask=gd_ok,
        )
        tl.store(part_lse_ptr + b * stride_lb + heads * stride_lh + split, lse, mask=g_ok)


@triton.jit
def _decode_stage2(
    part_o_ptr,
    part_lse_ptr,
    out_ptr,
    num_q_heads,
    num_splits,
    stride_pb,
    stride_ph,
    stride_ps,
    stride_lb,
    stride_lh,
    stride_ob,
    stride_oh,
    HEAD_DIM: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    h_ok = offs_h < num_q_heads
    d_ok = offs_d < HEAD_DIM
    lse_base = part_lse_ptr + b * stride_lb + offs_h[:, None] * stride_lh  # (H, 1)
    o_base = part_o_ptr + b * stride_pb + offs_h[:, None, None] * stride_ph  # (H, 1, 1)

    # Subtracting each head's largest LSE keeps every weight in [0, 1], so no exp2 overflows.
    m_run = tl.full([BLOCK_H, BLOCK_S], float("-inf"), tl.float32)
    for s0 in range(0, num_splits, BLOCK_S):
        idx = s0 + offs_s
        hs_ok = h_ok[:, None] & (idx < num_splits)[None, :]
        lse = tl.load(lse_base + idx[None, :], mask=hs_ok, other=float("-inf"))
        m_run = tl.maximum(m_run, lse)
    m_max = tl.max(m_run, axis=1)
    m_safe = tl.where(m_max == float("-inf"), 0.0, m_max)

    acc = tl.zeros([BLOCK_H, BLOCK_D], tl.float32)
    w_run = tl.zeros([BLOCK_H, BLOCK_S], tl.float32)
    for s0 in range(0, num_splits, BLOCK_S):
        idx = s0 + offs_s
        hs_ok = h_ok[:, None] & (idx < num_splits)[None, :]
        lse = tl.load(lse_base + idx[None, :], mask=hs_ok, other=float("-inf"))
        w = tl.exp2(lse - m_safe[:, None])  # 0 for splits that saw no key
        part = tl.load(
            o_base + idx[None, :, None] * stride_ps + offs_d[None, None, :],
            mask=hs_ok[:, :, None] & d_ok[None, None, :],
            other=0.0,
        )
        acc += tl.sum(w[:, :, None] * part, axis=1)
        w_run += w
    total = tl.sum(w_run, axis=1)
    out = acc / tl.where(total > 0.0, total, 1.0)[:, None]
    tl.store(
        out_ptr + b * stride_ob + offs_h[:, None] * stride_oh + offs_d[None, :],
        out.to(out_ptr.dtype.element_ty),
        mask=h_ok[:, None] & d_ok[None, :],
    )


def _interpreted() -> bool:
    """Whether the kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1 at import)."""
    return type(_decode_stage1).__name__ == "InterpretedFunction"


def default_num_splits(work_items: int, max_len: int, block_n: int, device: torch.device) -> int:
    """Pick the number of key splits so that a launch fills the GPU without splintering rows.

    ``work_items`` is B x Hkv, the stage-1 programs per split. The target is about four programs
    per SM (enough resident programs to hide memory latency), capped so that every split of the
    longest row still gets at least ``_MIN_BLOCKS_PER_SPLIT`` blocks. Off CUDA the kernel runs in
    the interpreter, where programs execute one after another and splitting only adds work.
    """
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return gpu_num_splits(work_items, max_len, block_n, sms=sms)


def gpu_num_splits(work_items: int, max_len: int, block_n: int, *, sms: int) -> int:
    """``default_num_splits`` on a GPU with ``sms`` SMs (also for planning launches on GPUs
    this machine does not have)."""
    max_blocks = triton.cdiv(max(max_len, 0), block_n)
    if max_blocks <= 1 or work_items <= 0:
        return 1
    splits = (4 * sms) // work_items
    splits = min(splits, max_blocks // _MIN_BLOCKS_PER_SPLIT, _MAX_DEFAULT_SPLITS)
    return max(1, splits)


def _longest_row(seq_len: int, lengths: torch.Tensor | None, starts: torch.Tensor | None) -> int:
    """An upper bound on the longest row, exact when it is free to compute.

    Host-side lengths give the exact maximum; for device tensors the cache length S is used
    instead of reading them back, which would stall the decode loop on a device sync.
    """
    if lengths is not None:
        if lengths.device.type == "cpu" and lengths.numel() > 0:
            return int(lengths.max())
        return seq_len
    if starts is not None and starts.device.type == "cpu" and starts.numel() > 0:
        return seq_len - int(starts.min())
    return seq_len


def _launch_config(block_g: int, block_n: int, block_d: int, elem_size: int) -> tuple[int, int]:
    """num_warps and num_stages for stage 1 (chosen by reasoning and by what compiles without
    spills, ``compile_check``; not yet by timing on a GPU).

    Eight warps once the fp32 accumulator tile (G x D) reaches 32 x 128 keep it from spilling
    registers (with four, StarCoder-3B's 22 heads spill on Ada and Hopper). Two pipeline stages
    hide the latency of the K/V loads; one when two stages of K and V tiles would exceed 64 KiB
    of shared memory (fp32 inputs), which consumer GPUs lack.
    """
    num_warps = 8 if block_g * block_d >= 32 * 128 else 4
    kv_tile_bytes = 2 * block_n * block_d * elem_size
    num_stages = 2 if 2 * kv_tile_bytes <= 64 * 1024 else 1
    return num_warps, num_stages


def default_block_n(head_dim: int, seq_len: int, group: int = 1) -> int:
    """Keys per block: 64, or 32 where the score and accumulator tiles are large (heads over
    128 wide, 33 or more query heads per KV head) so that registers do not spill (measured with
    ``compile_check``: StarCoder-15B's 48 heads spill on an A100 with 64); short caches get a
    smaller block rather than masking off most of one."""
    block_n = 64 if head_dim <= 128 and group <= 32 else 32
    return min(block_n, max(16, triton.next_power_of_2(seq_len)))


def stage1_launch(
    group: int, head_dim: int, block_n: int, dtype: torch.dtype, *, interpreted: bool
) -> tuple[dict[str, Any], int, int]:
    """Stage 1's compile-time constants (all but USE_MASK and SINGLE_SPLIT, which depend on
    the call), num_warps and num_stages: what the wrapper launches, and what
    ``compile_check`` compiles for GPUs this machine may not have."""
    block_d = max(16, triton.next_power_of_2(head_dim))
    block_g = max(16, triton.next_power_of_2(group))
    # 16-bit tiles go into tl.dot as they are (fp32 accumulation); fp32 must not be rounded to
    # TF32. The interpreter multiplies bf16 tiles as raw integers, so there they are upcast.
    upcast = dtype == torch.bfloat16 and interpreted
    dot_precision = "ieee" if dtype == torch.float32 or upcast else None
    num_warps, num_stages = _launch_config(block_g, block_n, block_d, dtype.itemsize)
    constants = {
        "GROUP": group,
        "HEAD_DIM": head_dim,
        "BLOCK_G": block_g,
        "BLOCK_N": block_n,
        "BLOCK_D": block_d,
        "UPCAST": upcast,
        "DOT_PRECISION": dot_precision,
    }
    return constants, num_warps, num_stages


def stage2_launch(
    q_heads: int, num_splits: int, head_dim: int, *, interpreted: bool
) -> tuple[dict[str, Any], int]:
    """Stage 2's compile-time constants and num_warps."""
    block_d = max(16, triton.next_power_of_2(head_dim))
    block_s = min(_MERGE_CHUNK, triton.next_power_of_2(num_splits))
    # On a GPU one head per program spreads the merge over the SMs; the interpreter runs
    # programs one by one, so there a single program takes all of a row's heads.
    block_h = 1
    if interpreted:
        block_h = min(triton.next_power_of_2(q_heads), max(1, 2**16 // (block_s * block_d)))
    constants = {"HEAD_DIM": head_dim, "BLOCK_H": block_h, "BLOCK_S": block_s, "BLOCK_D": block_d}
    return constants, 4 if block_d >= 128 else 2


def decode_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    lengths: torch.Tensor | None = None,
    starts: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    scale: float | None = None,
    block_n: int | None = None,
    num_splits: int | None = None,
) -> torch.Tensor:
    """Decode attention with the semantics of ``decode_attention_reference``.

    ``q`` is (B, Hq, D); ``k``/``v`` are (B, Hkv, S, D) and may be strided views of a larger
    cache, read in place (only a cache whose last dimension is strided gets copied). Row ``b``
    attends keys ``[starts[b], starts[b] + lengths[b])`` that ``mask`` marks True; a row with
    no key yields zeros. ``block_n`` (a power of two >= 16) and ``num_splits`` override the
    heuristics, mainly for tests and tuning.
    """
    shape = validate_decode_inputs(
        q, k, v, lengths=lengths, starts=starts, mask=mask, scale=scale, name=_NAME
    )
    batch, q_heads, kv_heads, seq_len, head_dim = shape
    if block_n is not None and (
        not isinstance(block_n, int) or block_n < 16 or block_n & (block_n - 1)
    ):
        raise ValueError(f"{_NAME}: block_n must be a power of two >= 16, got {block_n!r}")
    if num_splits is not None and (not isinstance(num_splits, int) or num_splits < 1):
        raise ValueError(f"{_NAME}: num_splits must be a positive int, got {num_splits!r}")
    host_side = all(t is None or t.device.type == "cpu" for t in (lengths, starts))
    if host_side:
        check_ranges(seq_len, lengths, starts, name=_NAME)

    device = q.device
    out = torch.empty((batch, q_heads, head_dim), dtype=q.dtype, device=device)
    if out.numel() == 0:
        return out
    if seq_len == 0:
        return out.zero_()

    if q.stride(-1) != 1:
        q = q.contiguous()
    if k.stride(-1) != 1:
        k = k.contiguous()
    if v.stride(-1) != 1:
        v = v.contiguous()
    starts_i32 = (
        starts.to(device=device, dtype=torch.int32)
        if starts is not None
        else torch.zeros(batch, dtype=torch.int32, device=device)
    )
    lengths_i32 = (
        lengths.to(device=device, dtype=torch.int32)
        if lengths is not None
        else seq_len - starts_i32
    )
    if mask is not None:
        mask_arg = mask.view(torch.uint8)  # same itemsize: a free reinterpretation
        stride_mb, stride_mn = mask_arg.stride()
    else:
        mask_arg, stride_mb, stride_mn = lengths_i32, 0, 0  # never read

    if block_n is None:
        block_n = default_block_n(head_dim, seq_len, shape.group)
    longest = _longest_row(seq_len, lengths, starts)
    if num_splits is None:
        num_splits = default_num_splits(batch * kv_heads, longest, block_n, device)
    single = num_splits == 1
    sm_scale = 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
    constants, num_warps, num_stages = stage1_launch(
        shape.group, head_dim, block_n, q.dtype, interpreted=_interpreted()
    )

    if single:
        part_o = part_lse = out  # unused by the single-split variant
        p_strides: tuple[int, ...] = (0, 0, 0)
        l_strides: tuple[int, ...] = (0, 0)
    else:
        part_o = torch.empty(
            (batch, q_heads, num_splits, head_dim), dtype=torch.float32, device=device
        )
        part_lse = torch.empty((batch, q_heads, num_splits), dtype=torch.float32, device=device)
        p_strides = part_o.stride()[:3]
        l_strides = part_lse.stride()[:2]

    _decode_stage1[(batch * kv_heads, num_splits)](
        q,
        k,
        v,
        mask_arg,
        starts_i32,
        lengths_i32,
        out,
        part_o,
        part_lse,
        sm_scale * _LOG2E,
        seq_len,
        kv_heads,
        num_splits,
        q.stride(0),
        q.stride(1),
        k.stride(0),
        k.stride(1),
        k.stride(2),
        v.stride(0),
        v.stride(1),
        v.stride(2),
        stride_mb,
        stride_mn,
        out.stride(0),
        out.stride(1),
        *p_strides,
        *l_strides,
        USE_MASK=mask is not None,
        SINGLE_SPLIT=single,
        **constants,
        num_warps=num_warps,
        num_stages=num_stages,
    )
    if not single:
        merge, merge_warps = stage2_launch(
            q_heads, num_splits, head_dim, interpreted=_interpreted()
        )
        _decode_stage2[(batch, triton.cdiv(q_heads, merge["BLOCK_H"]))](
            part_o,
            part_lse,
            out,
            q_heads,
            num_splits,
            *p_strides,
            *l_strides,
            out.stride(0),
            out.stride(1),
            **merge,
            num_warps=merge_warps,
        )
    return out
