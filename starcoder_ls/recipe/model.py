"""GPTBigCode (StarCoder architecture) model presets.

StarCoder is a GPT-2-style decoder with multi-query attention (one key/value head shared by all
query heads, ``multi_query=True``) and learned absolute position embeddings. The presets below
share that architecture and differ only in size, so the path from the CPU-trainable ``tiny`` to a
StarCoderBase-sized model is the same recipe with a bigger preset and more GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starcoder_ls.recipe.errors import RecipeError

if TYPE_CHECKING:
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM


@dataclass(frozen=True)
class Preset:
    """Shape of a GPTBigCode model. ``vocab_size`` is a default; training uses the tokenizer's."""

    name: str
    n_embd: int
    n_layer: int
    n_head: int
    n_positions: int
    vocab_size: int
    note: str

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "micro",
            64,
            2,
            2,
            256,
            512,
            "for tests: trains in seconds, too small to quantize with k-quants",
        ),
        Preset(
            "tiny",
            256,
            2,
            4,
            512,
            4096,
            "the bundled offline model: trains on 2 CPU cores in about 30 minutes; two layers "
            "because at that compute a smaller model sees more tokens and ends lower (at equal "
            "time: validation loss 3.77 against 3.88 with four layers, perplexity 53 against "
            "60); a 4096-token vocabulary because the output layer is half of a "
            "training step at 8192 (about 20% more text per second for 9% more tokens per "
            "byte); n_embd is a multiple of 256 so 4-bit k-quants (Q4_K_M) apply to every "
            "matrix; a 512-token context keeps attention cheap on a CPU",
        ),
        Preset(
            "small",
            512,
            8,
            8,
            2048,
            16384,
            "a stronger laptop model: one consumer GPU for a few hours",
        ),
        Preset(
            "125m",
            768,
            12,
            12,
            2048,
            49152,
            "GPT-2-small scale (~125M parameters incl. embeddings): a single GPU for a day",
        ),
        Preset(
            "1b",
            2048,
            24,
            16,
            8192,
            49152,
            "StarCoderBase-1B's shape: a multi-GPU node (torchrun + DDP), bf16",
        ),
        Preset(
            "3b",
            2816,
            36,
            22,
            8192,
            49152,
            "StarCoderBase-3B's shape: several nodes",
        ),
        Preset(
            "15b",
            6144,
            40,
            48,
            8192,
            49152,
            "StarCoder-15B's shape: a cluster; listed to document the scaling path",
        ),
    )
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(PRESETS)
        raise RecipeError(f"unknown model preset {name!r}; choose one of: {known}") from None


def build_config(
    preset: Preset | str, *, vocab_size: int | None = None, eos_id: int = 0
) -> GPTBigCodeConfig:
    from transformers import GPTBigCodeConfig

    p = get_preset(preset) if isinstance(preset, str) else preset
    return GPTBigCodeConfig(
        vocab_size=vocab_size or p.vocab_size,
        n_positions=p.n_positions,
        n_embd=p.n_embd,
        n_layer=p.n_layer,
        n_head=p.n_head,
        n_inner=4 * p.n_embd,
        activation_function="gelu_pytorch_tanh",
        multi_query=True,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        initializer_range=0.02,
        scale_attn_weights=True,
        use_cache=True,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        tie_word_embeddings=True,
    )


def build_model(
    preset: Preset | str, *, vocab_size: int | None = None, seed: int = 0, device: str = "cpu"
) -> GPTBigCodeForCausalLM:
    """A freshly initialised model. ``device="meta"`` builds the shape without memory."""
    import torch
    from transformers import GPTBigCodeForCausalLM

    config = build_config(preset, vocab_size=vocab_size)
    torch.manual_seed(seed)
    with torch.device(device):
        model = GPTBigCodeForCausalLM(config)
    return model


def count_parameters(model: Any) -> int:
    """Unique parameters (the tied output projection is counted once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total
