"""Adapting an existing model rather than training one from scratch: teaching a left-to-right
model fill-in-the-middle, or fine-tuning a model on a repository with LoRA. The parts below the
training loop:

* :func:`load_base`: a Hugging Face folder, a GGUF file (dequantized into a transformers model,
  for the architectures transformers reads from GGUF), or a model this package knows by name;
* :func:`extend_tokenizer`: StarCoder's FIM sentinels and StarCoder2's repository tokens added
  where the tokenizer lacks them. Old ids keep their meaning (new tokens are appended), and the
  new embedding rows start from the distribution of the old ones (transformers' mean resizing:
  the mean and covariance of the existing rows), not at random scale, so the first steps do not
  spend their gradient undoing the initialisation;
* :class:`HFEncoder`: a transformers tokenizer behind the interface the FIM transform of
  ``recipe.fim`` uses, so the same bigcode transform and repository-level samples that trained
  the bundled model train the adapted one;
* LoRA through peft: :func:`attach_lora` (the new tokens' embedding rows train too),
  :func:`merge_lora` (a plain model again, for export), :func:`load_adapter` (an adapter on its
  base, as saved).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starcoder_ls.prompt.tokens import (
    FILE_SEP,
    FIM_MIDDLE,
    FIM_PAD,
    FIM_PREFIX,
    FIM_SUFFIX,
    REPO_NAME,
)
from starcoder_ls.recipe.errors import RecipeError

ADDED_TOKENS: tuple[str, ...] = (FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD, REPO_NAME, FILE_SEP)
"""What FIM training needs, in StarCoder's spelling (what the prompt templates of the
``starcoder`` and ``starcoder2`` families write)."""


@dataclass(frozen=True)
class Base:
    model: Any
    tokenizer: Any
    source: str
    """What was loaded: the folder, the GGUF file, or the name and the file it resolved to."""


def load_base(spec: str | Path, *, dtype: str = "float32") -> Base:
    """A transformers causal LM and its tokenizer from a folder, a GGUF file or a known name."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        try:
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        except (OSError, ValueError) as exc:
            raise RecipeError(f"{path}: not a model transformers can load ({exc})") from None
        return Base(model, tok, str(path))
    if path.suffix == ".gguf" or path.is_file():
        return _from_gguf(path, torch_dtype, str(path))
    gguf = _known_gguf(str(spec))
    return _from_gguf(gguf, torch_dtype, f"{spec} ({gguf})")


def _from_gguf(path: Path, torch_dtype: Any, source: str) -> Base:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from starcoder_ls.backends.gguf import check_gguf_file

    check_gguf_file(path)
    try:
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch_dtype
        )
    except Exception as exc:  # transformers' GGUF reader raises many kinds; all mean the same
        raise RecipeError(
            f"transformers cannot turn {path.name} into a trainable model ({exc}); give the "
            "model's Hugging Face folder instead"
        ) from None
    return Base(model, tok, source)


def _known_gguf(name: str) -> Path:
    """The GGUF file of a model this package knows (``default``: the model it installs; a
    registry name: the file ``starcoder-ls models pull`` fetched)."""
    from starcoder_ls.backends import gguf_for
    from starcoder_ls.types import BackendError

    try:
        found = Path(gguf_for("" if name == "default" else name))
    except BackendError as exc:  # says what to pull
        raise RecipeError(str(exc)) from None
    if not found.is_file():
        raise RecipeError(
            f"{name!r} is not a folder, a GGUF file or a model on this machine "
            f"(starcoder-ls models list; starcoder-ls models pull {name})"
        )
    return found


@dataclass(frozen=True)
class Extension:
    added: dict[str, int]
    """Each token added and its id (empty when the tokenizer had them all)."""
    old_vocab: int
    """Embedding rows before: ids below this kept their meaning and their vectors."""


def extend_tokenizer(
    model: Any, tokenizer: Any, tokens: tuple[str, ...] = ADDED_TOKENS
) -> Extension:
    """Add the tokens the tokenizer lacks (as special tokens, never split) and grow the
    embeddings (and an untied output layer) to match."""
    import torch

    old_vocab = int(model.get_input_embeddings().weight.shape[0])
    missing = [t for t in tokens if _token_id(tokenizer, t) is None]
    if not missing:
        return Extension({}, old_vocab)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": missing}, replace_extra_special_tokens=False
    )
    added = {t: int(tokenizer.convert_tokens_to_ids(t)) for t in missing}
    if len(tokenizer) > old_vocab:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    # A vocabulary padded past the tokenizer (for fast matrix shapes) gives new tokens rows that
    # exist but were never trained: start those from the mean of the trained ones too.
    spare = [tid for tid in added.values() if tid < old_vocab]
    if spare:
        used = min(old_vocab, min(spare))
        with torch.no_grad():
            for layer in {
                id(m): m
                for m in (model.get_input_embeddings(), model.get_output_embeddings())
                if m is not None
            }.values():
                layer.weight[spare] = layer.weight[:used].mean(dim=0)
    return Extension(added, old_vocab)


def _token_id(tokenizer: Any, token: str) -> int | None:
    """The id of ``token`` when the tokenizer holds it as one token, else None."""
    vocab = tokenizer.get_vocab()
    return int(vocab[token]) if token in vocab else None


class HFEncoder:
    """A transformers tokenizer as ``recipe.fim.Encoder``: pieces are encoded without the
    special tokens a tokenizer adds on its own (a BOS), and sentinels are looked up by id."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def token_id(self, token: str) -> int:
        tid = _token_id(self.tokenizer, token)
        if tid is None:
            raise RecipeError(f"the tokenizer has no {token} (run the FIM extension first)")
        return tid


# -- LoRA -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: str | tuple[str, ...] = "all-linear"
    """Which layers get adapters: every linear layer but the output head (peft's
    ``all-linear``), or module names such as ``("q_proj", "v_proj")``."""

    def __post_init__(self) -> None:
        if self.r < 1:
            raise RecipeError(f"--lora rank must be at least 1, not {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise RecipeError(f"LoRA dropout must be in [0, 1), not {self.dropout}")


def attach_lora(model: Any, settings: LoraSettings, *, train_embeddings: bool = False) -> Any:
    """The model with LoRA adapters; only they (and, with ``train_embeddings``, the input and
    output embeddings, which new FIM tokens need to be learned) are trainable."""
    from peft import LoraConfig, get_peft_model

    extra = [_module_name(model, model.get_input_embeddings())]
    out = model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
        extra.append(_module_name(model, out))
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=(
            settings.targets if isinstance(settings.targets, str) else list(settings.targets)
        ),
        modules_to_save=extra if train_embeddings else None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _module_name(model: Any, module: Any) -> str:
    for name, candidate in model.named_modules():
        if candidate is module:
            return name.rsplit(".", 1)[-1]
    raise RecipeError("the model's embeddings are not one of its modules")


def trainable_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def merge_lora(model: Any) -> Any:
    """The base model with the adapters folded into its weights (what export and quantize
    take); a model without adapters is returned as it is."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


def load_adapter(base: Any, adapter_dir: Path) -> Any:
    """A saved adapter on its base model, as the transformers backend can serve it."""
    from peft import PeftModel

    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise RecipeError(f"{adapter_dir} holds no LoRA adapter (adapter_config.json)")
    return PeftModel.from_pretrained(base, str(adapter_dir))
