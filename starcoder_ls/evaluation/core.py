"""What every ``starcoder-ls eval`` suite shares: a case is a hole in a document, filled through
the real completion engine (the same template, context, backend and post-processing an editor
gets, local or remote), scored against the hidden text, and reported as one row per model and
setting beside two baselines that need no model (an empty fill, and the previous line again).

A row carries exact match, edit similarity, pass@1 where the suite can run tests, latency p50
and p95 as the editor would wait for it, and the tokens the backend was given and evaluated.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from starcoder_ls.evaluation.heldout import EvaluationError, edit_similarity
from starcoder_ls.machine import machine_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Case:
    """A hole in a document: the editor shows ``prefix + suffix`` with the cursor between."""

    id: str
    path: str
    """The document's path (relative to the workspace, or a name that gives its language)."""
    prefix: str
    suffix: str
    target: str
    """The hidden text; for a whole-line hole without the line break, which stays in the
    suffix, so the editor shows an empty line (or the line's indentation) at the cursor."""
    single_line: bool
    """Ask for one line and score the first line of the completion."""
    previous: str = ""
    """The repeat baseline's fill: the previous non-blank line, as it would be inserted."""
    problem: str = ""
    """The executable problem this hole belongs to (pass@1), or empty."""


@dataclass(frozen=True)
class Prediction:
    text: str
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    evaluated_tokens: int = 0
    generated_tokens: int = 0
    error: str = ""
    """The backend failed on this hole (scored as an empty fill)."""


MAX_FAILURES_IN_A_ROW = 5
"""A backend that fails this many holes in a row is down: the run stops and says so."""


@dataclass
class Row:
    model: str
    setting: str
    samples: int
    exact_match: float
    edit_similarity: float
    pass_at_1: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    prompt_tokens: float | None = None
    """Mean prompt tokens per completion."""
    evaluated_tokens: int | None = None
    """Prompt tokens the backend evaluated in all (fewer than sent when its KV cache helped)."""
    generated_tokens: int | None = None
    empty: int = 0
    """Completions that came back empty (the engine found nothing worth showing)."""
    errors: int | None = None
    """Holes the backend failed on (scored as empty fills); None when there were none."""
    seconds: float = 0.0
    baseline: bool = False


