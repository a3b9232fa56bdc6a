"""The flash-decoding kernel against its PyTorch reference, and the reference against SDPA.

Without a GPU the kernel runs in Triton's CPU interpreter (tests/conftest.py sets
TRITON_INTERPRET=1), where every program runs one after another in Python: interpreter shapes
stay small (S <= ~300, B <= 4) and the StarCoder-sized shapes run only in the ``cuda`` tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from starcoder_ls.kernels import decode_attention as decode_module
from starcoder_ls.kernels.attention_reference import decode_attention_reference
from starcoder_ls.kernels.decode_attention import decode_attention, default_num_splits

# Kernels on CPU tensors run only in the interpreter; the GPU tests below are marked cuda.
pytestmark = pytest.mark.interpreter

# Both sides accumulate in fp32; what differs is rounding. fp32: only summation order (and exp2
# vs exp), so errors stay near 1e-6 relative. fp16 (11-bit mantissa): the output rounds to a
# half-ulp of 2^-11 ~ 4.9e-4 relative and the GPU kernel also rounds the softmax weights to
# fp16 before the P.V product. bf16 (8-bit mantissa): a half-ulp is 2^-9 ~ 2e-3 relative, two
# independent roundings can land an ulp (3.9e-3 relative, ~1.6e-2 absolute for outputs in
# [2, 4)) apart, and the GPU kernel rounds the weights to bf16 too.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {  # (atol, rtol)
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (2e-2, 2e-2),
}
DTYPES = list(TOLERANCES)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    atol, rtol = TOLERANCES[dtype]
    assert actual.shape == expected.shape
    assert not torch.isnan(actual).any(), "NaN in output"
    torch.testing.assert_close(actual.float(), expected.float(), atol=atol, rtol=rtol)


@dataclass(frozen=True)
class Case:
    """One decode call: sizes, which rows attend where, and kernel overrides."""

    batch: int
    q_heads: int
    kv_heads: int
    seq_len: int
    head_dim: int
    lengths: tuple[int, ...] | None = None
    right_aligned: bool = False  # starts = S - lengths (the team server's left-padded cache)
    mask_holes: float = 0.0  # fraction of keys masked off at random
    scale: float | None = None
    block_n: int | None = None
    num_splits: int | None = None


def make_qkv(
    case: Case, dtype: torch.dtype, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    b, hq, hkv, s, d = case.batch, case.q_heads, case.kv_heads, case.seq_len, case.head_dim
    q = torch.randn(b, hq, d, generator=gen).to(dtype)
    k = torch.randn(b, hkv, s, d, generator=gen).to(dtype)
    v = torch.randn(b, hkv, s, d, generator=gen).to(dtype)
    return q, k, v


def make_rows(case: Case, seed: int = 0) -> dict[str, Any]:
    """lengths / starts / mask keyword arguments for ``case`` (absent ones left out)."""
    kwargs: dict[str, Any] = {}
    if case.lengths is not None:
        lengths = torch.tensor(case.lengths, dtype=torch.int64)
        kwargs["lengths"] = lengths
        if case.right_aligned:
            kwargs["starts"] = (case.seq_len - lengths).to(torch.int32)
    if case.mask_holes:
        gen = torch.Generator().manual_seed(seed + 1)
        kwargs["mask"] = torch.rand(case.batch, case.seq_len, generator=gen) >= case.mask_holes
    if case.scale is not None:
        kwargs["scale"] = case.scale
    return kwargs


def sdpa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    lengths: torch.Tensor | None = None,
    starts: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """The same attention built independently: repeat_interleave'd KV heads and torch SDPA."""
    b, hq, _ = q.shape
    s = k.shape[2]
    group = hq // k.shape[1]
    pos = torch.arange(s)
    lo = starts.long() if starts is not None else torch.zeros(b, dtype=torch.long)
    n = lengths.long() if lengths is not None else s - lo
    keep = (pos >= lo[:, None]) & (pos < (lo + n)[:, None])
    if mask is not None:
        keep &= mask
    kd = k.double().repeat_interleave(group, dim=1)
    vd = v.double().repeat_interleave(group, dim=1)
    # Unused cache slots may hold garbage; SDPA would multiply it by a zero weight.
    kd = kd.masked_fill(~keep[:, None, :, None], 0.0)
    vd = vd.masked_fill(~keep[:, None, :, None], 0.0)
    out = F.scaled_dot_product_attention(
        q.double()[:, :, None, :], kd, vd, attn_mask=keep[:, None, None, :], scale=scale
    )[:, :, 0, :]
    has_key = keep.any(dim=1)
    out = torch.where(has_key[:, None, None], out, torch.zeros_like(out))
    return out.to(q.dtype)


