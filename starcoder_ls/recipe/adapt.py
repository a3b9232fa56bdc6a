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

import argparse
import contextlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starcoder_ls.prompt.tokens import (
    ENDOFTEXT,
    FILE_SEP,
    FIM_MIDDLE,
    FIM_PAD,
    FIM_PREFIX,
    FIM_SUFFIX,
    REPO_NAME,
)
from starcoder_ls.recipe.errors import RecipeError
from starcoder_ls.recipe.flags import add_config_flags, config_from_args

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
    from starcoder_ls.backends.hf import load_gguf_model
    from starcoder_ls.types import BackendError

    try:
        tok, model = load_gguf_model(path, torch_dtype)
    except BackendError as exc:
        raise RecipeError(str(exc)) from None
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
    tied = (
        out is not None and out.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    )
    if out is not None and not tied:
        extra.append(_module_name(model, out))
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=(
            settings.targets if isinstance(settings.targets, str) else list(settings.targets)
        ),
        modules_to_save=extra if train_embeddings else None,
        # A tied head stays tied to the trained embeddings (and the merged model small).
        ensure_weight_tying=tied and train_embeddings,
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


# -- recipe adapt -----------------------------------------------------------------------------


@dataclass
class AdaptConfig:
    base: str
    """A Hugging Face folder, a GGUF file, or a model name this package knows."""
    data: Path
    """A corpus directory (``train.jsonl``/``validation.jsonl`` from ``recipe corpus``), or
    sources for the corpus stage: folders or git repositories."""
    output: Path
    fim: bool = False
    """Add FIM sentinels (where missing) and train on the FIM transform."""
    lora: int = 0
    """LoRA rank; 0 trains every weight."""
    lora_alpha: int = 0
    """0: twice the rank."""
    lora_dropout: float = 0.05
    steps: int = 200
    seq_len: int = 512
    micro_batch: int = 4
    grad_accum: int = 1
    lr: float = 0.0
    """0: 2e-4 with LoRA, 5e-5 without."""
    warmup_steps: int = 20
    fim_rate: float = 0.9
    """Share of FIM documents with --fim (StarCoder used 0.5 from scratch; a model that must
    learn the format needs more of it)."""
    span_rate: float = 0.5
    """Share of FIM middles that are editor-style spans (the rest of a line and up to two
    more), as the bundled model trained: a model learns the case editors ask for far sooner
    from them than from bigcode's uniform cuts alone."""
    line_rate: float = 0.0
    """Share of FIM middles cut at line boundaries (whole lines)."""
    end_token: str = ""
    """What ends a training document; empty: the tokenizer's own end token."""
    eval_samples: int = 100
    """Held-out lines measured before and after (0: none)."""
    eval_every: int = 100
    save_every: int = 100
    seed: int = 0
    dtype: str = "auto"
    compile: str = "auto"
    stop_after: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        from starcoder_ls.recipe.fim import FimConfig

        try:
            FimConfig(self.fim_rate, 0.0, self.line_rate, self.span_rate)
        except ValueError as exc:  # said before any data is prepared
            raise RecipeError(re.sub(r"(\w+)_rate", r"--\1-rate", str(exc))) from None


