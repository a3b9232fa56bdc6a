"""Training loop for GPTBigCode models: one process on a laptop CPU, or many GPUs via torchrun.

Design choices:

* Distributed training uses PyTorch's own DDP (``torchrun`` sets RANK/WORLD_SIZE; NCCL on CUDA,
  gloo on CPU). Only rank 0 writes checkpoints, metrics and plots.
* A checkpoint holds everything that decides the next step (model, optimizer, scheduler, data
  loader position and every RNG state), so a resumed run continues bit for bit.
* Checkpoints are written to a temporary file and renamed, so a crash or a full disk never
  replaces a good checkpoint with a broken one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from starcoder_ls.recipe.atomic import atomic_path, write_text_atomic
from starcoder_ls.recipe.data import ShardLoader, read_meta
from starcoder_ls.recipe.errors import RecipeError
from starcoder_ls.recipe.flags import add_config_flags, config_from_args
from starcoder_ls.recipe.model import build_config, get_preset
from starcoder_ls.recipe.tokenizer import CodeTokenizer

if TYPE_CHECKING:
    import torch

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
METRICS = "metrics.jsonl"


@dataclass
class TrainConfig:
    data: Path
    output: Path
    preset: str = "tiny"
    micro_batch: int = 8
    grad_accum: int = 1
    max_steps: int = 1000
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 200
    eval_batches: int = 16
    fim_eval_samples: int = 16
    save_every: int = 200
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    compile: str = "auto"
    """``auto`` compiles on CUDA only (on a 2-core CPU compiling costs more than it saves)."""
    dtype: str = "auto"
    """``auto``: bf16 autocast on CUDA, fp32 on CPU."""
    stop_after: int | None = None
    """Stop (after saving) once this step is reached, e.g. to fit a time slot; resume later."""
    progress: bool = True

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to ``min_lr_ratio * lr`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed() -> _Dist:
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_initialized():  # ``recipe adapt`` starts it to prepare data on rank 0
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    d = _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if torch.cuda.is_available():
        torch.cuda.set_device(d.local_rank)
    return d


def _device(d: _Dist) -> torch.device:
    import torch

    return (
        torch.device(f"cuda:{d.local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    )


def _rng_state() -> dict[str, Any]:
    import torch

    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(output: Path) -> Path | None:
    pointer = Path(output) / CHECKPOINT_DIR / LATEST
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if path.is_file() else None


def load_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise RecipeError(f"no checkpoint in {path} (expected {CHECKPOINT_DIR}/{LATEST})")
        path = found
    if not path.is_file():
        raise RecipeError(f"checkpoint not found: {path}")
    try:
        ckpt: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise RecipeError(
            f"checkpoint {path} is corrupt or unreadable ({exc}); delete it or "
            "point `latest` at an older one"
        ) from exc
    for key in ("model", "model_config", "step"):
        if key not in ckpt:
            raise RecipeError(f"{path} is not a starcoder-ls training checkpoint (no {key!r})")
    return ckpt


def load_checkpoint_model(path: Path) -> tuple[Any, CodeTokenizer]:
    """The model and tokenizer of a training run directory (its latest checkpoint) or file."""
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    ckpt = load_checkpoint(path)
    model = GPTBigCodeForCausalLM(GPTBigCodeConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    model.eval()
    run_dir = Path(path) if Path(path).is_dir() else Path(path).parent.parent
    return model, CodeTokenizer.load(run_dir / "tokenizer.json")


def _save_checkpoint(
    output: Path,
    step: int,
    model: Any,
    optimizer: Any,
    loader: ShardLoader,
    cfg: TrainConfig,
    keep: int,
) -> Path:
    import torch

    ckpt_dir = output / CHECKPOINT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    target = ckpt_dir / f"step-{step:07d}.pt"
    # A model with frozen weights (LoRA on a base model) saves what trains: the frozen rest
    # comes from the base, which the run loads again on resume.
    partial = any(not p.requires_grad for p in model.parameters())
    state = (
        {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
        if partial
        else model.state_dict()
    )
    with atomic_path(target) as tmp:
        torch.save(
            {
                "step": step,
                "model": state,
                "partial": partial,
                "model_config": model.config.to_dict(),
                "optimizer": optimizer.state_dict(),
                "loader": loader.state_dict(),
                "rng": _rng_state(),
                "train_config": cfg.to_json(),
            },
            tmp,
        )
    write_text_atomic(ckpt_dir / LATEST, target.name + "\n")
    old = sorted(ckpt_dir.glob("step-*.pt"))[:-keep] if keep > 0 else []
    for p in old:
        p.unlink(missing_ok=True)
    return target


_SHAPE_KEYS = (
    "model_type",
    "vocab_size",
    # GPTBigCode's names
    "n_embd",
    "n_layer",
    "n_head",
    "n_positions",
    "multi_query",
    # most other architectures'
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
)


def _check_compatible(ckpt: dict[str, Any], model_config: dict[str, Any], path: Path) -> None:
    keys = [k for k in _SHAPE_KEYS if k in model_config or k in ckpt["model_config"]]
    diff = {
        k: (ckpt["model_config"].get(k), model_config.get(k))
        for k in keys
        if ckpt["model_config"].get(k) != model_config.get(k)
    }
    if diff:
        detail = ", ".join(f"{k}: checkpoint {a} vs now {b}" for k, (a, b) in diff.items())
        raise RecipeError(
            f"the checkpoint in {path} does not match this model ({detail}); use the same preset "
            "and data, or a new --output directory"
        )


def _evaluate_loss(
    model: Any, loader: ShardLoader, device: Any, max_batches: int, autocast: Any
) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i, batch in enumerate(loader.iter_all()):
            if i >= max_batches:
                break
            x = torch.from_numpy(batch).to(device)
            with autocast():
                loss = model(input_ids=x, labels=x).loss
            total += float(loss) * x.numel()
            count += x.numel()
    model.train()
    return total / max(1, count)


def _fim_samples(data_dir: Path, n: int, seed: int) -> list[Any]:
    """Held-out line-infill samples from the corpus the shards were made from, if it is there."""
    from starcoder_ls.evaluation.heldout import sample_lines
    from starcoder_ls.recipe.corpus import read_corpus

    if n <= 0:
        return []
    corpus = Path(read_meta(data_dir)["config"]["corpus"]) / "validation.jsonl"
    if not corpus.is_file():
        return []
    return sample_lines(list(read_corpus(corpus)), n, seed=seed)


ModelBuilder = Callable[[CodeTokenizer], Any]
"""Makes the model a run trains, after the run has seeded every RNG (so it is the same model
again on resume); gets the shards' tokenizer."""


