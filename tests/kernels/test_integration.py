"""The kernels inside the transformers backend, on the bundled model.

Without a GPU the kernels run in Triton's CPU interpreter (``kernels="on"`` asks for them
explicitly; ``auto`` uses them only on CUDA). The one promise checked throughout: greedy output
with the kernels is the reference path's, token for token, alone, in a batch of mixed lengths
and through the CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from starcoder_ls.kernels import integration
from starcoder_ls.models import BUNDLED_HF

from starcoder_ls.types import (
    BackendError,
    CancelToken,
    FimInput,
    Generation,
    GenerationParams,
    Prompt,
)

DEVICES = [
    pytest.param("cpu", marks=pytest.mark.interpreter),
    pytest.param("cuda", marks=pytest.mark.cuda),
]
"""The kernels interpreted on the CPU, and compiled on a GPU (each skipped where it cannot run)."""
STOPS = ("<|endoftext|>", "<fim_pad>", "<file_sep>")
GREEDY = GenerationParams(max_tokens=24)
_SOURCE = (Path(sysconfig.get_paths()["stdlib"]) / "json" / "decoder.py").read_text()


def fim(prefix: str, suffix: str) -> Prompt:
    return Prompt(
        text=f"<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>",
        family="starcoder",
        stop=STOPS,
        fim=FimInput(prefix=prefix, suffix=suffix),
    )


PROMPTS = (
    fim("def add(a, b):\n    ", "\n"),
    fim(_SOURCE[:700], _SOURCE[700:760]),
    fim("import os\n\n\ndef read_file(path):\n    with open(path) as f:\n", ""),
    fim(_SOURCE[2000:2300], ""),
)
"""Prompts of 10 to 250 tokens: single blocks and several, lengths off the kernel's blocks."""


class Calls:
    """Counts the kernel launches the model makes, by wrapping the real kernels."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from starcoder_ls.kernels import decode_attention, int4_matmul

        self.attention = self.int4 = 0
        real_attention, real_int4 = decode_attention.decode_attention, int4_matmul.int4_matmul

        def attention(*args: Any, **kwargs: Any) -> torch.Tensor:
            self.attention += 1
            return real_attention(*args, **kwargs)

        def int4(*args: Any, **kwargs: Any) -> torch.Tensor:
            self.int4 += 1
            return real_int4(*args, **kwargs)

        monkeypatch.setattr(decode_attention, "decode_attention", attention)
        monkeypatch.setattr(int4_matmul, "int4_matmul", int4)


def load(kernels: str, quantize: str = "none", device: str = "cpu") -> Any:
    """The bundled model in float32 (on a GPU too: greedy equality is asserted exactly, and
    half precision could turn a near tie either way; the kernels' half-precision accuracy is
    what test_decode_attention and test_int4 check)."""
    from starcoder_ls.backends.hf import TransformersBackend

    return TransformersBackend(
        str(BUNDLED_HF),
        device=device,
        dtype="float32",
        kernels=kernels,
        quantize=quantize,
        n_threads=1,
    )


def greedy_ids(backend: Any, prompt: Prompt, tokens: int) -> list[int]:
    """The token ids greedy decoding picks, straight from the backend's logits."""
    backend._cache, backend._cached_ids = None, []
    _, logits = backend._evaluate_prompt(backend.tokenize(prompt.text), CancelToken())
    ids = []
    for _ in range(tokens):
        ids.append(int(logits.argmax()))
        logits = backend._step(ids[-1])
    return ids


@pytest.fixture(scope="module", params=DEVICES)
def backends(request: pytest.FixtureRequest) -> Iterator[dict[tuple[str, str], Any]]:
    loaded = {
        (kernels, quantize): load(kernels, quantize, request.param)
        for quantize in ("none", "int4")
        for kernels in ("off", "on")
    }
    yield loaded
    for backend in loaded.values():
        backend.close()