CASES: dict[str, Case] = {
    "s1": Case(2, 4, 1, 1, 64),
    "s37-mqa-g4": Case(2, 4, 1, 37, 64, lengths=(37, 20)),
    "s129-gqa-g3-splits3": Case(2, 6, 2, 129, 64, lengths=(129, 65), num_splits=3),
    "s128-block-multiple": Case(2, 8, 2, 128, 32, block_n=32, num_splits=2),
    "s100-mqa-g48": Case(2, 48, 1, 100, 128, lengths=(100, 63), num_splits=2),
    "s70-gqa-g12": Case(1, 48, 4, 70, 128, lengths=(70,)),
    "s50-mha": Case(2, 4, 4, 50, 32, lengths=(50, 1)),
    "d80": Case(2, 4, 1, 45, 80, lengths=(45, 31), num_splits=2),
    "mixed-with-1-and-0": Case(4, 4, 1, 40, 64, lengths=(40, 1, 0, 17), num_splits=2),
    "right-aligned": Case(3, 6, 2, 90, 64, lengths=(90, 33, 1), right_aligned=True),
    "mask-holes": Case(3, 4, 1, 77, 64, lengths=(77, 50, 12), mask_holes=0.4, num_splits=3),
    "custom-scale": Case(2, 4, 2, 33, 64, scale=0.37),
}
# Every case in fp16 (the usual serving dtype); fp32 and bf16 on a cross-section.
FP32_AND_BF16 = ["s37-mqa-g4", "s129-gqa-g3-splits3", "s100-mqa-g48", "d80", "mask-holes"]
KERNEL_PARAMS = [pytest.param(name, torch.float16, id=f"{name}-float16") for name in CASES] + [
    pytest.param(name, dtype, id=f"{name}-{str(dtype).removeprefix('torch.')}")
    for name in FP32_AND_BF16
    for dtype in (torch.float32, torch.bfloat16)
]


@pytest.mark.parametrize(("name", "dtype"), KERNEL_PARAMS)
def test_kernel_matches_reference(name: str, dtype: torch.dtype) -> None:
    case = CASES[name]
    q, k, v = make_qkv(case, dtype)
    rows = make_rows(case)
    out = decode_attention(q, k, v, **rows, block_n=case.block_n, num_splits=case.num_splits)
    assert out.dtype == dtype
    assert_close(out, decode_attention_reference(q, k, v, **rows), dtype)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_reference_matches_sdpa(name: str, dtype: torch.dtype) -> None:
    case = CASES[name]
    q, k, v = make_qkv(case, dtype)
    rows = make_rows(case)
    assert_close(
        decode_attention_reference(q, k, v, **rows), sdpa_attention(q, k, v, **rows), dtype
    )


@pytest.mark.parametrize("num_splits", [1, 2, 5, 16])
def test_num_splits_agree(num_splits: int) -> None:
    """Splits, including more splits than a row has blocks (16 > 3), leave the result intact."""
    case = Case(2, 4, 1, 150, 64, lengths=(150, 20), right_aligned=True, mask_holes=0.2)
    q, k, v = make_qkv(case, torch.float32, seed=3)
    rows = make_rows(case, seed=3)
    out = decode_attention(q, k, v, **rows, block_n=64, num_splits=num_splits)
    assert_close(out, decode_attention_reference(q, k, v, **rows), torch.float32)


