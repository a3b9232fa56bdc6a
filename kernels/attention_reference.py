"""Plain PyTorch decode attention: the definition the Triton kernel is tested against.

Also the fallback wherever Triton is unavailable, so it imports only torch. The input checks live
here too, so the kernel and the reference reject exactly the same inputs with the same messages.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_NAME = "decode_attention_reference"


class DecodeShape(NamedTuple):
    """The sizes both implementations need after validation."""

    batch: int
    q_heads: int
    kv_heads: int
    seq_len: int
    head_dim: int

    @property
    def group(self) -> int:
        """Query heads per KV head (1 for MHA, Hq for MQA)."""
        return self.q_heads // self.kv_heads


def validate_decode_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    lengths: torch.Tensor | None = None,
    starts: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    scale: float | None = None,
    name: str = "decode_attention",
) -> DecodeShape:
    """Reject malformed inputs with a ValueError before any kernel can read out of bounds.

    Only shapes, dtypes and devices are checked here: they are free to inspect. The values of
    ``lengths``/``starts`` are checked by :func:`check_ranges` only when that costs no device
    sync (see there).
    """
    for arg_name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: {arg_name} must be a torch.Tensor, got {type(t).__name__}")
    if q.dim() != 3:
        raise ValueError(f"{name}: q must be (B, Hq, D), got shape {tuple(q.shape)}")
    if k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"{name}: k and v must be (B, Hkv, S, D), got {tuple(k.shape)} and {tuple(v.shape)}"
        )
    if k.shape != v.shape:
        raise ValueError(f"{name}: k and v shapes differ: {tuple(k.shape)} vs {tuple(v.shape)}")
    batch, q_heads, head_dim = q.shape
    kb, kv_heads, seq_len, kd = k.shape
    if kb != batch:
        raise ValueError(f"{name}: batch size of q ({batch}) and k/v ({kb}) differ")
    if kd != head_dim:
        raise ValueError(f"{name}: head dim of q ({head_dim}) and k/v ({kd}) differ")
    if head_dim == 0:
        raise ValueError(f"{name}: head dim must be positive")
    if kv_heads == 0 or q_heads % kv_heads != 0:
        raise ValueError(
            f"{name}: query heads ({q_heads}) must be a multiple of KV heads ({kv_heads})"
        )
    if q.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"{name}: unsupported dtype {q.dtype}; use float16, bfloat16 or float32")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(
            f"{name}: q, k and v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    if k.device != q.device or v.device != q.device:
        raise ValueError(
            f"{name}: q, k and v must be on one device, got {q.device}, {k.device}, {v.device}"
        )
    for arg_name, bound in (("lengths", lengths), ("starts", starts)):
        if bound is None:
            continue
        if not isinstance(bound, torch.Tensor):
            raise ValueError(f"{name}: {arg_name} must be a tensor or None")
        if bound.shape != (batch,):
            raise ValueError(
                f"{name}: {arg_name} must have shape ({batch},), got {tuple(bound.shape)}"
            )
        if bound.dtype == torch.bool or bound.dtype.is_floating_point or bound.dtype.is_complex:
            raise ValueError(f"{name}: {arg_name} must be an integer tensor, got {bound.dtype}")
        # Host-side lengths are common (the scheduler keeps them in Python) and cost nothing to
        # copy; any other device is a mistake.
        if bound.device != q.device and bound.device.type != "cpu":
            raise ValueError(f"{name}: {arg_name} is on {bound.device}, but q is on {q.device}")
    if mask is not None:
        if not isinstance(mask, torch.Tensor):
            raise ValueError(f"{name}: mask must be a tensor or None")
        if mask.shape != (batch, seq_len):
            raise ValueError(
                f"{name}: mask must have shape ({batch}, {seq_len}), got {tuple(mask.shape)}"
            )
        if mask.dtype != torch.bool:
            raise ValueError(
                f"{name}: mask must be a bool tensor (True = attend), got {mask.dtype}"
            )
        if mask.device != q.device:
            raise ValueError(f"{name}: mask is on {mask.device}, but q is on {q.device}")
    if scale is not None and not (isinstance(scale, int | float) and math.isfinite(scale)):
        raise ValueError(f"{name}: scale must be a finite number, got {scale!r}")
    return DecodeShape(batch, q_heads, kv_heads, seq_len, head_dim)


def check_ranges(
    seq_len: int,
    lengths: torch.Tensor | None,
    starts: torch.Tensor | None,
    *,
    name: str = "decode_attention",
) -> None:
    """Check 0 <= starts, 0 <= lengths and starts + lengths <= S.

    Reading tensor values forces a device-to-host sync, which a per-token decode step cannot
    afford; callers skip this for accelerator tensors (the kernel clamps the range instead, so a
    bad value cannot read out of bounds).
    """
    start_v = starts.to(torch.int64) if starts is not None else None
    if start_v is not None:
        if bool((start_v < 0).any()):
            raise ValueError(f"{name}: starts must be >= 0")
        if bool((start_v > seq_len).any()):
            raise ValueError(f"{name}: starts must be <= S ({seq_len})")
    if lengths is None:
        return
    len_v = lengths.to(torch.int64)
    if bool((len_v < 0).any()):
        raise ValueError(f"{name}: lengths must be >= 0")
    end = len_v if start_v is None else len_v + start_v.to(len_v.device)
    if bool((end > seq_len).any()):
        raise ValueError(f"{name}: starts + lengths must be <= S ({seq_len})")


def valid_keys(
    shape: DecodeShape,
    lengths: torch.Tensor | None,
    starts: torch.Tensor | None,
    mask: torch.Tensor | None,
    device: torch.device,
) -> torch.Tensor:
    """The (B, S) bool matrix of keys each row attends: its range, intersected with ``mask``."""
    pos = torch.arange(shape.seq_len, device=device)
    lo = (
        starts.to(device=device, dtype=torch.int64)
        if starts is not None
        else torch.zeros(shape.batch, dtype=torch.int64, device=device)
    )
    hi = lo + lengths.to(device=device, dtype=torch.int64) if lengths is not None else None
    keep = pos[None, :] >= lo[:, None]
    if hi is not None:
        keep &= pos[None, :] < hi[:, None]
    if mask is not None:
        keep &= mask
    return keep


def decode_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    lengths: torch.Tensor | None = None,
    starts: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """One query token per row against its KV cache, in fp32, returned in ``q.dtype``.

    Query head ``h`` reads KV head ``h // (Hq // Hkv)``, the grouping of transformers'
    ``repeat_kv``. Row ``b`` attends keys in ``[starts[b], starts[b] + lengths[b])`` that
    ``mask`` (if given) marks True. Keys outside that set contribute nothing even when the
    cache holds non-finite garbage there, and a row with no key at all yields zeros, not NaN.
    """
    shape = validate_decode_inputs(
        q, k, v, lengths=lengths, starts=starts, mask=mask, scale=scale, name=_NAME
    )
    check_ranges(shape.seq_len, lengths, starts, name=_NAME)
    batch, q_heads, kv_heads, _, head_dim = shape
    sm_scale = 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
    if shape.seq_len == 0:  # nothing to attend (and amax over an empty dim raises)
        return q.new_zeros(q.shape)

    keep = valid_keys(shape, lengths, starts, mask, q.device)  # (B, S)
    qf = q.float().reshape(batch, kv_heads, shape.group, head_dim)
    kf = k.float().masked_fill(~keep[:, None, :, None], 0.0)
    vf = v.float().masked_fill(~keep[:, None, :, None], 0.0)
    scores = torch.einsum("bhgd,bhsd->bhgs", qf, kf) * sm_scale
    scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    row_max = scores.amax(dim=-1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    p = torch.exp(scores - row_max)
    denom = p.sum(dim=-1, keepdim=True)
    out = torch.einsum("bhgs,bhsd->bhgd", p, vf) / torch.where(denom > 0, denom, 1.0)
    return out.reshape(batch, q_heads, head_dim).to(q.dtype)
