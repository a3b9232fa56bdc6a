"""``starcoder-ls recipe bundle``: reproduce the bundled offline model with one command.

Runs every stage on the running interpreter's standard library (third-party packages are never
part of it) and writes ``models/starcoder-ls-tiny``: the HF folder in fp16, GGUF files in Q8_0
(the server's default) and Q4_K_M, the loss curve, the evaluation report and the model card.
Intermediate outputs (corpus, shards, checkpoints, f32 GGUF) stay in ``--work``; re-running the
command resumes training from the last checkpoint and redoes only what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starcoder_ls.recipe.atomic import atomic_path
from starcoder_ls.recipe.fim import FimConfig

if TYPE_CHECKING:
    from starcoder_ls.recipe.corpus import CorpusConfig


@dataclass(frozen=True)
class BundleConfig:
    """The exact recipe of the bundled model (changing it changes the model card)."""

    preset: str = "tiny"
    vocab_size: int = 4096
    seq_len: int = 512
    val_fraction: float = 0.05
    fim_rate: float = 0.8
    spm_rate: float = 0.25
    line_rate: float = 0.3
    span_rate: float = 0.5
    repo_rate: float = 0.2
    path_rate: float = 0.5
    draws: int = 3
    exclude: tuple[str, ...] = ("test/", "tests/", "idle_test/")
    """The standard library's own test suites: repetitive, and unlike the code users write."""
    micro_batch: int = 4
    """Small batches: with a few million tokens, more optimizer steps beat larger batches."""
    grad_accum: int = 1
    max_steps: int = 3500
    lr: float = 3e-3
    warmup_steps: int = 100
    eval_every: int = 875
    eval_samples: int = 300
    seed: int = 0

    def corpus_config(self, output: Path) -> CorpusConfig:
        """The corpus of the bundled model (also rebuilt by benchmarks for its held-out split)."""
        from starcoder_ls.recipe.corpus import CorpusConfig, stdlib_source

        return CorpusConfig(
            sources=[stdlib_source()],
            output=output,
            languages=frozenset({"python"}),
            exclude=self.exclude,
            val_fraction=self.val_fraction,
        )


class _StageTimes:
    """Seconds per stage, kept in the work directory: a stage reused from an earlier invocation
    keeps the time it took then, and training time adds up across resumed invocations."""

    def __init__(self, path: Path):
        self.path = path
        self.times: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}

    def record(self, key: str, started: float, *, accumulate: bool = False) -> None:
        base = self.times.get(key, 0.0) if accumulate else 0.0
        self.times[key] = base + time.perf_counter() - started
        self.path.write_text(json.dumps(self.times, indent=2) + "\n")

    def rounded(self) -> dict[str, float]:
        keys = ("corpus_s", "tokenizer_s", "shards_s", "train_s", "export_s", "eval_s")
        return {k: round(self.times.get(k, 0.0), 1) for k in keys}


def _stage(name: str) -> float:
    print(f"\n== {name} ==", file=sys.stderr, flush=True)
    return time.perf_counter()


