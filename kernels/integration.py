"""How a transformers model runs on the kernels, and the checks that decide whether it may.

Two changes to a loaded model, each with a reference path that computes the same thing in plain
PyTorch (the switch that forces it is ``mode="off"``):

- Attention: an attention function registered with transformers under ``ATTENTION``. A decode
  step (one query token per sequence) goes to the flash-decoding kernel; anything else (prefill,
  a float mask, training) goes to transformers' own SDPA function, so prefill is unchanged. The
  masks are SDPA's, so a batch with left padding (the team server's) works as it does on SDPA.
- Weights (``quantize="int4"``): every ``nn.Linear`` but the output head becomes an
  ``Int4Linear`` holding group-wise 4-bit weights; it multiplies with the fused Triton kernel,
  or on the reference path dequantizes and calls ``F.linear`` (same weights, same answer up to
  summation order, much slower: it exists for comparisons and for machines without the kernels).

Kernels run on CUDA. On a CPU they run only in Triton's interpreter (``TRITON_INTERPRET=1``),
which is how the tests drive them, and only when asked for explicitly (``mode="on"``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from starcoder_ls.kernels.int4 import Int4Weight, int4_matmul_reference, pack_int4
from torch import nn

log = logging.getLogger(__name__)

MODES = ("auto", "on", "off")
"""``auto``: kernels on CUDA when Triton is installed and the self-check passes; ``on``: required
(an error says why they cannot run); ``off``: the PyTorch reference path."""
QUANTIZE = ("none", "int4")
GROUP_SIZE = 128
ATTENTION = "starcoder_ls"
"""The name our attention function is registered under with transformers."""
SKIP_MODULES = ("lm_head",)
"""Kept in full precision: the output head is one layer, often tied to the embeddings, and the
one whose error every logit sees."""


class KernelError(RuntimeError):
    """Kernels were required (``mode="on"``) and cannot run; the message says why."""


@dataclass
class KernelReport:
    """What a model ended up running on, for logs, ``/v1/models`` and the tests."""

    attention: bool = False
    """Decode steps use the flash-decoding kernel."""
    int4_kernel: bool = False
    """Int4 layers multiply with the fused kernel (else they dequantize, the reference path)."""
    quantized_layers: int = 0
    weight_bytes_before: int = 0
    weight_bytes_after: int = 0
    reason: str = ""
    """Why the kernels are off, when they are."""
    checks: dict[str, float] = field(default_factory=dict)
    """Self-check: the largest error of each kernel against its reference, in units of its
    tolerance (below 1 passes)."""

    def summary(self) -> str:
        parts = []
        if self.quantized_layers:
            parts.append(
                f"int4 weights: {self.quantized_layers} layers, "
                f"{_size(self.weight_bytes_before)} -> {_size(self.weight_bytes_after)} "
                f"({'Triton' if self.int4_kernel else 'reference'} matmul)"
            )
        if self.attention:
            parts.append("decode attention: Triton")
        else:
            parts.append(f"kernels off ({self.reason})" if self.reason else "kernels off")
        return "; ".join(parts)


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def unavailable_reason(device: str) -> str | None:
    """Why the Triton kernels cannot run on ``device``, or None when they can."""
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    if device != "cuda" and not interpreted:
        return f"the Triton kernels need a CUDA GPU (device is {device})"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed (pip install 'starcoder-ls[kernels]')"
    return None


# Tolerances for the self-check, per dtype: fp32 accumulation either way, so the difference is
# summation order plus, in half precision, the rounding of the output.
_TOLERANCE = {torch.float32: 2e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}
_checked: dict[tuple[Any, ...], tuple[str | None, dict[str, float]]] = {}
_check_lock = threading.Lock()


def self_check(
    device: str,
    dtype: torch.dtype,
    *,
    heads: int,
    kv_heads: int,
    head_dim: int,
    int4: bool = True,
) -> tuple[str | None, dict[str, float]]:
    """Run the kernels once on small irregular shapes of this model's head layout against
    their references (the int4 matmul only when ``int4``: compiling it takes start-up time a
    model without int4 layers need not spend). Returns (failure or None, error per kernel in
    tolerance units).

    This is what turns ``auto`` on: a GPU, a driver or a Triton build on which a kernel fails to
    compile or computes wrong numbers falls back to the reference path instead of producing
    bad completions. The first call also compiles the kernels the model will use.
    """
    key = (device, dtype, heads, kv_heads, head_dim, int4)
    with _check_lock:
        if key not in _checked:
            _checked[key] = _run_self_check(device, dtype, heads, kv_heads, head_dim, int4)
        return _checked[key]


def _run_self_check(
    device: str, dtype: torch.dtype, heads: int, kv_heads: int, head_dim: int, int4: bool
) -> tuple[str | None, dict[str, float]]:
    from starcoder_ls.kernels.attention_reference import decode_attention_reference

    errors: dict[str, float] = {}
    tolerance = _TOLERANCE.get(dtype)
    if tolerance is None:
        return f"no kernels for {dtype}", errors
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    started = time.perf_counter()
    try:
        from starcoder_ls.kernels.decode_attention import decode_attention

        # Three rows of mixed length, right-aligned as in a padded batch.
        seq = 77
        q, k, v = (
            rand(3, heads, head_dim),
            rand(3, kv_heads, seq, head_dim),
            rand(3, kv_heads, seq, head_dim),
        )
        lengths = torch.tensor([1, 40, seq], device=device)
        starts = seq - lengths
        got = decode_attention(q, k, v, lengths=lengths, starts=starts)
        want = decode_attention_reference(q, k, v, lengths=lengths, starts=starts)
        errors["decode_attention"] = _error(got, want) / tolerance

        if int4:
            from starcoder_ls.kernels.int4_matmul import int4_matmul

            weight = rand(72, 2 * GROUP_SIZE + 8) * 0.05  # K off the group size: padding
            packed = pack_int4(weight, GROUP_SIZE)
            bias = rand(72)
            for rows in (1, 33):
                x = rand(rows, weight.shape[1])
                got = int4_matmul(x, packed, bias)
                want = int4_matmul_reference(x, packed, bias)
                errors[f"int4_matmul[m={rows}]"] = _error(got, want) / tolerance
    except Exception as exc:  # a compile error, a missing driver, an unsupported GPU
        log.warning("Triton kernel self-check failed to run: %s", exc)
        return f"the kernel self-check failed: {type(exc).__name__}: {exc}", errors
    worst = max(errors, key=lambda name: errors[name])
    log.info(
        "Triton kernel self-check on %s %s: worst %s at %.2f of tolerance (%.1f s)",
        device,
        str(dtype).removeprefix("torch."),
        worst,
        errors[worst],
        time.perf_counter() - started,
    )
    if errors[worst] >= 1.0:
        return (
            f"the kernel self-check failed: {worst} differs from its reference by "
            f"{errors[worst]:.1f}x the {dtype} tolerance",
            errors,
        )
    return None, errors


def _error(got: torch.Tensor, want: torch.Tensor) -> float:
    """Largest absolute difference, relative to the reference's scale (at least 1)."""
    scale = max(1.0, float(want.float().abs().max()))
    return float((got.float() - want.float()).abs().max()) / scale


