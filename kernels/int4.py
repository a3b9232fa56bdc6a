"""Group-wise int4 weight-only quantization of ``nn.Linear`` weights, and its PyTorch reference.

Only torch is imported here, so a model can be packed (and run through the reference matmul)
wherever the transformers backend runs; the fused Triton kernel lives in ``int4_matmul``.

Layout ("K-packed", like GPTQ/AWQ): the 4-bit code of input feature ``k = 8 * r + i`` and output
feature ``n`` sits in bits ``[4i, 4i + 4)`` of ``qweight[r, n]``. A kernel program that reads a
K-tile × N-tile of the weight then reads int32 words that are contiguous along N, which is the
fast (coalesced) direction, and each word feeds eight consecutive steps of the K reduction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "GROUP_SIZES",
    "Int4Weight",
    "dequantize_int4",
    "int4_matmul_reference",
    "pack_int4",
    "unpack_int4",
]

GROUP_SIZES = (32, 64, 128, 256)
"""Group sizes the packer accepts: multiples of 8 (whole int32 words per group) that the kernel's
power-of-two K tiles divide, from fine (more accurate, more scale traffic) to coarse."""

_PACK = 8  # codes per int32 word
_QMAX = 15
# Rows of the weight quantized at once. The fp32 temporaries of one chunk stay around
# 16M elements (a few hundred MB at most), so packing a 15B model layer by layer on its own GPU
# never needs more than a small multiple of the layer itself.
_CHUNK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class Int4Weight:
    """A packed ``(out_features, in_features)`` weight: ``w ≈ (code - zero) * scale``.

    ``qweight`` is int32 ``(K_pad // 8, N)``, with K padded by zeros to a multiple of
    ``group_size``; ``scales`` and ``zeros`` are ``(K_pad // group_size, N)`` in one float dtype,
    the zero points stored as (integral) floats so that dequantization is a float subtract and
    multiply.
    """

    qweight: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor
    group_size: int
    in_features: int
    out_features: int

    def __post_init__(self) -> None:
        k_pad = _padded(self.in_features, self.group_size)
        groups = k_pad // self.group_size
        if self.qweight.dtype != torch.int32:
            raise ValueError(f"qweight must be int32, got {self.qweight.dtype}")
        if tuple(self.qweight.shape) != (k_pad // _PACK, self.out_features):
            raise ValueError(
                f"qweight shape {tuple(self.qweight.shape)} does not match "
                f"K={self.in_features}, N={self.out_features}, group_size={self.group_size}"
            )
        for name, t in (("scales", self.scales), ("zeros", self.zeros)):
            if tuple(t.shape) != (groups, self.out_features):
                raise ValueError(f"{name} shape {tuple(t.shape)} != {(groups, self.out_features)}")
        if not self.scales.dtype.is_floating_point or self.zeros.dtype != self.scales.dtype:
            raise ValueError("scales and zeros must share one floating-point dtype")

    @property
    def padded_in_features(self) -> int:
        return self.qweight.shape[0] * _PACK

    @property
    def device(self) -> torch.device:
        return self.qweight.device

    @property
    def nbytes(self) -> int:
        """Bytes the packed weight occupies (about a quarter of fp16, plus the group metadata)."""
        return sum(t.numel() * t.element_size() for t in (self.qweight, self.scales, self.zeros))

    def to(self, device: torch.device | str) -> Int4Weight:
        return Int4Weight(
            qweight=self.qweight.to(device),
            scales=self.scales.to(device),
            zeros=self.zeros.to(device),
            group_size=self.group_size,
            in_features=self.in_features,
            out_features=self.out_features,
        )


def _padded(k: int, group_size: int) -> int:
    return -(-k // group_size) * group_size


def _round_up_to_dtype(scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``scale`` (fp32, positive) in ``dtype``, rounded up rather than to nearest.

    The codes are computed with the stored scale, so a stored scale no smaller than the exact one
    keeps ``(max - min) / stored_scale ≤ 15``: every weight of the group stays inside the code range
    and the error bound ``|w - dequant| ≤ scale / 2`` holds in every storage dtype.
    """
    stored = scale.to(dtype)
    if dtype.itemsize >= 4:
        return stored
    low = stored.float() < scale
    int_dtype = {1: torch.int8, 2: torch.int16}[dtype.itemsize]
    # For positive finite floats, incrementing the bit pattern is the next representable value.
    bumped = (stored.view(int_dtype) + low.to(int_dtype)).view(dtype)
    return bumped


def pack_int4(
    weight: torch.Tensor, group_size: int = 128, *, dtype: torch.dtype | None = None
) -> Int4Weight:
    """Quantize an ``(out_features, in_features)`` weight to group-wise asymmetric int4.

    Each group of ``group_size`` consecutive input features of one output row gets its own
    ``scale = (max - min) / 15`` and ``zero = round(-min / scale)``. The work runs in fp32 on the
    weight's own device (a 15B model packs in seconds on its GPU) and in chunks of rows, so the
    temporaries stay bounded. ``dtype`` is the dtype of scales and zeros (default: the weight's).
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got {weight.dim()}-D")
    if group_size not in GROUP_SIZES:
        raise ValueError(f"group_size must be one of {GROUP_SIZES}, got {group_size}")
    if not weight.dtype.is_floating_point:
        raise ValueError(f"weight must be a floating-point tensor, got {weight.dtype}")
    meta_dtype = weight.dtype if dtype is None else dtype
    if not meta_dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {meta_dtype}")
    n, k = weight.shape
    if n == 0 or k == 0:
        raise ValueError(f"weight must not be empty, got shape {tuple(weight.shape)}")
    if not bool(torch.isfinite(weight).all()):
        raise ValueError("weight contains non-finite values (inf or NaN); it cannot be quantized")

    k_pad = _padded(k, group_size)
    groups = k_pad // group_size
    device = weight.device
    qweight = torch.empty(k_pad // _PACK, n, dtype=torch.int32, device=device)
    scales = torch.empty(groups, n, dtype=meta_dtype, device=device)
    zeros = torch.empty(groups, n, dtype=meta_dtype, device=device)
    shifts = torch.arange(0, 4 * _PACK, 4, device=device, dtype=torch.int64)

    rows = max(1, _CHUNK_ELEMENTS // k_pad)
    for n0 in range(0, n, rows):
        n1 = min(n, n0 + rows)
        w = F.pad(weight[n0:n1].float(), (0, k_pad - k)).view(n1 - n0, groups, group_size)
        # The range always includes 0. Then zero = round(-min / scale) lands in [0, 15] without
        # clamping, so no weight of the group is pushed outside the code range (a group of all
        # positive weights would otherwise get zero = round(-min / scale) < 0, clamped to 0, and
        # lose up to its whole offset); a weight of exactly 0, and the K padding, dequantize to
        # exactly 0; and the padding cannot widen the last group's range. The price, a coarser
        # step for groups that lie entirely on one side of 0, is small for trained LLM weights,
        # whose groups straddle 0.
        w_min = w.amin(dim=-1).clamp(max=0.0)
        w_max = w.amax(dim=-1).clamp(min=0.0)
        exact = (w_max - w_min) / _QMAX
        # An all-zero group has no range; any positive scale encodes it exactly (codes = zero = 0).
        exact = torch.where(exact > 0, exact, torch.ones_like(exact))
        scale_q = _round_up_to_dtype(exact, meta_dtype)
        if not bool(torch.isfinite(scale_q).all()):
            raise ValueError(f"weight range too large for scales in {meta_dtype}")
        scale = scale_q.float()
        zero = torch.round(-w_min / scale).clamp(0, _QMAX)
        codes = torch.round(w / scale.unsqueeze(-1)) + zero.unsqueeze(-1)
        codes = codes.clamp(0, _QMAX).to(torch.int64).view(n1 - n0, k_pad // _PACK, _PACK)
        words = (codes << shifts).sum(dim=-1)  # in [0, 2**32); the top nibble sets bit 31
        words = torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)
        qweight[:, n0:n1] = words.t()
        scales[:, n0:n1] = scale_q.t()
        zeros[:, n0:n1] = zero.t().to(meta_dtype)

    return Int4Weight(
        qweight=qweight,
        scales=scales,
        zeros=zeros,
        group_size=group_size,
        in_features=k,
        out_features=n,
    )


def _unpack_padded(w: Int4Weight) -> torch.Tensor:
    shifts = torch.arange(0, 4 * _PACK, 4, device=w.device, dtype=torch.int32)
    # An arithmetic right shift sign-extends the top nibble; the mask drops those bits.
    codes = (w.qweight.unsqueeze(1) >> shifts.view(1, _PACK, 1)) & 0xF
    return codes.reshape(w.padded_in_features, w.out_features).to(torch.uint8)


def unpack_int4(w: Int4Weight) -> torch.Tensor:
    """The 4-bit codes as uint8 ``(in_features, out_features)``, without the K padding."""
    return _unpack_padded(w)[: w.in_features]


def dequantize_int4(w: Int4Weight, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The ``(out_features, in_features)`` weight, computed in fp32 and then cast to ``dtype``.

    The fp32-then-cast order is the one the Triton kernel uses, so the two see identical weights.
    """
    codes = unpack_int4(w).float()
    scales = w.scales.float().repeat_interleave(w.group_size, dim=0)[: w.in_features]
    zeros = w.zeros.float().repeat_interleave(w.group_size, dim=0)[: w.in_features]
    weight = (codes - zeros) * scales
    return weight.to(w.scales.dtype if dtype is None else dtype).t().contiguous()


def int4_matmul_reference(
    x: torch.Tensor, w: Int4Weight, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``x @ W.T + bias`` against the dequantized weight: the ground truth for ``int4_matmul``."""
    if bias is not None:
        bias = bias.to(x.dtype)
    return F.linear(x, dequantize_int4(w, x.dtype), bias)