@dataclass
class Report:
    suite: str
    samples: int
    rows: list[Row] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    """What the suite was run on (workspace, benchmark, data file, limits)."""
    details: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """A report as ``as_dict`` wrote it (to draw its chart again, say)."""
        fields = {k: v for k, v in data.items() if k != "rows"}
        return cls(**fields, rows=[Row(**row) for row in data.get("rows", [])])

    def as_dict(self, details: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not details:
            out.pop("details")
        return out


def normalize(text: str) -> str:
    """Trailing whitespace of each line and trailing line breaks do not count."""
    return "\n".join(line.rstrip() for line in text.rstrip("\n").split("\n"))


def fill_of(case: Case, completion: str) -> str:
    """What the completion puts in the hole: its first line for a single-line case."""
    return completion.split("\n", 1)[0] if case.single_line else completion


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def cursor_of(prefix: str) -> tuple[int, int]:
    """0-based line and code-point column at the end of ``prefix``."""
    return prefix.count("\n"), len(prefix) - (prefix.rfind("\n") + 1)


def predict(
    engine: Any,
    case: Case,
    *,
    root: Path | None = None,
    index: Any = None,
) -> Prediction:
    """Fill one hole through the engine, as an editor asking at the cursor would.

    With ``index`` (the workspace index behind cross-file context) the index is shown the
    document with the hole while the engine runs, so no context can carry the hidden text."""
    from starcoder_ls.documents import Snapshot
    from starcoder_ls.types import CompletionMode

    text = case.prefix + case.suffix
    if root is not None:
        uri = (root / case.path).as_uri()
    else:  # a document of its own per case: nothing carries over between holes
        uri = f"untitled:{uuid.uuid4().hex}/{case.path}"
    snapshot = Snapshot.from_text(text, uri=uri, path=case.path)
    line, col = cursor_of(case.prefix)
    original = None
    if index is not None:
        lines = index.read_lines(case.path)
        original = "".join(lines) if lines is not None else None
        index.update(case.path, text)
    # What the engine remembers for typing forward belongs to another hole of this document.
    engine.forward.forget(uri)
    before = engine.usage.as_dict()
    t0 = time.perf_counter()
    try:
        done = engine.complete(
            snapshot,
            line,
            col,
            root=root,
            invoked=True,
            mode=CompletionMode.SINGLE_LINE if case.single_line else CompletionMode.MULTI_LINE,
        )
    finally:
        if index is not None and original is not None:
            index.update(case.path, original)
    latency = (time.perf_counter() - t0) * 1000
    after = engine.usage.as_dict()
    return Prediction(
        text=fill_of(case, done.text if done is not None else ""),
        latency_ms=round(latency, 2),
        prompt_tokens=after["prompt_tokens"] - before["prompt_tokens"],
        evaluated_tokens=after["evaluated_tokens"] - before["evaluated_tokens"],
        generated_tokens=after["generated_tokens"] - before["generated_tokens"],
    )


Checker = Callable[[Sequence[Case], Sequence[str]], list[bool]]
"""Runs each case's program with its fill in place; True where the tests pass."""


def score(
    model: str,
    setting: str,
    cases: Sequence[Case],
    preds: Sequence[Prediction],
    *,
    checker: Checker | None = None,
    seconds: float = 0.0,
    baseline: bool = False,
) -> tuple[Row, list[dict[str, Any]]]:
    """One row of the table, and the per-case details behind it."""
    n = len(cases)
    if n == 0:
        raise EvaluationError("nothing to evaluate: no samples")
    fills = [normalize(p.text) for p in preds]
    targets = [normalize(c.target) for c in cases]
    exact = [f == t for f, t in zip(fills, targets, strict=True)]
    sims = [edit_similarity(f, t) for f, t in zip(fills, targets, strict=True)]
    passed = checker(cases, [p.text for p in preds]) if checker is not None else None
    latencies = [p.latency_ms for p in preds if not p.error]
    failed = sum(bool(p.error) for p in preds)
    row = Row(
        model=model,
        setting=setting,
        samples=n,
        exact_match=round(sum(exact) / n, 4),
        edit_similarity=round(sum(sims) / n, 4),
        pass_at_1=round(sum(passed) / n, 4) if passed is not None else None,
        empty=sum(not f.strip() for f in fills),
        errors=failed or None,
        seconds=round(seconds, 2),
        baseline=baseline,
    )
    if not baseline:
        p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
        row.latency_p50_ms = round(p50, 1) if p50 is not None else None
        row.latency_p95_ms = round(p95, 1) if p95 is not None else None
        row.prompt_tokens = round(sum(p.prompt_tokens for p in preds) / n, 1)
        row.evaluated_tokens = sum(p.evaluated_tokens for p in preds)
        row.generated_tokens = sum(p.generated_tokens for p in preds)
    details = [
        {
            "id": c.id,
            "model": model,
            "setting": setting,
            "fill": p.text,
            "target": c.target,
            "exact": e,
            "edit_similarity": round(s, 4),
            **({"passed": passed[i]} if passed is not None else {}),
            **({} if baseline else {"latency_ms": p.latency_ms, "prompt_tokens": p.prompt_tokens}),
            **({"error": p.error} if p.error else {}),
        }
        for i, (c, p, e, s) in enumerate(zip(cases, preds, exact, sims, strict=True))
    ]
    return row, details


def baseline_rows(
    cases: Sequence[Case], checker: Checker | None = None
) -> tuple[list[Row], list[dict[str, Any]]]:
    """An empty fill, and the previous non-blank line again."""
    rows, details = [], []
    for name, fills in (
        ("empty", ["" for _ in cases]),
        ("repeat previous line", [c.previous for c in cases]),
    ):
        row, detail = score(
            f"baseline: {name}",
            "",
            cases,
            [Prediction(f) for f in fills],
            checker=checker,
            baseline=True,
        )
        rows.append(row)
        details += detail
    return rows, details


def run_model(
    engine: Any,
    cases: Sequence[Case],
    *,
    label: str,
    setting: str,
    checker: Checker | None = None,
    root: Path | None = None,
    index: Any = None,
    progress: Any = None,
) -> tuple[Row, list[dict[str, Any]]]:
    """Every case through one engine; ``progress`` is a rich Progress (or None).

    A hole the backend fails on (a timeout, a refused request) is scored as an empty fill and
    counted; MAX_FAILURES_IN_A_ROW failures in a row stop the run with the backend's error."""
    from starcoder_ls.types import BackendError

    t0 = time.perf_counter()
    task = progress.add_task(f"{label} {setting}".strip(), total=len(cases)) if progress else None
    preds = []
    streak = 0
    last: BackendError | None = None
    for case in cases:
        try:
            preds.append(predict(engine, case, root=root, index=index))
            streak = 0
        except BackendError as exc:
            streak += 1
            last = exc
            if streak >= MAX_FAILURES_IN_A_ROW:
                raise
            log.warning("%s: %s failed: %s", label, case.id, exc)
            preds.append(Prediction("", error=str(exc)))
        if progress is not None:
            progress.advance(task)
    if last is not None and all(p.error for p in preds):
        raise last  # nothing was measured
    return score(label, setting, cases, preds, checker=checker, seconds=time.perf_counter() - t0)


def parallel_map(fn: Callable[[Any], Any], items: Sequence[Any], workers: int) -> list[Any]:
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(fn, items))