# ------------------------------------------------------------------------------- attention

_mask_memo: tuple[Any, int, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
"""(mask, its version, its 2-D view, starts, lengths) for the last mask seen: transformers hands
every layer of a forward pass the same mask object, so the bounds are found once per step, not
per layer. The version counter notices a mask edited in place between two calls."""


def _bounds(mask: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (B, S) mask of a decode step, and each row's first and last attended key: the
    kernel skips the blocks outside them (the left padding) and masks inside them."""
    global _mask_memo
    memo = _mask_memo
    # Tensors made under inference_mode (the backends' forward passes) keep no version; their
    # masks are made afresh for each forward pass.
    version = -1 if mask.is_inference() else mask._version
    if memo is not None and memo[0] is mask and memo[1] == version:
        return memo[2], memo[3], memo[4]
    rows = mask[:, 0, -1, :].expand(batch, mask.shape[-1])
    seq = rows.shape[-1]
    hits = rows.to(torch.int8)
    first = hits.argmax(dim=-1)
    last = seq - 1 - hits.flip(-1).argmax(dim=-1)
    lengths = (last - first + 1) * hits.amax(dim=-1)  # a row with no key: length 0
    _mask_memo = (mask, version, rows, first, lengths)
    return rows, first, lengths


def decode_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: (B, H, q, D) queries, (B, Hkv, S, D) keys
    and values (the cache included, KV heads not repeated); returns (B, q, H, D)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    decode = (
        query.shape[2] == 1
        and not module.training
        and not kwargs.get("output_attentions")
        and kwargs.get("softcap") is None
        and kwargs.get("position_bias") is None
        and kwargs.get("cache") is None
        and (
            attention_mask is None
            # one boolean mask for all heads, as SDPA's masks are; anything else goes to SDPA
            or (attention_mask.dtype == torch.bool and attention_mask.shape[1] == 1)
        )
        and query.dtype in _TOLERANCE
    )
    if not decode:
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    from starcoder_ls.kernels.decode_attention import decode_attention

    mask = starts = lengths = None
    if attention_mask is not None:
        mask, starts, lengths = _bounds(attention_mask, query.shape[0])
    out = decode_attention(
        query[:, :, 0], key, value, lengths=lengths, starts=starts, mask=mask, scale=scaling
    )
    return out.unsqueeze(1), None


def register_attention() -> None:
    """Make ``ATTENTION`` a valid ``attn_implementation``, with SDPA's masks."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION, decode_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)


# ------------------------------------------------------------------------------------ int4


class Int4Linear(nn.Module):
    """An ``nn.Linear`` whose weight is group-wise int4; the packed tensors are buffers, so
    ``.to(device)`` and ``state_dict`` carry them."""

    def __init__(self, weight: Int4Weight, bias: torch.Tensor | None, *, kernel: bool) -> None:
        super().__init__()
        self.in_features = weight.in_features
        self.out_features = weight.out_features
        self.group_size = weight.group_size
        self.kernel = kernel
        """True: the fused Triton matmul; False: dequantize and ``F.linear`` (reference)."""
        self.register_buffer("qweight", weight.qweight)
        self.register_buffer("scales", weight.scales)
        self.register_buffer("zeros", weight.zeros)
        self.bias = nn.Parameter(bias, requires_grad=False) if bias is not None else None
        self._packed = weight

    def _apply(self, fn: Any, recurse: bool = True) -> Int4Linear:
        super()._apply(fn, recurse)
        self.packed()  # let go of the tensors from before the move
        return self

    def packed(self) -> Int4Weight:
        """The buffers as an ``Int4Weight``, rebuilt only after they moved (``.to``): a decode
        step calls this for every layer, and building one validates shapes."""
        held = self._packed
        if not (
            held.qweight is self.qweight and held.scales is self.scales and held.zeros is self.zeros
        ):
            self._packed = Int4Weight(
                qweight=self.qweight,
                scales=self.scales,
                zeros=self.zeros,
                group_size=self.group_size,
                in_features=self.in_features,
                out_features=self.out_features,
            )
        return self._packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias: torch.Tensor | None = self.bias
        if bias is not None and bias.dtype != x.dtype:
            bias = bias.to(x.dtype)
        if self.kernel:
            from starcoder_ls.kernels.int4_matmul import int4_matmul

            return int4_matmul(x, self.packed(), bias)
        return int4_matmul_reference(x, self.packed(), bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"group_size={self.group_size}, kernel={self.kernel}"
        )


def quantize_linears(
    model: nn.Module,
    *,
    device: str,
    kernel: bool,
    group_size: int = GROUP_SIZE,
    skip: tuple[str, ...] = SKIP_MODULES,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int, int]:
    """Replace every ``nn.Linear`` (but ``skip``) by an ``Int4Linear`` packed on ``device``.

    The model may sit on the CPU: each weight is moved to ``device`` alone, packed there and the
    full-precision copy dropped, so a model too big for the GPU in half precision (a 15B
    StarCoder on a 12 GB card) is quantized one layer at a time. Returns (layers, bytes of
    their weights before, after).
    """
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] not in skip
    ]
    before = after = 0
    for done, (name, linear) in enumerate(targets, 1):
        weight = linear.weight.detach()
        before += weight.numel() * weight.element_size()
        packed = pack_int4(weight.to(device), group_size)
        bias = linear.bias.detach().to(device) if linear.bias is not None else None
        replacement = Int4Linear(packed, bias, kernel=kernel)
        after += packed.nbytes
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, replacement)
        if progress is not None:
            progress(done, len(targets))
    return len(targets), before, after