def adapt(cfg: AdaptConfig) -> dict[str, Any]:
    """Corpus -> (FIM tokens) -> shards -> training -> adapter and merged model, with held-out
    exact match before and after. Resumes from ``cfg.output``; safe under torchrun (rank 0
    prepares the data while the others wait)."""
    import json

    import torch

    from starcoder_ls.recipe.atomic import write_text_atomic
    from starcoder_ls.recipe.train import TrainConfig, _init_distributed, train

    output = Path(cfg.output)
    d = _init_distributed()
    if d.main:
        output.mkdir(parents=True, exist_ok=True)
        _prepare_shards(cfg, output, _prepare_corpus(cfg, output))
    if d.world_size > 1:
        torch.distributed.barrier()
    corpus = _corpus_dir(cfg, output)
    shards = output / "shards"
    built: list[Any] = []

    def build(_tok: Any) -> Any:
        base = load_base(cfg.base)
        if cfg.fim:
            extend_tokenizer(base.model, base.tokenizer)
        model = base.model
        if cfg.lora:
            settings = LoraSettings(
                r=cfg.lora, alpha=cfg.lora_alpha or 2 * cfg.lora, dropout=cfg.lora_dropout
            )
            model = attach_lora(model, settings, train_embeddings=cfg.fim)
        built[:] = [model, base.tokenizer]
        return model

    report: dict[str, Any] = {"base": cfg.base, "fim": cfg.fim, "lora": cfg.lora}
    samples = _eval_samples(corpus, cfg) if d.main else []
    before_file = output / "before.json"
    if samples and before_file.is_file():  # a resumed run measured the base already
        report["before"] = json.loads(before_file.read_text())
    elif samples:
        original = load_base(cfg.base)  # as it was: no new tokens, no adapters
        report["before"] = _measure(original.model, original.tokenizer, samples, cfg)
        write_text_atomic(before_file, json.dumps(report["before"], indent=2) + "\n")
        del original
    tcfg = TrainConfig(
        data=shards,
        output=output / "run",
        max_steps=cfg.steps,
        micro_batch=cfg.micro_batch,
        grad_accum=cfg.grad_accum,
        lr=cfg.lr or (2e-4 if cfg.lora else 5e-5),
        warmup_steps=min(cfg.warmup_steps, max(1, cfg.steps // 10)),
        eval_every=cfg.eval_every,
        save_every=cfg.save_every,
        log_every=max(1, min(10, cfg.steps // 10)),
        fim_eval_samples=0,
        seed=cfg.seed,
        dtype=cfg.dtype,
        compile=cfg.compile,
        stop_after=cfg.stop_after,
        progress=cfg.progress,
        weight_decay=0.0 if cfg.lora else 0.1,
    )
    report["train"] = train(tcfg, build=build)
    if not d.main or not built:
        return report
    model, tokenizer = built
    model.eval()
    finished = cfg.stop_after is None or cfg.stop_after >= cfg.steps
    if finished:
        if samples:
            report["after"] = _measure(model, tokenizer, samples, cfg)
        report["outputs"] = _save_outputs(model, tokenizer, output, cfg)
    write_text_atomic(output / "adapt_report.json", json.dumps(report, indent=2) + "\n")
    return report


def _corpus_dir(cfg: AdaptConfig, output: Path) -> Path:
    data = Path(cfg.data)
    return data if (data / "train.jsonl").is_file() else output / "corpus"


def _prepare_corpus(cfg: AdaptConfig, output: Path) -> Path:
    """The data as a corpus: as given, or through the corpus stage (dedup, PII redaction,
    decontamination, split) once."""
    from starcoder_ls.recipe.corpus import CorpusConfig, build_corpus

    corpus = _corpus_dir(cfg, output)
    if not (corpus / "train.jsonl").is_file():
        if not Path(cfg.data).exists() and "://" not in str(cfg.data):
            raise RecipeError(f"--data {cfg.data}: no such folder, corpus or repository")
        build_corpus(CorpusConfig(sources=[str(cfg.data)], output=corpus), progress=cfg.progress)
    return corpus


def _prepare_shards(cfg: AdaptConfig, output: Path, corpus: Path) -> Path:
    """The base's tokenizer (with FIM tokens where asked) and the FIM-transformed shards."""
    from starcoder_ls.recipe.data import ShardConfig, build_shards, read_meta
    from starcoder_ls.recipe.fim import FimConfig

    shards = output / "shards"
    if (shards / "meta.json").is_file():
        return shards
    base = load_base(cfg.base)
    if cfg.fim:
        extend_tokenizer(base.model, base.tokenizer)
    tok_dir = output / "tokenizer"
    base.tokenizer.save_pretrained(tok_dir)
    if not (tok_dir / "tokenizer.json").is_file():
        raise RecipeError(f"{cfg.base}: its tokenizer has no fast (tokenizer.json) form")
    end = cfg.end_token or _end_token(base.tokenizer)
    if not end:
        raise RecipeError(f"{cfg.base}: the tokenizer names no end token; give --end-token")
    build_shards(
        ShardConfig(
            corpus=corpus,
            tokenizer=tok_dir / "tokenizer.json",
            output=shards,
            seq_len=cfg.seq_len,
            fim=FimConfig(
                fim_rate=cfg.fim_rate if cfg.fim else 0.0,
                spm_rate=0.0,
                line_rate=cfg.line_rate,
                span_rate=cfg.span_rate,
            ),
            end_token=end,
            seed=cfg.seed,
        ),
        progress=cfg.progress,
    )
    read_meta(shards)
    return shards


def _end_token(tokenizer: Any) -> str:
    """StarCoder's ``<|endoftext|>`` where the vocabulary has it (SmolLM2 separated its
    pretraining documents with it; the FIM prompt families stop on it), else the tokenizer's
    own end token (Gemma's ``<eos>``)."""
    if ENDOFTEXT in tokenizer.get_vocab():
        return ENDOFTEXT
    return str(tokenizer.eos_token or "")


def _eval_samples(corpus: Path, cfg: AdaptConfig) -> list[Any]:
    from starcoder_ls.evaluation.heldout import sample_lines
    from starcoder_ls.recipe.corpus import read_corpus

    if cfg.eval_samples <= 0 or not (corpus / "validation.jsonl").is_file():
        return []
    return sample_lines(list(read_corpus(corpus / "validation.jsonl")), cfg.eval_samples, seed=0)


def _measure(model: Any, tokenizer: Any, samples: list[Any], cfg: AdaptConfig) -> dict[str, Any]:
    """Single-line exact match on held-out lines: with FIM where the model has the tokens,
    and from the prefix alone (how a left-to-right model completes)."""
    from starcoder_ls.evaluation.heldout import (
        EvaluationError,
        InMemoryModel,
        fim_exact_match,
        l2r_exact_match,
    )
    from starcoder_ls.recipe.tokenizer import CodeTokenizer

    with tempfile.TemporaryDirectory() as tmp:  # the tokenizer as the shards were made
        tokenizer.save_pretrained(tmp)
        tok = CodeTokenizer.load(Path(tmp) / "tokenizer.json")
    em = InMemoryModel(model, tok)
    em.n_ctx = min(em.n_ctx, cfg.seq_len * 2)  # the context the adaptation trained
    out: dict[str, Any] = {"left_to_right": l2r_exact_match(em, samples)}
    with contextlib.suppress(EvaluationError):  # a model without FIM tokens (yet)
        out["fim"] = fim_exact_match(em, samples)
    return out


def _name_base(adapter_config: Path, base: str) -> None:
    """Record the base as ``--base`` named it (a path made absolute), so that the transformers
    backend finds it: peft writes what transformers reported, which for a GGUF base is only
    the folder the file sits in."""
    import json

    data = json.loads(adapter_config.read_text())
    local = Path(base).expanduser()
    data["base_model_name_or_path"] = str(local.resolve()) if local.exists() else base
    adapter_config.write_text(json.dumps(data, indent=2) + "\n")


def _save_outputs(model: Any, tokenizer: Any, output: Path, cfg: AdaptConfig) -> dict[str, str]:
    """The adapter on its own (LoRA), and the model with everything merged in, as a Hugging
    Face folder that the transformers backend serves and the export stage converts."""
    import json

    from starcoder_ls.recipe.atomic import atomic_path

    out: dict[str, str] = {}
    # The token that ended the training documents is the one the model now emits at the end.
    end = json.loads((output / "shards" / "meta.json").read_text())["config"]["end_token"]
    end_id = int(tokenizer.convert_tokens_to_ids(end))
    for config in (model.config, getattr(model, "generation_config", None)):
        if config is not None:
            config.eos_token_id = end_id
    if cfg.lora:
        with atomic_path(output / "adapter", directory=True) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            _name_base(Path(tmp) / "adapter_config.json", cfg.base)
        out["adapter"] = str(output / "adapter")
        model = merge_lora(model)
    with atomic_path(output / "hf", directory=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    out["hf"] = str(output / "hf")
    return out


def cli_register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "adapt",
        help="adapt an existing model: teach it FIM, fine-tune it on your code (LoRA)",
        description="Continue training a real model on a corpus: a Hugging Face folder, a GGUF "
        "file (dequantized by transformers) or a known model name. --fim adds the FIM tokens "
        "it lacks and trains on the FIM transform with repository-level samples; --lora R "
        "trains LoRA adapters of rank R instead of every weight. Writes the adapter, the "
        "merged model (a Hugging Face folder) and adapt_report.json with held-out exact match "
        "before and after. Re-running with the same --output resumes; under torchrun it "
        "trains on every process.",
    )
    p.add_argument("--base", required=True, help="folder, GGUF file or model name")
    p.add_argument(
        "--data", type=Path, required=True, help="a corpus directory, or a folder or repository"
    )
    p.add_argument("--output", "-o", type=Path, required=True, help="run directory")
    p.add_argument("--fim", action="store_true", help="add FIM tokens and train on FIM")
    p.add_argument("--lora", type=int, default=0, metavar="R", help="LoRA rank (0: all weights)")
    add_config_flags(
        p,
        AdaptConfig(base="", data=Path(), output=Path()),
        skip=("base", "data", "output", "fim", "lora"),
    )
    p.set_defaults(func=_cli_run)


def _cli_run(args: argparse.Namespace) -> int:
    import json
    import os

    report = adapt(config_from_args(AdaptConfig, args, base=str(args.base)))
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(report, indent=1))
    return 0
