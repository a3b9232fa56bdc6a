#!/usr/bin/env python
"""Cross-file definition recall per language, on real repositories.

The repositories and commits are listed in ``bench/crossfile_repos.json``. Each is taken from a
local git mirror (``--mirrors DIR`` holding ``<owner>+<name>/repo`` git directories, as the
project's fetch tool writes them) or, failing that, cloned from GitHub; its tree at the listed
commit is extracted once into ``~/.cache/starcoder-ls/bench-repos/`` and indexed as a workspace
(the listed folder of it). Then ``starcoder-ls eval``'s measure runs without generation:
hidden lines that use a definition from another file, and whether the prompt's cross-file
context holds that definition. Budgets: the project's benchmark budget (1,536 prompt tokens,
512 of them cross-file) unless ``--context-tokens``/``--cross-file-tokens`` say otherwise.

Usage: ``python bench/crossfile_langs.py [--samples N] [--only LANG,...] [--json OUT]``.
Prints a Markdown table per repository and per language.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LIST = ROOT / "bench" / "crossfile_repos.json"
CACHE = Path.home() / ".cache" / "starcoder-ls" / "bench-repos"


def checkout(entry: dict[str, str], mirrors: Path) -> Path:
    """The repository's tree at its commit, extracted once."""
    owner, name = entry["repo"].split("/")
    dest = CACHE / f"{owner}+{name}@{entry['commit'][:12]}"
    if (dest / ".complete").exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    git_dir = mirrors / f"{owner}+{name}" / "repo"
    if not git_dir.is_dir():
        git_dir = CACHE / f"{owner}+{name}.git"
        if not git_dir.is_dir():
            url = f"https://github.com/{entry['repo']}.git"
            subprocess.run(["git", "clone", "--bare", "-q", url, str(git_dir)], check=True)
    archive = subprocess.run(
        ["git", f"--git-dir={git_dir}", "archive", entry["commit"]],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    (dest / ".complete").write_text(entry["commit"] + "\n")
    return dest


def measure(root: Path, samples: int, seed: int, context: int, cross: int) -> dict[str, Any]:
    from starcoder_ls.context import evaluate
    from starcoder_ls.settings import parse_settings

    settings, errors = parse_settings(
        {
            "workspace": {"persist": False},
            "cache": {"enabled": False},
            "contextTokens": context,
            "crossFileTokens": cross,
        }
    )
    assert not errors, errors
    result = evaluate.run(root, settings=settings, samples=samples, seed=seed, generate=False)
    return {
        "samples": result.samples,
        "candidates": result.candidates if hasattr(result, "candidates") else None,
        "recall": round(result.recall_with, 4),
        "recall_without": round(result.recall_without, 4),
        "by_kind": {k: round(v, 4) for k, v in result.recall_by_kind.items()},
        "cross_file_tokens": round(result.cross_file_tokens, 1),
        "seconds": round(result.seconds, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help="comma-separated languages")
    ap.add_argument("--context-tokens", type=int, default=1536)
    ap.add_argument("--cross-file-tokens", type=int, default=512)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    entries = json.loads(LIST.read_text())["repos"]
    only = {x for x in args.only.split(",") if x}
    rows = []
    for entry in entries:
        if only and entry["language"] not in only:
            continue
        print(f"{entry['repo']} ...", file=sys.stderr)
        t = time.perf_counter()
        tree = checkout(entry, args.mirrors)
        root = tree / entry["path"] if entry["path"] else tree
        result = measure(root, args.samples, args.seed, args.context_tokens, args.cross_file_tokens)
        result.update(entry, wall_s=round(time.perf_counter() - t, 1))
        rows.append(result)
    from starcoder_ls.recipe.machine import machine_info

    m = machine_info()
    lines = [
        "# Cross-file definition recall per language",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores. Budget: {args.context_tokens} prompt tokens, "
        f"{args.cross_file_tokens} cross-file; up to {args.samples} samples per repository "
        f"(seed {args.seed}). Repositories and commits: `bench/crossfile_repos.json`.",
        "",
        "| language | repository | samples | recall with context | without | time |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['language']} | {r['repo']}{'/' + r['path'] if r['path'] else ''} | "
            f"{r['samples']} | {r['recall']:.1%} | {r['recall_without']:.1%} | {r['wall_s']} s |"
        )
    lines += ["", "| language | samples | recall (pooled) |", "|---|---|---|"]
    for language in dict.fromkeys(r["language"] for r in rows):
        mine = [r for r in rows if r["language"] == language]
        n = sum(r["samples"] for r in mine)
        hit = sum(r["recall"] * r["samples"] for r in mine)
        lines.append(f"| {language} | {n} | {hit / n:.1%} |" if n else f"| {language} | 0 | — |")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"machine": m, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
