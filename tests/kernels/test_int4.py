"""Group-wise int4 packing, its PyTorch reference, and the fused Triton dequantize-matmul.

Without a GPU the Triton kernels run in Triton's CPU interpreter (tests/conftest.py sets
TRITON_INTERPRET=1), so the shapes here stay small; the StarCoder-15B shapes run only in the tests
marked ``cuda``.
"""

from __future__ import annotations

import math
import sys

import pytest
import torch
from starcoder_ls.kernels.int4 import (
    Int4Weight,
    dequantize_int4,
    int4_matmul_reference,
    pack_int4,
    unpack_int4,
)
from starcoder_ls.kernels.int4_matmul import Int4MatmulConfig, int4_matmul, int4_matmul_config

# Kernels on CPU tensors run only in the interpreter; the GPU tests below are marked cuda.
pytestmark = pytest.mark.interpreter

# -------------------------------------------------------------------------------------- helpers


def _weight(n: int, k: int, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Random weights with the awkward cases mixed in: rows and groups that lie entirely on one
    side of zero, and rows whose magnitudes differ by orders of magnitude."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=gen)
    w[0] = w[0].abs() + 0.5  # all positive
    if n > 1:
        w[1] = -w[1].abs() - 0.5  # all negative
    if n > 2:
        w[2] *= 1e-3
    if n > 3:
        w[3] *= 1e2
    return w.to(dtype)


def _expand(t: torch.Tensor, w: Int4Weight) -> torch.Tensor:
    """Per-group ``(groups, N)`` metadata as a per-element ``(K, N)`` fp32 tensor."""
    return t.float().repeat_interleave(w.group_size, dim=0)[: w.in_features]


def _codes_from_bits(w: Int4Weight) -> torch.Tensor:
    """The padded ``(K_pad, N)`` codes read straight from the documented bit layout."""
    q = w.qweight.to(torch.int64) & 0xFFFFFFFF  # the words as unsigned 32-bit values
    rows = [(q >> (4 * i)) & 0xF for i in range(8)]
    return torch.stack(rows, dim=1).reshape(-1, w.out_features)


def _tolerance(
    x: torch.Tensor, w_deq: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """Elementwise bound on |kernel - reference| for ``x @ w_deq.T + bias``.

    Both compute the product of the same (already rounded) operands with fp32 accumulation and
    differ in two ways only: the order of the fp32 sums, whose rounding error grows like
    ``sqrt(K) * eps32`` times the sum of the absolute products, and the final rounding to a 16-bit
    output (the reference may round the product and then the sum with the bias), a few units of
    that dtype's epsilon times |product| + |bias|. For fp32 outputs only the first term remains.
    """
    k = x.shape[-1]
    xd, wd = x.double(), w_deq.double()
    abs_sum = xd.abs() @ wd.abs().t()
    mm = (xd @ wd.t()).abs()
    b = bias.double().abs() if bias is not None else torch.zeros((), dtype=torch.float64)
    eps32 = torch.finfo(torch.float32).eps
    rounding = 0.0 if dtype == torch.float32 else 2 * torch.finfo(dtype).eps
    return 8 * math.sqrt(k) * eps32 * (abs_sum + b) + rounding * (mm + b) + 1e-30


def _assert_matches(
    got: torch.Tensor,
    want: torch.Tensor,
    x: torch.Tensor,
    w: Int4Weight,
    bias: torch.Tensor | None,
) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    tol = _tolerance(x.reshape(-1, w.in_features), dequantize_int4(w, x.dtype), bias, x.dtype)
    err = (got.double() - want.double()).abs().reshape(tol.shape)
    worst = (err / tol).max().item()
    assert worst <= 1.0, f"error {worst:.2f}× the tolerance (max abs error {err.max().item():.3g})"


# --------------------------------------------------------------------------------------- packer


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("group_size", [32, 128])
def test_error_is_at_most_half_a_step(dtype: torch.dtype, group_size: int) -> None:
    weight = _weight(24, 256, dtype=dtype)
    w = pack_int4(weight, group_size)
    assert w.scales.dtype == dtype and w.zeros.dtype == dtype
    scale = _expand(w.scales, w).t()
    err = (weight.float() - dequantize_int4(w, torch.float32)).abs()
    # The stored scale is rounded up to its dtype, so the half-step bound holds with it exactly;
    # the slack covers only fp32 rounding in (code - zero) * scale.
    assert bool((err <= scale * (0.5 + 1e-5)).all()), (err / scale).max()
    codes = unpack_int4(w)
    assert codes.dtype == torch.uint8 and codes.shape == (256, 24)
    assert int(codes.min()) >= 0 and int(codes.max()) <= 15
    zeros = w.zeros.float()
    assert (
        bool((zeros == zeros.round()).all())
        and float(zeros.min()) >= 0
        and float(zeros.max()) <= 15
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_weights_built_from_codes_round_trip_exactly(dtype: torch.dtype) -> None:
    n, k, g = 12, 128, 32
    gen = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 16, (k, n), generator=gen)
    # Every group uses codes 0 and 15, so its min and max pin the scale and the zero point.
    codes[0::g] = 0
    codes[1::g] = 15
    zeros = torch.randint(0, 16, (k // g, n), generator=gen).float()
    # Scales with 4 significant bits: (code - zero) * scale is then exact even in bf16.
    scales = torch.randint(1, 16, (k // g, n), generator=gen) * 2.0 ** torch.randint(
        -12, -2, (k // g, n), generator=gen
    )

    def per_k(t: torch.Tensor) -> torch.Tensor:
        return t.repeat_interleave(g, dim=0)

    weight = ((codes - per_k(zeros)) * per_k(scales)).t().to(dtype)
    assert torch.equal(weight.float().t(), (codes - per_k(zeros)) * per_k(scales))

    w = pack_int4(weight, g)
    assert torch.equal(unpack_int4(w).long(), codes)
    assert torch.equal(w.zeros.float(), zeros)
    assert torch.equal(w.scales.float(), scales)
    assert torch.equal(dequantize_int4(w), weight)


def test_bit_layout() -> None:
    """The code of k = 8r + i sits in bits [4i, 4i + 4) of row r; a top nibble sets the sign bit."""
    codes = torch.zeros(32, 2, dtype=torch.int64)
    codes[:8, 0] = torch.arange(8)  # word 0x76543210
    codes[8, 0] = 15  # word 0x0000000F
    codes[8:16, 1] = 15  # word 0xFFFFFFFF: -1 as int32
    # One group per column with codes 0 and 15 present: scale 0.25 and zero point 0, exactly.
    w = pack_int4(codes.t().float() * 0.25, 32)
    assert w.qweight.dtype == torch.int32 and w.qweight.shape == (4, 2)
    assert w.qweight[:, 0].tolist() == [0x76543210, 0xF, 0, 0]
    assert w.qweight[:, 1].tolist() == [0, -1, 0, 0]
    assert torch.equal(unpack_int4(w).long(), codes)
    assert torch.equal(_codes_from_bits(w), codes)


def test_constant_and_zero_groups() -> None:
    g = 32
    weight = torch.zeros(4, 2 * g)
    weight[0, :g] = 0.75  # positive constant group
    weight[1, :g] = -3.0  # negative constant group
    weight[2, :g] = 1e-30  # a constant group smaller than any fp16 step
    weight[3, g:] = torch.linspace(-1, 1, g)  # an all-zero group beside an ordinary one
    w = pack_int4(weight, g)
    assert bool(torch.isfinite(w.scales).all()) and bool((w.scales > 0).all())
    deq = dequantize_int4(w)
    assert torch.allclose(deq[:3, :g], weight[:3, :g], rtol=1e-6, atol=0)
    assert torch.equal(deq[:3, g:], weight[:3, g:])  # all-zero groups stay exactly 0
    assert torch.equal(deq[3, :g], weight[3, :g])
    scale = _expand(w.scales, w).t()
    assert bool(((weight - deq).abs() <= scale * (0.5 + 1e-5)).all())


def test_k_not_a_multiple_of_the_group_size() -> None:
    n, k, g = 10, 200, 64
    weight = _weight(n, k)
    w = pack_int4(weight, g)
    assert (w.in_features, w.out_features, w.group_size) == (k, n, g)
    assert w.qweight.shape == (256 // 8, n)
    assert w.scales.shape == w.zeros.shape == (256 // g, n)
    assert unpack_int4(w).shape == (k, n)
    assert dequantize_int4(w).shape == (n, k)
    # The padding holds the last group's zero point, so it dequantizes to exactly 0.
    padding = _codes_from_bits(w)[k:].float()
    assert torch.equal(padding, w.zeros[-1].float().expand_as(padding))
    scale = _expand(w.scales, w).t()
    assert bool(((weight - dequantize_int4(w)).abs() <= scale * (0.5 + 1e-5)).all())


def test_nbytes_and_to() -> None:
    n, k, g = 48, 256, 64
    w = pack_int4(_weight(n, k, dtype=torch.float16), g)
    meta = 2 * (k // g) * n * 2  # fp16 scales and zeros
    assert w.nbytes == n * k // 2 + meta
    assert w.nbytes < _weight(n, k, dtype=torch.float16).nbytes / 3
    moved = w.to("cpu")
    assert isinstance(moved, Int4Weight) and moved.device == torch.device("cpu")
    assert torch.equal(moved.qweight, w.qweight) and moved.group_size == g


def test_dtype_option() -> None:
    weight = _weight(16, 128)
    w = pack_int4(weight, 64, dtype=torch.bfloat16)
    assert w.scales.dtype == w.zeros.dtype == torch.bfloat16
    assert dequantize_int4(w).dtype == torch.bfloat16
    assert dequantize_int4(w, torch.float32).dtype == torch.float32
    scale = _expand(w.scales, w).t()
    assert bool(((weight - dequantize_int4(w, torch.float32)).abs() <= scale * (0.5 + 1e-5)).all())


def test_packer_errors() -> None:
    weight = _weight(8, 128)
    for bad in (16, 100, 512):
        with pytest.raises(ValueError, match="group_size"):
            pack_int4(weight, bad)
    for value in (float("inf"), float("nan")):
        broken = weight.clone()
        broken[3, 77] = value
        with pytest.raises(ValueError, match="non-finite"):
            pack_int4(broken)
    with pytest.raises(ValueError, match="2-D"):
        pack_int4(weight[0])
    with pytest.raises(ValueError, match="floating"):
        pack_int4(weight, dtype=torch.int32)
    with pytest.raises(ValueError, match="scales in"):
        pack_int4(
            torch.full((2, 64), 1e38).mul(torch.tensor([1.0, -1.0]).repeat(32)),
            64,
            dtype=torch.float16,
        )


def test_reference_is_a_plain_matmul_with_the_dequantized_weight() -> None:
    """An independent check of the reference: rebuild the weight from the codes with explicit
    per-element group indices and multiply in float64."""
    n, k, g = 40, 200, 64
    w = pack_int4(_weight(n, k), g)
    codes = unpack_int4(w).double()
    group = torch.arange(k) // g
    deq = (codes - w.zeros.double()[group]) * w.scales.double()[group]  # (K, N)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 5, k, generator=gen)
    bias = torch.randn(n, generator=gen)
    want = x.double() @ deq + bias.double()
    got = int4_matmul_reference(x, w, bias)
    assert got.shape == (3, 5, n) and got.dtype == torch.float32
    tol = 8 * math.sqrt(k) * torch.finfo(torch.float32).eps * (x.double().abs() @ deq.abs())
    assert bool(((got.double() - want).abs() <= tol + 1e-12).all())
    # The same product in bf16 is x and the weight rounded to bf16, multiplied exactly.
    xb = x.bfloat16()
    exact_b = xb.double() @ deq.to(torch.bfloat16).double()
    got_b = int4_matmul_reference(xb, w)
    assert got_b.dtype == torch.bfloat16
    tol_b = _tolerance(xb, deq.t().to(torch.bfloat16), None, xb.dtype)
    assert bool(((got_b.double() - exact_b).abs() <= tol_b).all())


# --------------------------------------------------------------------------------------- kernel

_DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _case(m_shape: tuple[int, ...], n: int, k: int, g: int, dtype: torch.dtype, *, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    w = pack_int4(_weight(n, k, seed=seed) * 0.05, g, dtype=dtype)
    x = torch.randn(*m_shape, k, generator=gen).to(dtype)
    bias = torch.randn(n, generator=gen).to(dtype)
    return x, w, bias


@pytest.mark.parametrize("dtype", _DTYPES)
@pytest.mark.parametrize("m", [1, 3, 16, 17, 69])
def test_kernel_matches_reference(m: int, dtype: torch.dtype) -> None:
    """Decode (M ≤ 16) and prefill (M > 16) launches, N and K off the block sizes, K < K_pad."""
    x, w, bias = _case((m,), 37, 200, 64, dtype, seed=m)
    use_bias = bias if m % 2 else None
    got = int4_matmul(x, w, use_bias)
    _assert_matches(got, int4_matmul_reference(x, w, use_bias), x, w, use_bias)


@pytest.mark.parametrize("dtype", _DTYPES)
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize(("lead", "n", "k", "g"), [((2, 5), 100, 256, 32), ((3, 7), 64, 384, 128)])
def test_kernel_3d_input_and_group_sizes(
    lead: tuple[int, ...], n: int, k: int, g: int, with_bias: bool, dtype: torch.dtype
) -> None:
    x, w, bias = _case(lead, n, k, g, dtype, seed=n + k)
    b = bias if with_bias else None
    got = int4_matmul(x, w, b)
    assert got.shape == (*lead, n)
    _assert_matches(got, int4_matmul_reference(x, w, b), x, w, b)


@pytest.mark.parametrize("dtype", _DTYPES)
@pytest.mark.parametrize(
    ("m", "config"),
    [
        (3, Int4MatmulConfig(16, 32, 32, split_k=3)),  # 7 K tiles: splits of 3, 3 and 1
        (17, Int4MatmulConfig(32, 32, 64, split_k=4)),  # prefill tiles with split-K
        (1, Int4MatmulConfig(16, 64, 64, split_k=1)),  # bias and cast in the main kernel
        (40, Int4MatmulConfig(16, 16, 32, group_m=2)),  # grouped ordering over 3 × 3 tiles
    ],
)
def test_kernel_forced_configs(m: int, config: Int4MatmulConfig, dtype: torch.dtype) -> None:
    x, w, bias = _case((m,), 45, 200, 64, dtype, seed=5)
    got = int4_matmul(x, w, bias, config=config)
    _assert_matches(got, int4_matmul_reference(x, w, bias), x, w, bias)
    # A fixed summation order: the same inputs give the same bits.
    assert torch.equal(got, int4_matmul(x, w, bias, config=config))


def test_kernel_strided_and_empty_inputs() -> None:
    _, w, bias = _case((4,), 24, 128, 32, torch.float32)
    wide = torch.randn(4, 2 * 128)
    for view in (wide[:, ::2], wide[:, :128]):  # a strided last dim; a row stride ≠ K
        _assert_matches(
            int4_matmul(view, w, bias), int4_matmul_reference(view, w, bias), view, w, bias
        )
    empty = int4_matmul(torch.empty(0, 3, 128), w, bias)
    assert empty.shape == (0, 3, 24)


def test_kernel_errors() -> None:
    x, w, _ = _case((2,), 16, 128, 64, torch.float32)
    with pytest.raises(ValueError, match="features"):
        int4_matmul(x[:, :64], w)
    with pytest.raises(ValueError, match="float16"):
        int4_matmul(x.double(), w)
    with pytest.raises(ValueError, match="bias"):
        int4_matmul(x, w, torch.zeros(15))
    with pytest.raises(ValueError, match="divide"):
        int4_matmul(x, w, config=Int4MatmulConfig(16, 16, 128))
    with pytest.raises(ValueError, match="power of two"):
        int4_matmul(x, w, config=Int4MatmulConfig(16, 24, 16))


def test_launch_heuristic(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = int4_matmul_config
    int4_matmul_mod = sys.modules[int4_matmul.__module__]
    cuda = torch.device("cuda")
    monkeypatch.setattr(int4_matmul_mod, "_sm_count", lambda device: 132)
    monkeypatch.setattr(int4_matmul_mod, "_shared_memory", lambda device: 227 * 1024)
    decode = cfg(1, 2048, 2048, 128, cuda)
    # 32 N tiles × 8 splits of 2 K tiles: about two programs per SM.
    assert (decode.block_m, decode.block_n, decode.block_k, decode.split_k) == (16, 64, 128, 8)
    assert (decode.num_stages, decode.num_warps) == (4, 8)  # 4 warps spill on sm_90
    assert cfg(8, 24576, 6144, 128, cuda).split_k == 1  # 384 tiles fill the GPU already
    assert cfg(1, 6400, 6144, 128, cuda).split_k == 3
    assert cfg(1, 64, 64, 32, cuda).split_k == 2  # no more splits than K tiles
    assert [cfg(m, 6144, 6144, 128, cuda).block_m for m in (17, 33, 64, 65, 512)] == [
        32,
        64,
        64,
        128,
        128,
    ]
    assert all(cfg(m, 6144, 6144, 128, cuda).split_k == 1 for m in (17, 512))
    assert cfg(512, 6144, 6144, 32, cuda).block_k == 32  # K tiles never straddle groups
    monkeypatch.setattr(int4_matmul_mod, "_shared_memory", lambda device: 99 * 1024)
    assert cfg(1, 2048, 2048, 128, cuda).num_stages == 2
    assert cfg(512, 6144, 6144, 128, cuda).num_stages == 3  # 4 on the H100 above
    assert cfg(512, 6144, 6144, 128, cuda).block_k == 32  # no spills at 128 x 128 tiles


# ---------------------------------------------------------------------------------------- CUDA

_STARCODER_15B = [
    (6144, 6144 + 2 * 128),  # fused q + multi-query k, v
    (6144, 24576),  # MLP up
    (24576, 6144),  # MLP down
]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m", [1, 8, 512])
@pytest.mark.parametrize(("k", "n"), _STARCODER_15B)
def test_cuda_starcoder_15b_shapes(
    k: int, n: int, m: int, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    # cuBLAS may otherwise reduce 16-bit products in 16 bits, which the tolerance does not cover.
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_fp16_reduced_precision_reduction", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_bf16_reduced_precision_reduction", False)
    gen = torch.Generator(device="cuda").manual_seed(k + n + m)
    weight = torch.randn(n, k, generator=gen, device="cuda", dtype=dtype) * 0.02
    w = pack_int4(weight, 128)
    x = torch.randn(m, k, generator=gen, device="cuda", dtype=dtype)
    bias = torch.randn(n, generator=gen, device="cuda", dtype=dtype) * 0.1
    got = int4_matmul(x, w, bias)
    torch.cuda.synchronize()
    _assert_matches(got, int4_matmul_reference(x, w, bias), x, w, bias)
    assert torch.equal(got, int4_matmul(x, w, bias))


@pytest.mark.cuda
def test_cuda_fp32_uses_ieee_products() -> None:
    gen = torch.Generator(device="cuda").manual_seed(0)
    w = pack_int4(torch.randn(1024, 2048, generator=gen, device="cuda") * 0.02, 128)
    for m in (1, 300):
        x = torch.randn(m, 2048, generator=gen, device="cuda")
        got = int4_matmul(x, w)
        deq = dequantize_int4(w, torch.float32)
        want = (x.double() @ deq.double().t()).float()  # no TF32 anywhere
        _assert_matches(got, want, x, w, None)
        # TF32 products would leave a normwise error near 1e-3; IEEE fp32 stays near 1e-7.
        assert float((got - want).norm() / want.norm()) < 1e-5