def test_rows_without_keys_give_zeros() -> None:
    case = Case(4, 6, 2, 48, 64)
    q, k, v = make_qkv(case, torch.float16, seed=5)
    lengths = torch.tensor([0, 48, 5, 7])
    mask = torch.ones(4, 48, dtype=torch.bool)
    mask[2] = False  # a row whose mask removes every key of its range
    mask[3, :7] = False  # keys left only outside the range: also none
    for num_splits in (1, 4):
        out = decode_attention(q, k, v, lengths=lengths, mask=mask, num_splits=num_splits)
        assert not torch.isnan(out).any()
        assert torch.equal(out[[0, 2, 3]], torch.zeros_like(out[[0, 2, 3]]))
        ref = decode_attention_reference(q, k, v, lengths=lengths, mask=mask)
        assert_close(out, ref, torch.float16)


def test_empty_cache_and_empty_batch() -> None:
    q = torch.randn(2, 4, 64)
    empty_kv = torch.randn(2, 1, 0, 64)
    assert torch.equal(decode_attention(q, empty_kv, empty_kv), torch.zeros(2, 4, 64))
    assert torch.equal(decode_attention_reference(q, empty_kv, empty_kv), torch.zeros(2, 4, 64))
    no_rows = torch.randn(0, 1, 8, 64)
    assert decode_attention(q[:0], no_rows, no_rows).shape == (0, 4, 64)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_strided_cache_views_and_garbage(dtype: torch.dtype) -> None:
    """K/V as views of larger buffers, with NaN in every slot a row must not read."""
    b, hq, hkv, s, d, capacity = 3, 6, 2, 70, 64, 96
    gen = torch.Generator().manual_seed(7)
    lengths = torch.tensor([70, 9, 1])
    starts = s - lengths
    mask = torch.rand(b, capacity, generator=gen) > 0.25
    mask[:, s - 1] = True

    # k: the used prefix of a preallocated (B, Hkv, capacity, D) cache.
    k_buf = torch.randn(b, hkv, capacity, d, generator=gen).to(dtype)
    # v: the (B, Hkv, S, D) transpose of a (B, capacity, Hkv, D) buffer.
    v_buf = torch.randn(b, capacity, hkv, d, generator=gen).to(dtype)
    # q: one token of a (B, Hq, 2, D) tensor, so its head stride is 2 * D.
    q = torch.randn(b, hq, 2, d, generator=gen).to(dtype)[:, :, 1]
    for row in range(b):
        k_buf[row, :, : int(starts[row])] = float("nan")
        v_buf[row, : int(starts[row])] = float("nan")
        masked = torch.nonzero(~mask[row, :s]).flatten()
        v_buf[row, masked] = float("nan")
        k_buf[row, :, masked] = float("nan")
    k_buf[:, :, s:] = float("nan")
    v_buf[:, s:] = float("nan")
    k = k_buf[:, :, :s]
    v = v_buf[:, :s].transpose(1, 2)
    mask_view = mask[:, :s]  # a non-contiguous (B, S) mask
    assert not k.is_contiguous() and not v.is_contiguous() and not mask_view.is_contiguous()

    rows: dict[str, Any] = dict(lengths=lengths, starts=starts, mask=mask_view)
    expected = decode_attention_reference(q, k.contiguous(), v.contiguous(), **rows)
    assert not torch.isnan(expected).any()
    for num_splits in (1, 3):
        out = decode_attention(q, k, v, **rows, num_splits=num_splits)
        assert_close(out, expected, dtype)


def test_head_dim_not_contiguous_is_copied() -> None:
    """A cache whose last dim is strided is accepted (copied) rather than misread."""
    case = Case(2, 4, 1, 40, 64, lengths=(40, 11))
    q, k, v = make_qkv(case, torch.float32, seed=9)
    k_t = k.transpose(-1, -2).contiguous().transpose(-1, -2)  # same values, stride(-1) == S
    assert k_t.stride(-1) != 1
    rows = make_rows(case)
    out = decode_attention(q, k_t, v, **rows)
    assert_close(out, decode_attention_reference(q, k, v, **rows), torch.float32)


