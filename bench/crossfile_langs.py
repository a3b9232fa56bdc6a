#!/usr/bin/env python
"""Cross-file definition recall per language, on real repositories.

The repositories and commits are listed in ``bench/crossfile_repos.json``. Each is taken from a
local git mirror (``--mirrors DIR`` holding ``<owner>+<name>/repo`` git directories, as the
project's fetch tool writes them) or, failing that, cloned from GitHub; its tree at the listed
commit is extracted once into ``~/.cache/starcoder-ls/bench-repos/`` and indexed as a workspace
(the listed folder of it). Then ``starcoder-ls eval recall``'s measure runs without generation:
hidden lines that use a definition from another file, and whether the prompt's cross-file
context holds that definition. Budgets: the project's benchmark budget (1,536 prompt tokens,
512 of them cross-file) unless ``--context-tokens``/``--cross-file-tokens`` say otherwise.

Usage: ``python bench/crossfile_langs.py [--samples N] [--only LANG,...] [--small] [--perf]
[--json OUT]``. Prints a Markdown table per repository and per language; ``--small`` adds the
recall at the bundled model's budget, ``--perf`` the index build (time, memory) and retrieval
time per request of each repository.
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
        ["git", f"--git-dir={git_dir}", "archive", entry["commit"]], capture_output=True
    )
    if archive.returncode == 0:
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    else:  # a mirror without its largest blobs: every file that is there
        extract_present(git_dir, entry["commit"], dest)
    (dest / ".complete").write_text(entry["commit"] + "\n")
    return dest


def extract_present(git_dir: Path, commit: str, dest: Path) -> None:
    """The files of ``commit`` whose blobs the mirror holds (a partial mirror leaves out its
    largest files, which are data, not code)."""
    listing = subprocess.run(
        ["git", f"--git-dir={git_dir}", "ls-tree", "-r", "-z", commit],
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for item in filter(None, listing):
        meta, _, name = item.partition(b"\t")
        mode, kind, sha = meta.split()
        if kind != b"blob" or mode == b"120000":
            continue
        blob = subprocess.run(
            ["git", f"--git-dir={git_dir}", "cat-file", "blob", sha.decode()], capture_output=True
        )
        if blob.returncode != 0:
            continue
        target = dest / name.decode("utf-8", "replace")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob.stdout)


def measure(root: Path, samples: int, seed: int, context: int, cross: int) -> dict[str, Any]:
    from starcoder_ls.evaluation import recall as evaluate
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
    from starcoder_ls.context.workspaces import build_for_cli

    index = build_for_cli(root, settings.workspace, progress=False)
    result = evaluate.run(
        root, settings=settings, samples=samples, seed=seed, generate=False, index=index
    )
    return {
        "files": len(index),
        "samples": result.samples,
        "candidates": result.candidates if hasattr(result, "candidates") else None,
        "recall": round(result.recall_with, 4),
        "recall_without": round(result.recall_without, 4),
        "by_kind": {k: round(v, 4) for k, v in result.recall_by_kind.items()},
        "cross_file_tokens": round(result.cross_file_tokens, 1),
        "seconds": round(result.seconds, 1),
    }


def performance(root: Path, language: str) -> dict[str, Any]:
    """Index build in a fresh process (time, peak memory) and retrieval time per request."""
    import tempfile

    from crossfile_bench import build_in_child, retrieval_in_child

    with tempfile.TemporaryDirectory() as cache:
        built = build_in_child(root, Path(cache), 20_000, edits=False)
    timed = retrieval_in_child(root, 200, language)
    return {
        "index_s": built["build_s"],
        "index_files": built["files"],
        "index_rss_mb": built["peak_rss_mb"],
        "worker_rss_mb": built["worker_peak_rss_mb"],
        "retrieval": timed,
    }


def mixed_workspace(entries: list[dict[str, str]], mirrors: Path, files: int) -> dict[str, Any]:
    """One workspace of several languages' repositories (copies, one folder each) with at least
    ``files`` source files: the index build of a big polyglot tree in a fresh process."""
    import shutil
    import tempfile

    from crossfile_bench import build_in_child

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "mixed"
        used, count = [], 0
        for entry in sorted(entries, key=lambda e: e["repo"]):
            if count >= files:
                break
            tree = checkout(entry, mirrors)
            src = tree / entry["path"] if entry["path"] else tree
            shutil.copytree(src, root / entry["repo"].replace("/", "+"), symlinks=True)
            used.append(entry["repo"])
            count = sum(1 for p in root.rglob("*") if p.is_file())
        built = build_in_child(root, Path(tmp) / "cache", 20_000, edits=True)
    return {"repos": used, **built}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help="comma-separated languages")
    ap.add_argument("--context-tokens", type=int, default=1536)
    ap.add_argument("--cross-file-tokens", type=int, default=512)
    ap.add_argument(
        "--small",
        action="store_true",
        help="also measure at the bundled model's budget (512 prompt tokens, of which cross-file "
        "context gets at most half)",
    )
    ap.add_argument(
        "--perf", action="store_true", help="also time the index build and retrieval per request"
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
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
        if args.small:
            small = measure(root, args.samples, args.seed, 512, 512)
            result["recall_small"] = small["recall"]
        if args.perf:
            result.update(performance(root, entry["language"]))
        result.update(entry, wall_s=round(time.perf_counter() - t, 1))
        rows.append(result)
    from starcoder_ls.machine import machine_info

    m = machine_info()
    mixed = None
    if args.perf and not only:
        print("a mixed workspace ...", file=sys.stderr)
        mixed = mixed_workspace(entries, args.mirrors, 2400)
    print(report(rows, m, args, mixed))
    if args.json:
        payload = {"machine": m, "rows": rows, "mixed": mixed}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def report(
    rows: list[dict[str, Any]],
    m: dict[str, Any],
    args: argparse.Namespace,
    mixed: dict[str, Any] | None = None,
) -> str:
    small = "recall_small" in (rows[0] if rows else {})
    lines = [
        "# Cross-file definition recall per language",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores. Budget: {args.context_tokens} prompt tokens, "
        f"{args.cross_file_tokens} cross-file"
        + (
            "; *small*: 512 prompt tokens (the bundled model's context), of which cross-file "
            "context gets at most half"
            if small
            else ""
        )
        + f". Up to {args.samples} samples per repository (seed {args.seed}). Repositories and "
        "commits: `bench/crossfile_repos.json`.",
        "",
        "| language | repository | files | samples | recall with context | without |"
        + (" small budget |" if small else "")
        + " time |",
        "|---|---|---|---|---|---|" + ("---|" if small else "") + "---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['language']} | {r['repo']}{'/' + r['path'] if r['path'] else ''} | "
            f"{r['files']} | {r['samples']} | {r['recall']:.1%} | {r['recall_without']:.1%} | "
            + (f"{r['recall_small']:.1%} | " if small else "")
            + f"{r['wall_s']} s |"
        )
    lines += [
        "",
        "| language | samples | recall (pooled) |" + (" small budget |" if small else ""),
        "|---|---|---|" + ("---|" if small else ""),
    ]
    for language in dict.fromkeys(r["language"] for r in rows):
        mine = [r for r in rows if r["language"] == language]
        n = sum(r["samples"] for r in mine)
        if not n:
            lines.append(f"| {language} | 0 | — |" + (" — |" if small else ""))
            continue
        hit = sum(r["recall"] * r["samples"] for r in mine) / n
        row = f"| {language} | {n} | {hit:.1%} |"
        if small:
            row += f" {sum(r['recall_small'] * r['samples'] for r in mine) / n:.1%} |"
        lines.append(row)
    if rows and "index_s" in rows[0]:
        lines += [
            "",
            "Index build in a fresh process (outlines in two worker processes, or in the process "
            "for a small tree) and, in another fresh process holding the index, retrieval per "
            "request at a 512-token cross-file budget, tokens counted by the model's worker "
            "process as in the server (*cold*: each request at a random line of another file; "
            "*typing*: line after line down a file, the target's case; *after a pause*: every "
            "fifth of those lines, the file indexed again first, as the server does after a "
            "pause in typing):",
            "",
            "| repository | files indexed | build | peak RSS (main + worker) | cold p50 / p95 | "
            "typing p50 / p95 | after a pause p50 / p95 |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            t = r["retrieval"]
            lines.append(
                f"| {r['repo']} | {r['index_files']} | {r['index_s']} s | "
                f"{r['index_rss_mb']} MB"
                + (f" + {r['worker_rss_mb']} MB" if r["worker_rss_mb"] else " (in process)")
                + " | "
                f"{t['cold']['p50_ms']} / {t['cold']['p95_ms']} ms | "
                f"{t['typing']['p50_ms']} / {t['typing']['p95_ms']} ms | "
                f"{t['paused']['p50_ms']} / {t['paused']['p95_ms']} ms |"
            )
    if mixed is not None:
        lines += [
            "",
            f"A polyglot workspace ({', '.join(mixed['repos'])}, copied into one folder), fresh "
            f"process: **{mixed['files']} files** indexed in **{mixed['build_s']} s**, peak RSS "
            f"**{mixed['peak_rss_mb']} MB** (outline workers at most {mixed['worker_peak_rss_mb']}"
            f" MB); re-indexing an edited file p50 {mixed['reindex_ms_p50']} ms, p95 "
            f"{mixed['reindex_ms_p95']} ms. Targets for 2,000 files: 20 s, 300 MB.",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
