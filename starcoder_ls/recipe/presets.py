"""``starcoder-ls recipe presets``: the model sizes the recipe knows, with parameter counts."""

from __future__ import annotations

import argparse
import json
from typing import Any

from starcoder_ls.recipe.model import PRESETS, build_model, count_parameters


def cli_register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "presets", help="list model presets", description="List the GPTBigCode model presets."
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cli_run)


def _cli_run(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    for p in PRESETS.values():
        params = count_parameters(build_model(p, device="meta"))
        rows.append(
            {
                "name": p.name,
                "n_embd": p.n_embd,
                "n_layer": p.n_layer,
                "n_head": p.n_head,
                "n_positions": p.n_positions,
                "vocab_size": p.vocab_size,
                "parameters": params,
                "note": p.note,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="GPTBigCode presets (multi-query attention, learned positions)")
    for col in ("name", "n_embd", "layers", "heads", "context", "vocab", "parameters", "note"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"],
            str(r["n_embd"]),
            str(r["n_layer"]),
            str(r["n_head"]),
            str(r["n_positions"]),
            str(r["vocab_size"]),
            f"{r['parameters'] / 1e6:,.1f}M",
            r["note"],
        )
    Console().print(table)
    return 0