def prepare_model(
    model: nn.Module,
    *,
    device: str,
    mode: str = "auto",
    quantize: str = "none",
    group_size: int = GROUP_SIZE,
    progress: Callable[[int, int], None] | None = None,
) -> KernelReport:
    """Decide whether the kernels run (``mode``), quantize (``quantize``) and switch the
    model's attention. The model may still be on the CPU; the caller moves it afterwards.

    Raises ``KernelError`` when ``mode`` is ``on`` and the kernels cannot run, ``ValueError``
    for an unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"unknown kernels mode {mode!r}; use one of {', '.join(MODES)}")
    if quantize not in QUANTIZE:
        raise ValueError(f"unknown quantize {quantize!r}; use one of {', '.join(QUANTIZE)}")
    report = KernelReport()
    config = getattr(model, "config", None)
    dtype = next(model.parameters()).dtype
    use = False
    if mode == "off":
        report.reason = "reference path forced"
    elif mode == "auto" and device != "cuda":
        report.reason = f"no CUDA device ({device})"
    elif (reason := unavailable_reason(device)) is not None:
        report.reason = reason
    else:
        heads, kv_heads, head_dim = head_layout(config)
        failure, report.checks = self_check(
            device,
            dtype,
            heads=heads,
            kv_heads=kv_heads,
            head_dim=head_dim,
            int4=quantize == "int4",
        )
        if failure is not None:
            report.reason = failure
        else:
            use = True
    if mode == "on" and not use:
        raise KernelError(f"kernels are on but cannot run: {report.reason}")

    if quantize == "int4":
        started = time.perf_counter()
        layers, before, after = quantize_linears(
            model, device=device, kernel=use, group_size=group_size, progress=progress
        )
        report.quantized_layers, report.weight_bytes_before, report.weight_bytes_after = (
            layers,
            before,
            after,
        )
        report.int4_kernel = use
        log.info(
            "quantized %d layers to int4 (group %d) in %.1f s: %.0f -> %.0f MiB",
            layers,
            group_size,
            time.perf_counter() - started,
            before / 2**20,
            after / 2**20,
        )
    if use and config is not None:
        register_attention()
        model.set_attn_implementation(ATTENTION)  # type: ignore[operator]
        report.attention = True
    return report


def head_layout(config: Any) -> tuple[int, int, int]:
    """(query heads, KV heads, head dim) from a GPTBigCode, StarCoder2 or Llama-like config."""
    heads = int(getattr(config, "num_attention_heads", 0) or getattr(config, "n_head", 0))
    hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0))
    if not heads or not hidden:
        raise KernelError("the model config names no attention heads or hidden size")
    if getattr(config, "multi_query", False):
        kv_heads = 1
    else:
        kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    return heads, kv_heads, head_dim


def weight_bytes(
    model: nn.Module,
    *,
    quantize: str = "none",
    dtype_bytes: int = 2,
    group_size: int = GROUP_SIZE,
    skip: tuple[str, ...] = SKIP_MODULES,
) -> int:
    """Bytes the model's weights take in ``dtype_bytes`` floats, with its linear layers in
    int4 when ``quantize`` is ``int4``. Works on a model built on the meta device, so the size
    of a 15B model is known without its weights; tied weights count once."""
    seen: set[int] = set()
    total = 0
    for name, module in model.named_modules():
        if quantize == "int4" and isinstance(module, Int4Linear):
            total += module.packed().nbytes
            if module.bias is not None:
                total += module.bias.numel() * dtype_bytes
            continue
        int4 = (
            quantize == "int4"
            and isinstance(module, nn.Linear)
            and name.rsplit(".", 1)[-1] not in skip
        )
        for pname, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            if int4 and pname == "weight":
                out_features, in_features = param.shape
                groups = -(-in_features // group_size)
                # codes, 8 to an int32, then a scale and a zero point per group and column
                total += out_features * groups * group_size // 2
                total += 2 * groups * out_features * dtype_bytes
            else:
                total += param.numel() * dtype_bytes
    return total
