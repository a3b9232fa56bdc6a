"""``starcoder-ls recipe evaluate``: a model (a GGUF file, an HF folder or a training run) on
the validation split of a corpus, through ``starcoder_ls.evaluation.heldout``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from starcoder_ls.evaluation.heldout import (
    EvalModel,
    GGUFModel,
    InMemoryModel,
    baselines,
    fim_exact_match,
    perplexity,
    sample_lines,
)
from starcoder_ls.recipe.errors import RecipeError


def load_eval_model(path: str | Path, *, n_ctx: int | None = None) -> EvalModel:
    """An HF folder, a GGUF file or a training run directory (its latest checkpoint)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".gguf":
        return GGUFModel(path, n_ctx=n_ctx)
    if path.is_dir() and (path / "config.json").is_file():
        from starcoder_ls.recipe.export import load_hf

        model, tok = load_hf(path)
        return InMemoryModel(model, tok)
    if path.is_dir() or path.suffix == ".pt":
        from starcoder_ls.recipe.train import load_checkpoint_model

        model, tok = load_checkpoint_model(path)
        return InMemoryModel(model, tok)
    raise RecipeError(f"not a model: {path} (expected a .gguf file, a HF folder or a training run)")


def evaluate(
    model_path: str | Path,
    corpus: Path,
    *,
    samples: int = 200,
    seed: int = 0,
    max_tokens: int = 50_000,
    n_ctx: int | None = None,
) -> dict[str, Any]:
    """The full report for one model on the validation split of a corpus directory."""
    from starcoder_ls.recipe.corpus import read_corpus

    path = Path(corpus) / "validation.jsonl" if Path(corpus).is_dir() else Path(corpus)
    files = list(read_corpus(path))
    if not files:
        raise RecipeError(f"{path} holds no files to evaluate on")
    t0 = time.perf_counter()
    model = load_eval_model(model_path, n_ctx=n_ctx)
    load_s = time.perf_counter() - t0
    line_samples = sample_lines(files, samples, seed=seed)
    return {
        "model": str(model_path),
        "corpus": str(path),
        "load_seconds": round(load_s, 3),
        "n_ctx": model.n_ctx,
        "perplexity": perplexity(
            model, [f.text for f in sorted(files, key=lambda f: f.path)], max_tokens=max_tokens
        ),
        "fim_line": fim_exact_match(model, line_samples),
        "baselines": baselines(line_samples),
    }


def cli_register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="perplexity and single-line FIM exact match of a model on held-out files",
        description="Evaluate a GGUF file, a Hugging Face GPTBigCode folder or a training run on "
        "the validation split of a corpus: perplexity, and single-line fill-in-the-middle exact "
        "match next to two trivial baselines (empty line, repeat the previous line).",
    )
    p.add_argument("model", nargs="+", type=Path, help="one or more models to compare")
    p.add_argument(
        "--corpus", type=Path, required=True, help="corpus directory (its validation split)"
    )
    p.add_argument("--samples", type=int, default=200, help="hidden lines to infill")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-tokens", type=int, default=50_000, help="held-out tokens for perplexity")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.set_defaults(func=_cli_run)


def _cli_run(args: argparse.Namespace) -> int:
    reports = [
        evaluate(m, args.corpus, samples=args.samples, seed=args.seed, max_tokens=args.max_tokens)
        for m in args.model
    ]
    if args.json:
        print(json.dumps(reports if len(reports) > 1 else reports[0], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"held-out evaluation ({args.corpus})")
    for col in ("model", "perplexity", "FIM line EM", "edit sim.", "load s"):
        table.add_column(col)
    for r in reports:
        table.add_row(
            r["model"],
            str(r["perplexity"]["perplexity"]),
            f"{r['fim_line']['exact_match']:.1%}",
            f"{r['fim_line']['edit_similarity']:.3f}",
            str(r["load_seconds"]),
        )
    for name, b in reports[0]["baselines"].items():
        table.add_row(
            f"baseline: {name}", "-", f"{b['exact_match']:.1%}", f"{b['edit_similarity']:.3f}", "-"
        )
    Console().print(table)
    return 0