# -- output ---------------------------------------------------------------------------------

_COLUMNS = (
    ("model", "model"),
    ("setting", "setting"),
    ("n", "samples"),
    ("exact match", "exact_match"),
    ("edit sim.", "edit_similarity"),
    ("pass@1", "pass_at_1"),
    ("p50 ms", "latency_p50_ms"),
    ("p95 ms", "latency_p95_ms"),
    ("prompt tok.", "prompt_tokens"),
    ("evaluated tok.", "evaluated_tokens"),
    ("errors", "errors"),
)


def _cell(key: str, value: Any) -> str:
    if value is None or value == "":
        return "-"
    if key in ("exact_match", "pass_at_1"):
        return f"{100 * value:.1f}%"
    if key == "edit_similarity":
        return f"{value:.3f}"
    if isinstance(value, float):
        return f"{value:.0f}"
    return str(value)


def format_markdown(report: Report, title: str = "") -> str:
    """The table in Markdown, with the machine and the sample count above it."""
    shown = [c for c in _COLUMNS if _used(report, c[1])]
    out = [f"### {title}", ""] if title else []
    out.append(f"Machine: {machine_line(report.machine)}. Samples: {report.samples}.")
    out.append("")
    out.append("| " + " | ".join(h for h, _ in shown) + " |")
    out.append("|" + "|".join("---" for _ in shown) + "|")
    for row in report.rows:
        values = asdict(row)
        out.append("| " + " | ".join(_cell(k, values[k]) for _, k in shown) + " |")
    return "\n".join(out)


def _used(report: Report, key: str) -> bool:
    if key in ("model", "setting"):
        return key == "model" or any(r.setting for r in report.rows)
    return any(getattr(r, key) is not None for r in report.rows)


def print_table(report: Report, title: str) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    shown = [c for c in _COLUMNS if _used(report, c[1])]
    table = Table(
        title=title,
        caption=f"{machine_line(report.machine)} · {report.samples} samples",
    )
    for header, key in shown:
        table.add_column(header, justify="left" if key in ("model", "setting") else "right")
    for row in report.rows:
        values = asdict(row)
        table.add_row(
            *(_cell(k, values[k]) for _, k in shown), style="dim" if row.baseline else None
        )
    # Piped to a file, rich would fold the table into 80 columns.
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def _replace(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file beside ``path``: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(report: Report, path: Path, *, details: bool = False) -> None:
    text = json.dumps(report.as_dict(details), indent=1) + "\n"
    _replace(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_chart(report: Report, path: Path, title: str) -> None:
    """A bar chart of exact match, edit similarity and pass@1 per row (PNG)."""
    try:
        import matplotlib
    except ImportError:
        raise EvaluationError(
            "--chart needs matplotlib: pip install 'starcoder-ls[eval]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("exact match", "exact_match"), ("edit similarity", "edit_similarity")]
    if any(r.pass_at_1 is not None for r in report.rows):
        metrics.append(("pass@1", "pass_at_1"))
    import textwrap

    labels = [
        textwrap.fill(r.model, 20) + (f"\n{textwrap.fill(r.setting, 20)}" if r.setting else "")
        for r in report.rows
    ]
    width = 0.8 / len(metrics)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(labels) + 2), 4.5), dpi=100)
    for k, (name, key) in enumerate(metrics):
        xs = [i + (k - (len(metrics) - 1) / 2) * width for i in range(len(labels))]
        ys = [getattr(r, key) or 0.0 for r in report.rows]
        bars = ax.bar(xs, ys, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{title}\n{machine_line(report.machine)}, {report.samples} samples", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _replace(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