def test_default_scale_is_inverse_sqrt_head_dim() -> None:
    case = Case(1, 4, 1, 20, 80)
    q, k, v = make_qkv(case, torch.float32, seed=11)
    explicit = decode_attention(q, k, v, scale=1 / math.sqrt(80))
    assert_close(decode_attention(q, k, v), explicit, torch.float32)


def _bad(**changes: Any) -> dict[str, Any]:
    q = torch.randn(2, 4, 16)
    kv = torch.randn(2, 2, 8, 16)
    args: dict[str, Any] = dict(q=q, k=kv, v=kv)
    args.update(changes)
    return args


BAD_INPUTS = {
    "q-not-3d": (_bad(q=torch.randn(2, 4, 1, 16)), "q must be"),
    "kv-not-4d": (_bad(k=torch.randn(2, 8, 16)), "k and v must be"),
    "k-v-shapes": (_bad(v=torch.randn(2, 2, 9, 16)), "shapes differ"),
    "batch": (_bad(q=torch.randn(3, 4, 16)), "batch size"),
    "head-dim": (_bad(q=torch.randn(2, 4, 32)), "head dim"),
    "hq-not-multiple": (_bad(q=torch.randn(2, 3, 16)), "multiple of KV heads"),
    "dtype-unsupported": (
        _bad(q=torch.randn(2, 4, 16, dtype=torch.float64), k=torch.randn(2, 2, 8, 16).double()),
        "unsupported dtype",
    ),
    "dtype-mixed": (_bad(k=torch.randn(2, 2, 8, 16).half()), "share a dtype"),
    "device": (_bad(k=torch.randn(2, 2, 8, 16, device="meta")), "one device"),
    "mask-device": (_bad(mask=torch.ones(2, 8, dtype=torch.bool, device="meta")), "mask is on"),
    "lengths-shape": (_bad(lengths=torch.tensor([1, 2, 3])), "lengths must have shape"),
    "lengths-dtype": (_bad(lengths=torch.tensor([1.0, 2.0])), "integer tensor"),
    "lengths-too-long": (_bad(lengths=torch.tensor([9, 2])), "<= S"),
    "lengths-negative": (_bad(lengths=torch.tensor([-1, 2])), ">= 0"),
    "starts-plus-lengths": (
        _bad(starts=torch.tensor([4, 0]), lengths=torch.tensor([5, 8])),
        "starts \\+ lengths",
    ),
    "mask-shape": (_bad(mask=torch.ones(2, 7, dtype=torch.bool)), "mask must have shape"),
    "mask-dtype": (_bad(mask=torch.ones(2, 8, dtype=torch.uint8)), "bool tensor"),
    "scale": (_bad(scale=float("nan")), "scale must be"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
@pytest.mark.parametrize(
    "fn", [decode_attention, decode_attention_reference], ids=["kernel", "ref"]
)
def test_bad_inputs_raise(name: str, fn: Any) -> None:
    args, message = BAD_INPUTS[name]
    with pytest.raises(ValueError, match=message):
        fn(**args)


@pytest.mark.parametrize(
    "override", [dict(block_n=48), dict(block_n=8), dict(num_splits=0), dict(num_splits=1.5)]
)
def test_bad_overrides_raise(override: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"block_n|num_splits"):
        decode_attention(**_bad(), **override)


def test_default_num_splits_heuristic(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(
        decode_module.torch.cuda,
        "get_device_properties",
        lambda device: SimpleNamespace(multi_processor_count=132),
    )
    # StarCoder-15B decode, batch 8 (MQA: 8 programs per split): fill ~4 programs per SM, but
    # no split gets fewer than 4 of the 128 blocks.
    assert default_num_splits(8, 8192, 64, cuda) == 32
    assert default_num_splits(8, 1024, 64, cuda) == 4  # 16 blocks: capped at 4 per split
    assert default_num_splits(1, 10**6, 64, cuda) == 128  # hard cap
    assert default_num_splits(600, 8192, 64, cuda) == 1  # already > 4 programs per SM
    assert default_num_splits(8, 100, 64, cuda) == 1  # 2 blocks: nothing to split
    assert default_num_splits(8, 8192, 64, torch.device("cpu")) == 1  # the interpreter


# --- On a real GPU: StarCoder-family decode shapes against the reference. ---------------------

# (B, Hq, Hkv, D): StarCoderBase-1B / StarCoder-15B (MQA), StarCoder2-3B / 15B (GQA).
CUDA_SHAPES = {
    "starcoder-1b": (8, 16, 1, 128),
    "starcoder-15b": (8, 48, 1, 128),
    "starcoder2-3b": (8, 24, 2, 128),
    "starcoder2-15b": (8, 48, 4, 128),
}


def _cuda_rows(batch: int, seq_len: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, seq_len + 1, (batch,), generator=gen)
    lengths[0] = seq_len
    lengths[1] = 1
    return lengths


@pytest.mark.cuda
@pytest.mark.parametrize("model", list(CUDA_SHAPES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("seq_len", [1, 1000, 8192])
def test_cuda_starcoder_shapes(model: str, dtype: torch.dtype, seq_len: int) -> None:
    b, hq, hkv, d = CUDA_SHAPES[model]
    gen = torch.Generator(device="cuda").manual_seed(seq_len)
    q = torch.randn(b, hq, d, generator=gen, device="cuda", dtype=dtype)
    k = torch.randn(b, hkv, seq_len, d, generator=gen, device="cuda", dtype=dtype)
    v = torch.randn(b, hkv, seq_len, d, generator=gen, device="cuda", dtype=dtype)
    lengths = _cuda_rows(b, seq_len, seed=seq_len).cuda()
    starts = seq_len - lengths  # right-aligned, as the team server's batch cache is
    out = decode_attention(q, k, v, lengths=lengths, starts=starts)
    ref = decode_attention_reference(q, k, v, lengths=lengths, starts=starts)
    assert_close(out, ref, dtype)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("num_splits", [None, 1, 7, 300])
def test_cuda_strided_cache_mask_and_splits(
    dtype: torch.dtype, num_splits: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fp32 reference's einsum must not run in TF32 whatever another test configured.
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    b, hq, hkv, s, d, capacity = 6, 48, 1, 3000, 128, 4096
    gen = torch.Generator(device="cuda").manual_seed(1)
    cache = torch.randn(2, b, capacity, hkv, d, generator=gen, device="cuda", dtype=dtype)
    k = cache[0, :, :s].transpose(1, 2)  # (B, Hkv, S, D) view of a (B, capacity, Hkv, D) cache
    v = cache[1, :, :s].transpose(1, 2)
    q = torch.randn(b, hq, d, generator=gen, device="cuda", dtype=dtype)
    lengths = torch.tensor([3000, 1, 0, 1500, 64, 2999], device="cuda")
    mask = torch.rand(b, s, generator=gen, device="cuda") > 0.3
    rows: dict[str, Any] = dict(lengths=lengths, starts=s - lengths, mask=mask)
    out = decode_attention(q, k, v, **rows, num_splits=num_splits)
    assert_close(out, decode_attention_reference(q, k, v, **rows), dtype)
    assert torch.equal(out[2], torch.zeros_like(out[2]))


@pytest.mark.cuda
@pytest.mark.parametrize("head_dim", [64, 80, 96, 256])
def test_cuda_head_dims(head_dim: int) -> None:
    gen = torch.Generator(device="cuda").manual_seed(head_dim)
    b, hq, hkv, s = 4, 12, 4, 2048
    q = torch.randn(b, hq, head_dim, generator=gen, device="cuda", dtype=torch.float16)
    k = torch.randn(b, hkv, s, head_dim, generator=gen, device="cuda", dtype=torch.float16)
    v = torch.randn(b, hkv, s, head_dim, generator=gen, device="cuda", dtype=torch.float16)
    lengths = torch.tensor([2048, 700, 33, 1])
    out = decode_attention(q, k, v, lengths=lengths)
    ref = decode_attention_reference(q, k, v, lengths=lengths)
    assert_close(out, ref, torch.float16)