def train(cfg: TrainConfig, *, build: ModelBuilder | None = None) -> dict[str, Any]:
    """Train (or resume) and return the final metrics. Safe to call under torchrun.

    Without ``build``: a new GPTBigCode model of ``cfg.preset``. ``recipe adapt`` passes one
    that loads a base model (and adds FIM tokens and LoRA adapters to it)."""
    import torch

    meta = read_meta(cfg.data)
    if build is None:
        build = _from_preset(cfg, meta)
    dist_info = _init_distributed()
    try:
        return _train(cfg, meta, dist_info, torch, build)
    finally:
        if dist_info.world_size > 1:
            torch.distributed.destroy_process_group()


def _from_preset(cfg: TrainConfig, meta: dict[str, Any]) -> ModelBuilder:
    preset = get_preset(cfg.preset)
    if meta["seq_len"] > preset.n_positions:
        raise RecipeError(
            f"the shards have rows of {meta['seq_len']} tokens but preset {preset.name} has "
            f"{preset.n_positions} positions; rebuild the shards with --seq-len {preset.n_positions}"
        )

    def build(tok: CodeTokenizer) -> Any:
        from transformers import GPTBigCodeForCausalLM

        return GPTBigCodeForCausalLM(
            build_config(preset, vocab_size=tok.vocab_size, eos_id=tok.eos_id)
        )

    return build


