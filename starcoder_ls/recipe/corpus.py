"""The corpus stage: source trees in, a deduplicated, redacted train/validation JSONL out.

It follows BigCode's preparation of The Stack for StarCoder: keep hand-written source only (no
vendored or generated code, no binaries), drop exact and near duplicates, redact personal data
and secrets, remove anything that would leak an evaluation set, then split by a hash of the
content so that the split never depends on file order, run or machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pathspec

from starcoder_ls.files import quality_problem
from starcoder_ls.recipe.atomic import atomic_path
from starcoder_ls.recipe.errors import RecipeError
from starcoder_ls.recipe.pii import PLACEHOLDERS, redact
from starcoder_ls.recipe.sources import (
    LANGUAGES,
    NOT_COUNTED,
    VENDORED_DIRS,
    Source,
    inside,
    language_of,
    list_git,
    open_source,
    read_text_file,
    stdlib_source,
    vendored_dir,
    walk,
)

__all__ = [
    "CorpusConfig",
    "CorpusFile",
    "CorpusSummary",
    "build_corpus",
    "read_corpus",
    "stdlib_source",
]

if TYPE_CHECKING:  # rich, numpy and datasketch load only when a corpus is built (CLI start-up)
    from rich.console import Console
    from rich.table import Table

    from starcoder_ls.recipe.dedup import Contamination, MinHasher

SKIP_REASONS: tuple[str, ...] = (
    "binary", "too_large", "vendored", "generated", "unknown_language", "language_filter",
    "empty", "symlink",
)  # fmt: skip
# Pruned like vendored directories but not counted: they hold no source, vendored or not.


@dataclass
class CorpusConfig:
    sources: list[str]
    output: Path
    max_file_bytes: int = 1_000_000
    languages: frozenset[str] | None = None
    exclude: tuple[str, ...] = ()
    near_dup_threshold: float = 0.85
    decontaminate: tuple[str, ...] = ()
    val_fraction: float = 0.05
    redact: bool = True


@dataclass
class CorpusSummary:
    output: str
    sources: list[str]
    files_seen: int = 0
    kept_train: int = 0
    kept_validation: int = 0
    bytes_kept: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    exact_duplicates: int = 0
    near_duplicates: int = 0
    decontaminated: int = 0
    redactions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PLACEHOLDERS, 0))
    languages: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def kept(self) -> int:
        return self.kept_train + self.kept_validation

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(kept=self.kept, seconds=round(self.seconds, 3))
        return data


@dataclass(frozen=True)
class CorpusFile:
    repo: str
    path: str
    language: str
    text: str
    sha256: str


def _validate(config: CorpusConfig) -> None:
    if not config.sources:
        raise RecipeError("no sources given: pass at least one directory or git URL")
    if config.max_file_bytes <= 0:
        raise RecipeError(f"max_file_bytes must be positive, got {config.max_file_bytes}")
    if not 0.0 < config.near_dup_threshold <= 1.0:
        raise RecipeError(f"near_dup_threshold must be in (0, 1], got {config.near_dup_threshold}")
    if not 0.0 <= config.val_fraction < 1.0:
        raise RecipeError(f"val_fraction must be in [0, 1), got {config.val_fraction}")
    unknown = sorted(set(config.languages or ()) - set(LANGUAGES.values()))
    if unknown:
        known = ", ".join(sorted(set(LANGUAGES.values())))
        raise RecipeError(f"unknown language(s) {', '.join(unknown)}; known: {known}")


def _is_validation(sha256: str, val_fraction: float) -> bool:
    return int(sha256[:8], 16) / 2**32 < val_fraction


def _empty_message(config: CorpusConfig, summary: CorpusSummary) -> str:
    skipped = {r: n for r, n in summary.skipped.items() if n and r != "vendored"}
    detail = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in skipped.items()) or "none"
    text = f"{summary.files_seen} files seen, {sum(skipped.values())} skipped: {detail}"
    if vendored := summary.skipped["vendored"]:
        text += f"; {vendored} vendored director{'y' if vendored == 1 else 'ies'} pruned"
    if removed := summary.exact_duplicates + summary.near_duplicates + summary.decontaminated:
        text += f"; {removed} removed as duplicates or contaminated"
    return f"no source files found in {', '.join(config.sources)} ({text})"


def build_corpus(config: CorpusConfig, *, progress: bool = True) -> CorpusSummary:
    """Collect, filter, deduplicate, decontaminate, redact and split; write the corpus.

    Files are processed sorted by (repo, path), so "keep the first of each duplicate group",
    and with it the whole output, is the same on every run. Nothing is written unless the
    corpus comes out non-empty.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from starcoder_ls.recipe.dedup import Contamination, MinHasher, eval_documents

    started = time.perf_counter()
    _validate(config)
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("[bold]corpus[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=True,
        disable=not (progress and console.is_terminal),
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="starcoder-ls-corpus-") as workdir, bar:
        sources = [open_source(spec, Path(workdir)) for spec in config.sources]
        if clash := sorted(n for n, c in Counter(s.name for s in sources).items() if c > 1):
            raise RecipeError(f"two sources are named {clash[0]!r}; name them with NAME=PATH")
        summary = CorpusSummary(output=str(config.output), sources=[s.name for s in sources])
        hasher = MinHasher()
        documents = eval_documents(config.decontaminate, VENDORED_DIRS)
        contamination = Contamination(documents, config.near_dup_threshold, hasher)
        scan = bar.add_task("scanning", total=None)
        candidates = _candidates(sources, config, summary, lambda: bar.advance(scan))
        bar.remove_task(scan)
        task = bar.add_task("filtering and deduplicating", total=len(candidates))
        with atomic_path(config.output, directory=True) as tmp:
            pipeline = _Pipeline(config, summary, hasher, contamination)
            with (
                (tmp / "train.jsonl").open("w", encoding="utf-8") as train,
                (tmp / "validation.jsonl").open("w", encoding="utf-8") as validation,
            ):
                for source, rel, language in candidates:
                    bar.advance(task)
                    if (record := pipeline.process(source, rel, language)) is not None:
                        is_val = _is_validation(record["sha256"], config.val_fraction)
                        out = validation if is_val else train
                        out.write(json.dumps(record, ensure_ascii=False) + "\n")
                        summary.kept_validation += is_val
                        summary.kept_train += not is_val
            summary.seconds = time.perf_counter() - started
            if summary.kept == 0:
                raise RecipeError(_empty_message(config, summary))
            (tmp / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    if progress:
        print_summary(summary, console)
    return summary


class _Pipeline:
    """Per-file filtering, in order: readable text, quality, exact duplicate, contamination,
    near duplicate, redaction. Duplicate state lives here, so order of calls is order kept."""

    def __init__(
        self,
        config: CorpusConfig,
        summary: CorpusSummary,
        hasher: MinHasher,
        contamination: Contamination,
    ) -> None:
        from starcoder_ls.recipe.dedup import NearDupIndex, exact_hash

        self.config, self.summary, self.hasher = config, summary, hasher
        self.contamination = contamination
        self.exact_hash = exact_hash
        self.exact: set[str] = set()
        self.near = NearDupIndex(config.near_dup_threshold, hasher.num_perm)

    def process(self, source: Source, rel: str, language: str) -> dict[str, str] | None:
        summary = self.summary
        text, reason = read_text_file(source.root / rel, self.config.max_file_bytes)
        if text is None or (reason := quality_problem(text)) is not None:
            summary.skipped[reason or "binary"] += 1
            return None
        digest = self.exact_hash(text)
        if digest in self.exact:
            summary.exact_duplicates += 1
            return None
        signature = self.hasher.signature(text)
        if len(self.contamination) and self.contamination.match(text, digest, signature):
            summary.decontaminated += 1
            return None
        self.exact.add(digest)
        if signature is not None:
            if self.near.find(signature) is not None:
                summary.near_duplicates += 1
                return None
            self.near.add(f"{source.name}/{rel}", signature)
        if self.config.redact:
            text, counts = redact(text)
            for placeholder, n in counts.items():
                summary.redactions[placeholder] += n
        data = text.encode("utf-8")
        summary.bytes_kept += len(data)
        summary.languages[language] = summary.languages.get(language, 0) + 1
        sha = hashlib.sha256(data).hexdigest()
        return {"repo": source.name, "path": rel, "language": language, "text": text, "sha256": sha}


def _candidates(
    sources: list[Source], config: CorpusConfig, summary: CorpusSummary, tick: Callable[[], None]
) -> list[tuple[Source, str, str]]:
    """Every file worth reading, sorted by (repo, path); the path-only skips happen here."""
    user_exclude = pathspec.GitIgnoreSpec.from_lines(config.exclude)
    out: list[tuple[Source, str, str]] = []
    for source in sources:
        vendored: set[str] = set()
        escaping: list[str] = []
        listed = list_git(source.root) if source.is_git else None
        if listed is None:
            listed = list(walk(source.root, vendored, escaping))
        summary.skipped["symlink"] += len(escaping)
        for rel in listed:
            if (top := vendored_dir(source.root, rel)) is not None:
                vendored.add(top)
                continue
            if user_exclude.match_file(rel):
                continue
            path = source.root / rel
            if not path.is_file():
                continue  # deleted but still in the index, a submodule, a symlinked directory
            tick()
            summary.files_seen += 1
            if path.is_symlink() and not inside(path, source.root):
                summary.skipped["symlink"] += 1
            elif (language := language_of(rel)) is None:
                summary.skipped["unknown_language"] += 1
            elif config.languages is not None and language not in config.languages:
                summary.skipped["language_filter"] += 1
            else:
                out.append((source, rel, language))
        summary.skipped["vendored"] += len(
            {v for v in vendored if v.rsplit("/", 1)[-1] not in NOT_COUNTED}
        )
    return sorted(out, key=lambda c: (c[0].name, c[1]))


def read_corpus(path: Path) -> Iterator[CorpusFile]:
    """The records of a corpus JSONL file (or of ``train.jsonl`` when given the directory),
    checked field by field so a later stage fails here, with a line number, not deep inside."""
    path = Path(path)
    if path.is_dir():
        path = path / "train.jsonl"
    if not path.is_file():
        raise RecipeError(
            f"corpus file {path} not found; build it with `starcoder-ls recipe corpus`"
        )
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                item = CorpusFile(
                    **{k: record[k] for k in ("repo", "path", "language", "text", "sha256")}
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise RecipeError(f"{path}:{number}: malformed corpus record ({exc})") from exc
            if not all(isinstance(v, str) for v in vars(item).values()):
                raise RecipeError(f"{path}:{number}: malformed corpus record (non-string field)")
            if hashlib.sha256(item.text.encode("utf-8")).hexdigest() != item.sha256:
                raise RecipeError(
                    f"{path}:{number}: sha256 does not match the text (file edited or corrupt)"
                )
            yield item


def summary_table(summary: CorpusSummary) -> Table:
    from rich.table import Table

    table = Table(title=f"corpus -> {summary.output}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [
        ("files seen", summary.files_seen),
        ("kept (train / validation)", f"{summary.kept} ({summary.kept_train} / {summary.kept_validation})"),
        ("bytes kept", f"{summary.bytes_kept:,}"),
        *((f"skipped: {r.replace('_', ' ')}" + (" (directories)" if r == "vendored" else ""), n)
          for r, n in summary.skipped.items()),
        ("removed: exact duplicate", summary.exact_duplicates),
        ("removed: near duplicate", summary.near_duplicates),
        ("removed: decontaminated", summary.decontaminated),
        *((f"redacted: {p}", n) for p, n in summary.redactions.items()),
        ("time", f"{summary.seconds:.1f} s"),
    ]  # fmt: skip
    for label, value in rows:
        table.add_row(label, str(value))
    return table


def print_summary(summary: CorpusSummary, console: Console | None = None) -> None:
    from rich.console import Console

    (console or Console(stderr=True)).print(summary_table(summary))


def cli_register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "corpus",
        help="collect source files into a deduplicated, redacted training corpus",
        description="Collect source files from directories, git repositories or git URLs into "
        "OUTPUT/train.jsonl and OUTPUT/validation.jsonl: skip binaries, vendored, generated and "
        "minified code, remove exact and near duplicates, redact emails, IP addresses, keys and "
        "passwords, and drop files that overlap an evaluation set. NAME=PATH names a source.",
    )
    add = p.add_argument
    # fmt: off
    add("sources", nargs="+", metavar="SOURCE",
        help="directory, git repository or git URL; NAME=PATH sets the repo name")
    add("-o", "--output", required=True, type=Path, metavar="DIR", help="output directory")
    add("--max-file-bytes", type=int, default=1_000_000, help="skip larger files (default: 1000000)")
    add("--language", action="append", default=[],
        help="keep only this language (repeatable or comma-separated; default: all)")
    add("--exclude", action="append", default=[], metavar="GLOB",
        help="gitignore-style pattern, relative to each source, to leave out (repeatable)")
    add("--near-dup-threshold", type=float, default=0.85,
        help="MinHash Jaccard similarity above which files are near duplicates (default: 0.85)")
    add("--decontaminate", action="append", default=[], metavar="PATH",
        help="evaluation file or directory whose code must stay out of the corpus (repeatable)")
    add("--val-fraction", type=float, default=0.05,
        help="share of files that go to validation.jsonl (default: 0.05)")
    add("--no-redact", action="store_true", help="keep emails, IP addresses, keys and passwords")
    add("--no-progress", action="store_true", help="no progress bar")
    # fmt: on
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    languages = {x.strip() for item in args.language for x in item.split(",") if x.strip()}
    config = CorpusConfig(
        sources=list(args.sources), output=args.output, max_file_bytes=args.max_file_bytes,
        languages=frozenset(languages) if languages else None, exclude=tuple(args.exclude),
        near_dup_threshold=args.near_dup_threshold, decontaminate=tuple(args.decontaminate),
        val_fraction=args.val_fraction, redact=not args.no_redact,
    )  # fmt: skip
    summary = build_corpus(config, progress=not args.no_progress)
    if args.no_progress:
        print_summary(summary)
    return 0