def run_bundle(
    output: Path, work: Path, cfg: BundleConfig, *, progress: bool = True
) -> dict[str, Any]:
    from starcoder_ls.models import BUNDLED_NAME
    from starcoder_ls.recipe.corpus import build_corpus, read_corpus
    from starcoder_ls.recipe.data import ShardConfig, build_shards
    from starcoder_ls.recipe.tokenizer import train_tokenizer
    from starcoder_ls.recipe.train import (
        TrainConfig,
        latest_checkpoint,
        load_checkpoint_model,
        train,
    )

    work.mkdir(parents=True, exist_ok=True)
    timings = _StageTimes(work / "timings.json")
    corpus_dir, tok_file, shard_dir, run_dir = (
        work / "corpus",
        work / "tokenizer.json",
        work / "shards",
        work / "run",
    )

    t = _stage("corpus: the standard library of this interpreter")
    if not (corpus_dir / "summary.json").is_file():
        build_corpus(cfg.corpus_config(corpus_dir), progress=progress)
        timings.record("corpus_s", t)
    corpus_summary = json.loads((corpus_dir / "summary.json").read_text())

    t = _stage("tokenizer")
    if not tok_file.is_file():
        files = list(read_corpus(corpus_dir / "train.jsonl"))
        train_tokenizer(
            (f.text for f in files), cfg.vocab_size, length=len(files), progress=progress
        ).save(tok_file)
        timings.record("tokenizer_s", t)

    t = _stage("FIM shards")
    if not (shard_dir / "meta.json").is_file():
        build_shards(
            ShardConfig(
                corpus=corpus_dir,
                tokenizer=tok_file,
                output=shard_dir,
                seq_len=cfg.seq_len,
                fim=FimConfig(cfg.fim_rate, cfg.spm_rate, cfg.line_rate, cfg.span_rate),
                repo_rate=cfg.repo_rate,
                path_rate=cfg.path_rate,
                draws=cfg.draws,
                seed=cfg.seed,
            ),
            progress=progress,
        )
        timings.record("shards_s", t)
    shard_meta = json.loads((shard_dir / "meta.json").read_text())

    t = _stage(f"training the {cfg.preset} preset")
    resuming = latest_checkpoint(run_dir) is not None
    final = train(
        TrainConfig(
            data=shard_dir,
            output=run_dir,
            preset=cfg.preset,
            micro_batch=cfg.micro_batch,
            grad_accum=cfg.grad_accum,
            max_steps=cfg.max_steps,
            lr=cfg.lr,
            warmup_steps=cfg.warmup_steps,
            eval_every=cfg.eval_every,
            save_every=cfg.eval_every,
            seed=cfg.seed,
            progress=progress,
        )
    )
    timings.record("train_s", t, accumulate=resuming)
    metrics = [
        json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()
    ]

    from starcoder_ls.recipe.evaluate import evaluate
    from starcoder_ls.recipe.export import export_gguf, export_hf
    from starcoder_ls.recipe.quantize import quantize_gguf

    t = _stage("export and quantization")
    model, tok = load_checkpoint_model(run_dir)
    hf_f32 = export_hf(model, tok, work / "hf-f32", dtype="float32")
    gguf_f32 = export_gguf(hf_f32, work / f"{BUNDLED_NAME}-f32.gguf", outtype="f32")
    quant = {
        q: quantize_gguf(gguf_f32, work / f"{BUNDLED_NAME}-{q}.gguf", q) for q in ("Q8_0", "Q4_K_M")
    }
    timings.record("export_s", t)

    t = _stage("evaluation on held-out standard-library files")
    reports = {
        "transformers_fp32": evaluate(hf_f32, corpus_dir, samples=cfg.eval_samples, seed=cfg.seed),
        "llama_cpp_Q8_0": evaluate(
            quant["Q8_0"], corpus_dir, samples=cfg.eval_samples, seed=cfg.seed
        ),
        "llama_cpp_Q4_K_M": evaluate(
            quant["Q4_K_M"], corpus_dir, samples=cfg.eval_samples, seed=cfg.seed
        ),
    }
    timings.record("eval_s", t)

    from starcoder_ls.machine import machine_info
    from starcoder_ls.recipe.card import render_card
    from starcoder_ls.recipe.model import count_parameters

    with atomic_path(output, directory=True) as tmp:
        export_hf(model, tok, tmp / "hf", dtype="float16")
        for q, path in quant.items():
            shutil.copyfile(path, tmp / f"{BUNDLED_NAME}-{q}.gguf")
        shutil.copyfile(run_dir / "loss.png", tmp / "loss.png")
        shutil.copyfile(run_dir / "metrics.jsonl", tmp / "metrics.jsonl")
        report = {
            "recipe": asdict(cfg),
            "command": "starcoder-ls recipe bundle",
            "python": platform.python_version(),
            "machine": machine_info(),
            "parameters": count_parameters(model),
            "corpus": corpus_summary,
            "shards": {
                s: {k: v for k, v in i.items() if k != "shards"}
                for s, i in shard_meta["splits"].items()
            },
            "final_train_metrics": final,
            "timings_s": timings.rounded(),
            "evaluation": reports,
            "files": {},
        }
        for f in sorted(tmp.rglob("*")):
            if f.is_file():
                report["files"][str(f.relative_to(tmp))] = f.stat().st_size
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "MODEL_CARD.md").write_text(render_card(report, metrics))
    return report


def cli_register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "bundle",
        help="reproduce the bundled model (stdlib corpus -> ... -> models/starcoder-ls-tiny)",
        description="Train the bundled offline model from scratch on this interpreter's standard "
        "library and write it, with its model card, to --output. About 35 minutes on 2 CPU cores.",
    )
    from starcoder_ls.models import BUNDLED_DIR

    p.add_argument("--output", type=Path, default=BUNDLED_DIR, help=f"default: {BUNDLED_DIR}")
    p.add_argument(
        "--work", type=Path, default=Path("runs/bundle"), help="intermediate outputs (resumable)"
    )
    p.add_argument("--max-steps", type=int, default=BundleConfig.max_steps)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cli_run)


def _cli_run(args: argparse.Namespace) -> int:
    # OpenMP threads that sleep instead of spinning between parallel regions: the tiny model's
    # many small ops made spinning threads fight over 2 cores (measured about 15% faster).
    # Only effective before torch loads, which is why it is set here.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cfg = BundleConfig(max_steps=args.max_steps)
    report = run_bundle(args.output, args.work, cfg, progress=not args.no_progress)
    print(
        json.dumps(
            {
                "output": str(args.output),
                "timings_s": report["timings_s"],
                "parameters": report["parameters"],
            },
            indent=2,
        )
    )
    return 0
