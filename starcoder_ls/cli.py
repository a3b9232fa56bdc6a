"""The ``starcoder-ls`` command.

Sub-command modules are imported only when their command runs, so ``starcoder-ls --help`` stays
fast: torch, transformers and llama.cpp load only for the commands that need them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from starcoder_ls import __version__

# Recipe stages, in pipeline order: (module, short help). Each module has ``cli_register``.
RECIPE_STAGES: tuple[tuple[str, str], ...] = (
    ("starcoder_ls.recipe.corpus", "collect, filter, deduplicate and redact source files"),
    ("starcoder_ls.recipe.tokenizer", "train a byte-level BPE tokenizer"),
    ("starcoder_ls.recipe.data", "FIM-transform and pack a corpus into token shards"),
    ("starcoder_ls.recipe.train", "train a GPTBigCode model"),
    ("starcoder_ls.recipe.export", "export a Hugging Face folder and a GGUF file"),
    ("starcoder_ls.recipe.quantize", "quantize a GGUF file"),
    ("starcoder_ls.recipe.evaluate", "evaluate a model on held-out files"),
    ("starcoder_ls.recipe.bundle", "reproduce the bundled offline model end to end"),
    ("starcoder_ls.recipe.presets", "list the model presets"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="starcoder-ls",
        description="StarCoder-family inline code completion for any LSP editor, plus the recipe "
        "that trains, exports and evaluates the models it runs.",
    )
    parser.add_argument("--version", action="version", version=f"starcoder-ls {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from starcoder_ls import complete

    complete.cli_register(sub)

    recipe = sub.add_parser(
        "recipe",
        help="train, export, quantize and evaluate StarCoder-architecture models",
        description="The training recipe, one stage per sub-command: corpus -> tokenizer -> "
        "shards -> train -> export -> quantize -> evaluate. `bundle` runs them all and "
        "reproduces the bundled offline model.",
    )
    stages = recipe.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for module, _ in RECIPE_STAGES:
        importlib.import_module(module).cli_register(stages)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from starcoder_ls.recipe.errors import RecipeError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RecipeError as exc:
        print(f"starcoder-ls: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("starcoder-ls: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