def _train(
    cfg: TrainConfig, meta: dict[str, Any], d: _Dist, torch: Any, build: ModelBuilder
) -> dict[str, Any]:
    from contextlib import nullcontext

    from starcoder_ls.evaluation.heldout import InMemoryModel, fim_exact_match
    from starcoder_ls.recipe.plot import plot_metrics

    output = Path(cfg.output)
    device = _device(d)
    tok = CodeTokenizer.load(Path(cfg.data) / "tokenizer.json")
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = build(tok).to(device)
    train_loader = ShardLoader(
        cfg.data, "train", cfg.micro_batch, seed=cfg.seed, rank=d.rank, world_size=d.world_size
    )
    val_loader = None
    if meta["splits"].get("validation", {}).get("rows", 0) > 0:
        val_loader = ShardLoader(cfg.data, "validation", cfg.micro_batch, seed=cfg.seed)

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.dim() >= 2]
    no_decay = [p for n, p in trainable if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        fused=device.type == "cuda",
    )

    start_step = 0
    existing = latest_checkpoint(output)
    if existing is not None:
        ckpt = load_checkpoint(existing)
        _check_compatible(ckpt, model.config.to_dict(), existing)
        _load_weights(model, ckpt, existing)
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt["loader"].get("world_size", 1) != d.world_size:
            raise RecipeError(
                f"{existing} was written by a run with {ckpt['loader'].get('world_size')} processes; "
                f"resume it with the same number (now {d.world_size}) so the data order stays exact"
            )
        train_loader.load_state_dict(ckpt["loader"])
        _set_rng_state(ckpt["rng"])
        start_step = int(ckpt["step"])
        if d.main:
            print(f"resuming from {existing} at step {start_step}", flush=True)
    if d.main:
        output.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(cfg.data) / "tokenizer.json", output / "tokenizer.json")
        write_text_atomic(output / "train_config.json", json.dumps(cfg.to_json(), indent=2) + "\n")
        _truncate_metrics(output / METRICS, start_step)

    use_cuda = device.type == "cuda"
    bf16 = use_cuda and cfg.dtype in ("auto", "bf16")

    def autocast() -> Any:
        return torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else nullcontext()

    train_model = model
    if cfg.compile == "on" or (cfg.compile == "auto" and use_cuda):
        train_model = torch.compile(model)
    if d.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            train_model, device_ids=[d.local_rank] if use_cuda else None
        )

    fim_samples = _fim_samples(Path(cfg.data), cfg.fim_eval_samples, cfg.seed) if d.main else []
    tokens_per_step = cfg.micro_batch * cfg.grad_accum * d.world_size * train_loader.seq_len
    end_step = cfg.max_steps if cfg.stop_after is None else min(cfg.max_steps, cfg.stop_after)
    last: dict[str, Any] = {}
    model.train()
    with _TrainProgress(cfg.progress and d.main, start_step, end_step, tokens_per_step) as bar:
        window_s, window_steps = 0.0, 0
        for step in range(start_step, end_step):
            t_step = time.perf_counter()
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = 0.0
            for micro in range(cfg.grad_accum):
                x = torch.from_numpy(train_loader.next_batch()).to(device, non_blocking=True)
                sync = nullcontext()
                if d.world_size > 1 and micro < cfg.grad_accum - 1:
                    sync = train_model.no_sync()
                with sync, autocast():
                    loss = train_model(input_ids=x, labels=x).loss / cfg.grad_accum
                    loss.backward()
                loss_sum += float(loss.detach())
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            window_s += time.perf_counter() - t_step
            window_steps += 1
            bar.update(done, loss_sum)
            if d.main and (done % cfg.log_every == 0 or done == end_step):
                # Throughput of the training steps alone (evaluation and saving excluded).
                last = {
                    "step": done,
                    "loss": round(loss_sum, 5),
                    "lr": lr,
                    "grad_norm": round(grad_norm, 4),
                    "tokens": done * tokens_per_step,
                    "tokens_per_s": round(window_steps * tokens_per_step / max(1e-9, window_s), 1),
                }
                window_s, window_steps = 0.0, 0
                _append_metrics(output / METRICS, last)
            if d.main and (done % cfg.eval_every == 0 or done == cfg.max_steps):
                row: dict[str, Any] = {"step": done}
                if val_loader is not None:
                    row["val_loss"] = round(
                        _evaluate_loss(model, val_loader, device, cfg.eval_batches, autocast), 5
                    )
                if fim_samples:
                    row["val_fim_exact_match"] = fim_exact_match(
                        InMemoryModel(model, tok), fim_samples, max_new_tokens=48
                    )["exact_match"]
                _append_metrics(output / METRICS, row)
                bar.note(row)
                last.update(row)
                model.train()
            if d.main and (done % cfg.save_every == 0 or done == end_step):
                _save_checkpoint(
                    output, done, model, optimizer, train_loader, cfg, cfg.keep_checkpoints
                )
                plot_metrics(output / METRICS, output / "loss.png")
    if d.world_size > 1:
        torch.distributed.barrier()
    return last


