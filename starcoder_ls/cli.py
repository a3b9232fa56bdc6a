"""The ``starcoder-ls`` command. With no arguments it speaks LSP over stdio (what editors launch).

Sub-command modules are imported only when their command runs, so ``starcoder-ls --help`` stays
fast: torch, transformers and llama.cpp load only for the commands that need them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from starcoder_ls import __version__

# Recipe stages, in pipeline order: (module, short help). Each module has ``cli_register``.
RECIPE_STAGES: tuple[tuple[str, str], ...] = (
    ("starcoder_ls.recipe.corpus", "collect, filter, deduplicate and redact source files"),
    ("starcoder_ls.recipe.tokenizer", "train a byte-level BPE tokenizer"),
    ("starcoder_ls.recipe.data", "FIM-transform and pack a corpus into token shards"),
    ("starcoder_ls.recipe.train", "train a GPTBigCode model"),
    ("starcoder_ls.recipe.adapt", "adapt an existing model: FIM tokens and training, LoRA"),
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
    parser.add_argument("--log-file", help="write the log here (default: stderr)")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        type=str.upper,
        help="default: WARNING",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    lsp = sub.add_parser(
        "lsp",
        help="run the language server (stdio unless --tcp)",
        description="Run the language server. Editors launch `starcoder-ls` with no arguments, "
        "which is the same as `starcoder-ls lsp`. Settings come from the editor "
        "(initializationOptions, section `starcoder`); the flags below set the defaults.",
    )
    lsp.add_argument("--stdio", action="store_true", help="speak LSP on stdin/stdout (default)")
    lsp.add_argument("--tcp", metavar="HOST:PORT", help="listen on a TCP port instead")
    from starcoder_ls import complete

    complete.add_settings_flags(lsp)
    lsp.set_defaults(func=_run_lsp)

    complete.cli_register(sub)
    from starcoder_ls.evaluation import command as eval_command

    eval_command.cli_register(sub)
    from starcoder_ls.serve import command as serve_command

    serve_command.cli_register(sub)

    from starcoder_ls.models import command as models_command

    models_command.cli_register(sub)

    stats = sub.add_parser(
        "stats",
        help="local acceptance statistics (shown, accepted, rejected)",
        description="Completions shown, accepted and rejected, per language. Kept on this "
        "machine only.",
    )
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=_run_stats)

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


def _run_lsp(args: argparse.Namespace) -> int:
    from starcoder_ls.complete import settings_from_args
    from starcoder_ls.server import serve

    return serve(settings_from_args(args), tcp=args.tcp)


def _run_stats(args: argparse.Namespace) -> int:
    import json

    from starcoder_ls.stats import Stats, format_summary

    summary = Stats.load().summary()
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print("\n".join(format_summary(summary)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from starcoder_ls.evaluation.command import legacy_argv
    from starcoder_ls.server import setup_logging
    from starcoder_ls.types import UserError

    parser = build_parser()
    argv = legacy_argv(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_file)
    if not hasattr(args, "func"):
        # No command: what editors launch. Speak LSP on stdio.
        args = parser.parse_args([*argv, "lsp"])
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"starcoder-ls: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("starcoder-ls: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``starcoder-ls models list | head``): stop quietly, and point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