@pytest.mark.parametrize(
    ("quantize", "prompts", "params"),
    [
        ("none", PROMPTS, GREEDY),
        # the interpreted int4 matmul is slow: a short and a long prompt, fewer tokens
        ("int4", PROMPTS[:2], GenerationParams(max_tokens=12)),
    ],
)
def test_greedy_generation_with_kernels_equals_the_reference_path(
    backends: dict[tuple[str, str], Any],
    quantize: str,
    prompts: tuple[Prompt, ...],
    params: GenerationParams,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference, fast = backends["off", quantize], backends["on", quantize]
    assert reference.model.config._attn_implementation == "sdpa"
    assert fast.model.config._attn_implementation == integration.ATTENTION
    assert fast.kernels.attention and not reference.kernels.attention
    calls = Calls(monkeypatch)
    for prompt in prompts:
        want = reference.generate(prompt, params, CancelToken())
        got = fast.generate(prompt, params, CancelToken())
        assert (got.text, got.completion_tokens, got.finish_reason) == (
            want.text,
            want.completion_tokens,
            want.finish_reason,
        )
        assert greedy_ids(fast, prompt, params.max_tokens) == greedy_ids(
            reference, prompt, params.max_tokens
        )
    layers = fast.model.config.n_layer
    assert calls.attention >= layers * params.max_tokens  # every decode step, every layer
    if quantize == "int4":
        assert fast.kernels.quantized_layers == 4 * layers  # qkv, out, mlp up and down
        assert fast.kernels.int4_kernel and not reference.kernels.int4_kernel
        assert calls.int4 > 0
        assert reference.kernels.weight_bytes_after < reference.kernels.weight_bytes_before / 6
    else:
        assert calls.int4 == 0


def test_int4_reference_path_stays_close_to_full_precision(
    backends: dict[tuple[str, str], Any],
) -> None:
    """4-bit weights change the logits a little, not the model: the top token agrees with the
    full-precision model at most positions of real code."""
    full, int4 = backends["off", "none"], backends["off", "int4"]
    ids = full.tokenize(_SOURCE[:1200])[:300]
    with torch.inference_mode():
        a = full.model(torch.tensor([ids], device=full.device)).logits[0].argmax(-1)
        b = int4.model(torch.tensor([ids], device=int4.device)).logits[0].argmax(-1)
    assert float((a == b).float().mean()) > 0.8


def test_batch_of_mixed_lengths_with_kernels_equals_the_reference_path(
    backends: dict[tuple[str, str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The team server's batches: left-padded rows of different lengths, rows joining and
    leaving; the kernel gets SDPA's padding mask."""
    from starcoder_ls.serve.batch import BatchEngine
    from starcoder_ls.serve.engine import Job

    outputs: dict[str, list[Generation]] = {}
    calls = Calls(monkeypatch)
    for kernels in ("off", "on"):
        engine = BatchEngine(backends[kernels, "none"], max_queue=8, max_batch=4)
        try:
            jobs = [Job(p, GREEDY) for p in PROMPTS]
            for job in jobs:
                engine.submit(job)
            outputs[kernels] = [job.future.result(timeout=120) for job in jobs]
            assert max(engine.stats.batches) > 1
        finally:
            engine.close()
    assert calls.attention > 0
    assert [g.text for g in outputs["on"]] == [g.text for g in outputs["off"]]


def test_auto_uses_the_reference_path_without_a_gpu() -> None:
    backend = load("auto", device="cpu")
    try:
        assert not backend.kernels.attention
        assert backend.kernels.reason == "no CUDA device (cpu)"
        assert backend.model.config._attn_implementation == "sdpa"
    finally:
        backend.close()


def test_kernels_on_without_a_gpu_or_interpreter_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendError, match=r"kernels are on but cannot run: .*need a CUDA GPU"):
        load("on", device="cpu")


@pytest.mark.parametrize("device", DEVICES)
def test_a_kernel_failing_its_self_check_is_not_used(
    device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel that computes wrong numbers (a broken GPU, driver or Triton build): ``on``
    refuses with the reason; the reference path stays available."""
    from starcoder_ls.kernels import decode_attention

    def wrong(q: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return q * 0 + 1

    monkeypatch.setattr(decode_attention, "decode_attention", wrong)
    monkeypatch.setattr(integration, "_checked", {})
    with pytest.raises(BackendError, match="self-check failed: decode_attention differs"):
        load("on", device=device)
    assert not load("off", device=device).kernels.attention


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_self_check_reports_errors_within_tolerance(device: str, dtype: torch.dtype) -> None:
    failure, errors = integration.self_check(device, dtype, heads=6, kv_heads=2, head_dim=40)
    assert failure is None
    assert set(errors) == {"decode_attention", "int4_matmul[m=1]", "int4_matmul[m=33]"}
    assert all(0 <= e < 1 for e in errors.values())


def test_int4_memory_estimate_matches_a_quantized_model() -> None:
    """``weight_bytes`` on a meta-device model (how the docs size a 15B model) agrees with
    what quantizing the real model takes."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(BUNDLED_HF)
    with torch.device("meta"):
        estimate = integration.weight_bytes(
            AutoModelForCausalLM.from_config(config), quantize="int4", dtype_bytes=2
        )
    model = AutoModelForCausalLM.from_pretrained(BUNDLED_HF, dtype=torch.float16)
    before = integration.weight_bytes(model)
    layers, linear_before, linear_after = integration.quantize_linears(
        model, device="cpu", kernel=False
    )
    assert layers == 4 * config.n_layer
    assert integration.weight_bytes(model, quantize="int4") == estimate
    assert estimate == before - linear_before + linear_after
    assert linear_after < linear_before / 3  # 4-bit codes plus a scale and zero per 128


def test_prepare_model_validates_its_arguments() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="unknown kernels mode 'fast'"):
        integration.prepare_model(model, device="cpu", mode="fast")
    with pytest.raises(ValueError, match="unknown quantize 'int3'"):
        integration.prepare_model(model, device="cpu", quantize="int3")


@pytest.mark.interpreter
def test_the_cli_completes_the_same_with_and_without_kernels(tmp_path: Path) -> None:
    source = tmp_path / "shapes.py"
    source.write_text(
        "import math\n\n\nclass Circle:\n    def __init__(self, r):\n        self.r = r\n\n"
        "    def area(self):\n        return \n"
    )

    def run(kernels: str) -> dict[str, Any]:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "starcoder_ls",
                "complete",
                f"{source}:9:16",
                "--backend",
                "transformers",
                "--device=cpu",
                f"--kernels={kernels}",
                "--quantize=int4",
                "--max-tokens=16",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout))

    with ThreadPoolExecutor(2) as pool:  # two processes: the model loads overlap
        results = dict(zip(("off", "on"), pool.map(run, ("off", "on")), strict=True))
    assert results["on"]["completion"] == results["off"]["completion"]
    assert results["on"]["model"] == results["off"]["model"]


def test_the_cli_rejects_an_unknown_kernels_mode(tmp_path: Path) -> None:
    source = tmp_path / "a.py"
    source.write_text("x = 1\n")
    out = subprocess.run(
        [sys.executable, "-m", "starcoder_ls", "complete", f"{source}:1:1", "--kernels=fast"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "kernels" in out.stderr and "fast" in out.stderr


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("window", [None, 12])
def test_grouped_query_attention_of_a_starcoder2_model(
    device: str, window: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """StarCoder2's layout (4 query heads sharing 2 KV heads), a left-padded batch of two
    lengths, and a sliding window shorter than the sequence (SDPA's mask then starts each row
    late): greedy tokens with the kernel are the reference path's."""
    from transformers import AutoModelForCausalLM, Starcoder2Config

    torch.manual_seed(0)
    config = Starcoder2Config(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        sliding_window=window,
        pad_token_id=0,
    )
    model = AutoModelForCausalLM.from_config(config).to(device).eval()
    ids = torch.randint(1, 512, (2, 20), device=device)
    mask = torch.ones_like(ids)
    mask[1, :7] = 0  # the second row is 13 tokens, padded on the left
    ids[1, :7] = 0

    def generate() -> torch.Tensor:
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False
            )
        return out[:, ids.shape[1] :]

    want = generate()
    report = integration.prepare_model(model, device=device, mode="on")
    assert report.attention and model.config._attn_implementation == integration.ATTENTION
    calls = Calls(monkeypatch)
    assert torch.equal(generate(), want)
    assert calls.attention == 2 * 11  # both layers, every step after the prompt


@pytest.mark.parametrize("device", DEVICES)
def test_the_attention_function_takes_sdpas_masks(
    device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What transformers hands the attention function: no mask, a (B, 1, 1, S) boolean mask
    with left padding and holes, one mask broadcast over the batch. Decode steps go to the
    kernel and agree with SDPA; prefill and per-head masks go to SDPA itself."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    gen = torch.Generator().manual_seed(3)
    module = torch.nn.Module().eval()
    module.num_key_value_groups = 3  # type: ignore[assignment]
    q = torch.randn(3, 6, 1, 32, generator=gen).to(device)
    k, v = (torch.randn(3, 2, 45, 32, generator=gen).to(device) for _ in range(2))
    padded = torch.ones(3, 1, 1, 45, dtype=torch.bool)
    padded[0, ..., :30] = False  # left padding
    padded[1, ..., 10:14] = False  # a hole
    masks = [None, padded.to(device), padded[:1].to(device)]
    calls = Calls(monkeypatch)
    for mask in masks:
        got, _ = integration.decode_attention_forward(module, q, k, v, mask, scaling=0.2)
        want, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.2)
        assert got.shape == want.shape == (3, 1, 6, 32)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert calls.attention == len(masks)
    edited = masks[1]
    assert edited is not None
    integration.decode_attention_forward(module, q, k, v, edited, scaling=0.2)
    edited[0, ..., 5:30] = True  # the same mask object, edited in place: wider bounds
    got, _ = integration.decode_attention_forward(module, q, k, v, edited, scaling=0.2)
    want, _ = sdpa_attention_forward(module, q, k, v, edited, scaling=0.2)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    calls.attention -= 2

    prefill = torch.randn(3, 6, 4, 32, generator=gen).to(device)
    per_head = torch.ones(3, 6, 1, 45, dtype=torch.bool, device=device)
    integration.decode_attention_forward(module, prefill, k, v, None, scaling=0.2)
    integration.decode_attention_forward(module, q, k, v, per_head, scaling=0.2)
    assert calls.attention == len(masks)  # both went to SDPA