def _load_weights(model: Any, ckpt: dict[str, Any], path: Path) -> None:
    """A checkpoint's weights into the run's model: all of them, or (a partial checkpoint)
    exactly the trainable ones."""
    if not ckpt.get("partial"):
        model.load_state_dict(ckpt["model"])
        return
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(ckpt["model"]) != trainable:
        raise RecipeError(
            f"{path} holds other trainable weights than this run has (a different --lora or "
            "--fim?); use the same options, or a new --output directory"
        )
    model.load_state_dict(ckpt["model"], strict=False)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric rows after ``step``: a resumed run writes them again."""
    if not path.is_file():
        return
    keep = [
        line
        for line in path.read_text().splitlines()
        if line and json.loads(line).get("step", 0) <= step
    ]
    write_text_atomic(path, "".join(line + "\n" for line in keep))


def _append_metrics(path: Path, row: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"time": round(time.time(), 3), **row}) + "\n")


class _TrainProgress:
    """A rich progress bar with loss, tokens/s and ETA (a no-op when disabled)."""

    def __init__(self, enabled: bool, start: int, end: int, tokens_per_step: int):
        self.enabled = enabled
        self.start, self.end, self.tokens_per_step = start, end, tokens_per_step
        self.t0 = time.perf_counter()
        self.bar: Any = None

    def __enter__(self) -> _TrainProgress:
        if self.enabled:
            from rich.progress import TextColumn

            from starcoder_ls.progress import progress_bar

            self.bar = progress_bar(True, TextColumn("{task.fields[info]}"))
            self.bar.__enter__()
            self.task = self.bar.add_task("training", total=self.end, completed=self.start, info="")
        return self

    def update(self, step: int, loss: float) -> None:
        if self.bar is None:
            return
        rate = (step - self.start) * self.tokens_per_step / max(1e-9, time.perf_counter() - self.t0)
        self.bar.update(self.task, completed=step, info=f"loss {loss:.3f} · {rate:,.0f} tok/s")

    def note(self, row: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.console.log(" ".join(f"{k}={v}" for k, v in row.items()))

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def cli_register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a GPTBigCode model on token shards (resumes automatically)",
        description="Train a StarCoder-architecture model. Runs on one CPU or GPU as is; for "
        "several GPUs or nodes launch it with torchrun, e.g. `torchrun --nproc-per-node 8 -m "
        "starcoder_ls recipe train ...`. Re-running with the same --output resumes from the "
        "latest checkpoint.",
    )
    p.add_argument("data", type=Path, help="shards directory made by `starcoder-ls recipe shards`")
    p.add_argument("--output", "-o", type=Path, required=True, help="run directory")
    add_config_flags(p, TrainConfig(data=Path(), output=Path()), skip=("data", "output"))
    p.set_defaults(func=_cli_run)


def _cli_run(args: argparse.Namespace) -> int:
    result = train(config_from_args(TrainConfig, args))
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result))
    return 0
