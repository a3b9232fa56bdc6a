"""Which model to run: the evaluation suite (`starcoder-ls eval`) on three setups, one report.

Setups, each through the engine an editor gets:

- the bundled tiny model (Q8_0 GGUF, llama.cpp in its worker process);
- the default model (Gemma-3-270M, Q4_K_M GGUF, llama.cpp);
- a team server: `starcoder-ls serve --backend llamacpp` with the default model on localhost,
  reached through the remote backend (``--model http://127.0.0.1:PORT``), as a team would.

Suites:

1. HumanEval-infilling, single-line: all 1,033 holes, pass@1 by running the tests in the
   sandbox, beside the empty and repeat-the-previous-line baselines;
2. held-out lines of a real workspace (the installed ``rich`` package's sources, a copy), with
   and without cross-file context.

Writes bench/results/evaluation.{md,json} and evaluation_humaneval.png, evaluation_lines.png.

    .venv/bin/python bench/evaluation_bench.py [--humaneval-samples N] [--lines-samples N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "serve"))

from serve_helpers import ServeProcess  # noqa: E402

from starcoder_ls.evaluation.command import model_overrides, run_humaneval, run_lines  # noqa: E402
from starcoder_ls.evaluation.core import Report, format_markdown, write_chart  # noqa: E402
from starcoder_ls.settings import parse_settings  # noqa: E402

TINY = ROOT / "models" / "starcoder-ls-tiny" / "starcoder-ls-tiny-Q8_0.gguf"
WORKSPACE_PACKAGE = "rich"


def settings(**raw: Any) -> Any:
    parsed, errors = parse_settings({"workspace": {"persist": False}, **raw})
    if errors:
        raise SystemExit("; ".join(errors))
    return parsed


def workspace_copy(dest: Path) -> tuple[Path, str]:
    """The installed package's sources as a workspace of their own, and its version."""
    from importlib.metadata import version

    src = Path(sysconfig.get_paths()["purelib"]) / WORKSPACE_PACKAGE
    root = dest / f"ws-{WORKSPACE_PACKAGE}"
    shutil.copytree(src, root / WORKSPACE_PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    return root, version(WORKSPACE_PACKAGE)


def humaneval_suite(models: list[Any], samples: int | None) -> Report:
    """HumanEval-infilling single-line for each model (pass@1 by execution), timed."""
    t0 = time.perf_counter()
    report = run_humaneval(
        models,
        benchmark="single-line",
        data=None,
        samples=samples,
        seed=0,
        timeout_s=3.0,
        memory_mb=1024,
        progress=True,
    )
    report.info["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def lines_suite(models: list[Any], tmp: Path, samples: int) -> Report:
    """Held-out lines of a copy of the installed workspace package, timed."""
    root, package_version = workspace_copy(tmp)
    t0 = time.perf_counter()
    report = run_lines(models, root, samples=samples, seed=0, progress=True)
    report.info["seconds"] = round(time.perf_counter() - t0, 1)
    report.info["workspace"] = f"{WORKSPACE_PACKAGE} {package_version} (installed sources)"
    return report


def render(humaneval: Report, lines: Report, out: Path) -> str:
    """The charts, the JSON and the Markdown report of one run; returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    write_chart(humaneval, out / "evaluation_humaneval.png", "HumanEval-infilling, single-line")
    write_chart(lines, out / "evaluation_lines.png", f"held-out lines of {WORKSPACE_PACKAGE}")
    (out / "evaluation.json").write_text(
        json.dumps({"humaneval": humaneval.as_dict(), "lines": lines.as_dict()}, indent=1) + "\n"
    )
    md = "\n".join(
        [
            "# Evaluation: which model to run",
            "",
            "`bench/evaluation_bench.py`: `starcoder-ls eval` on the bundled tiny model, the "
            "default Gemma-3-270M and a team server (`starcoder-ls serve --backend llamacpp "
            "--threads 2`, the default model, on localhost through the remote backend; server "
            "and client share the machine's 2 cores). Every completion goes through the engine "
            "an editor gets, with the completion cache off. Latency is the editor's wait per "
            "completion. Each hole is a new document state, so there is no typing to reuse the "
            "KV cache for, except where consecutive holes share the start of their prompt (the "
            "holes of one HumanEval problem). Prompt tokens are per completion; evaluated "
            "tokens are the prompt tokens the backend computed in all (the team server does not "
            "report what it reused, so there every prompt token counts).",
            "",
            format_markdown(humaneval, "HumanEval-infilling, single-line (pass@1 by execution)"),
            "",
            f"Run time: {humaneval.info['seconds']:.0f} s.",
            "",
            "![HumanEval-infilling](evaluation_humaneval.png)",
            "",
            format_markdown(
                lines, f"Held-out lines of {lines.info['workspace']}, with and without context"
            ),
            "",
            f"Run time: {lines.info['seconds']:.0f} s.",
            "",
            "![held-out lines](evaluation_lines.png)",
            "",
        ]
    )
    (out / "evaluation.md").write_text(md)
    (out / "evaluation_humaneval_partial.json").unlink(missing_ok=True)
    return md


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--humaneval-samples", type=int, default=None, help="default: all 1,033")
    ap.add_argument("--lines-samples", type=int, default=150)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument(
        "--render-only", action="store_true", help="write the report again from its JSON"
    )
    args = ap.parse_args()
    if args.render_only:
        saved = json.loads((args.out / "evaluation.json").read_text())
        render(Report.from_dict(saved["humaneval"]), Report.from_dict(saved["lines"]), args.out)
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="eval-bench-"))
    server = ServeProcess(
        ["--backend", "llamacpp", "--threads", "2"], log=tmp / "serve.log", ready_timeout=300
    )
    try:
        models = [
            ("bundled tiny (Q8_0)", "", settings(model=str(TINY))),
            ("Gemma-3-270M (default, Q4_K_M)", "", settings()),
            ("team server: Gemma-3-270M", "", settings(**model_overrides(server.url))),
        ]
        humaneval = humaneval_suite(models, args.humaneval_samples)
        args.out.mkdir(parents=True, exist_ok=True)  # kept if the second suite fails
        (args.out / "evaluation_humaneval_partial.json").write_text(
            json.dumps(humaneval.as_dict(), indent=1) + "\n"
        )
        lines = lines_suite(models, tmp, args.lines_samples)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(render(humaneval, lines, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
