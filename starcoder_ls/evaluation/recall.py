"""``starcoder-ls eval recall``: does cross-file context put the right definitions into the prompt, and
does the model complete better with it? CrossCodeEval's question, asked of the user's own code.

Samples are lines that use a symbol defined in another file of the workspace, one that the
file's own imports lead to (so the answer is knowable from the repository, as in CrossCodeEval):
the line is hidden, the cursor put at its first non-blank character, and prompts are built with
and without cross-file context exactly as the language server builds them.

- **definition recall**: the share of samples whose prompt contains the first line of the
  symbol's definition (its signature line), i.e. the model was shown what it needs;
- with generation (the default; ``--recall-only`` skips it): exact match and edit similarity of
  the generated line against the hidden one, with and without context, on the same samples.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI registers this command without loading the index (numpy, grammars)
    from starcoder_ls.context.index import WorkspaceIndex
    from starcoder_ls.context.symbols import Symbol

_MAX_PER_FILE = 4
_MEMBER_ACCESS = re.compile(r"(?:->|\.)\s*$")
_SKIP_NAMES = frozenset({"self", "cls", "this", "super", "None", "True", "False", "null"})


@dataclass(frozen=True)
class Sample:
    path: str
    line: int
    """0-based line that is hidden."""
    indent: str
    target: str
    """The hidden line without its indentation."""
    symbol: str
    definition_path: str
    signature: str
    """First line of the definition's signature: what the prompt must contain."""


@dataclass
class Result:
    workspace: str
    samples: int
    candidates: int
    recall_with: float = 0.0
    recall_without: float = 0.0
    exact_with: float | None = None
    exact_without: float | None = None
    edit_sim_with: float | None = None
    edit_sim_without: float | None = None
    cross_file_tokens: float = 0.0
    """Mean prompt tokens given to cross-file context."""
    recall_by_kind: dict[str, float] = field(default_factory=dict)
    """Share of samples whose definition came in through each kind of segment."""
    seconds: float = 0.0
    model: str = ""
    details: list[dict[str, Any]] = field(default_factory=list)


def _first_line(signature: str) -> str:
    """The signature's first line, without a macro's line continuation."""
    return signature.strip().split("\n", 1)[0].strip().rstrip("\\").rstrip()


_INCLUDE_KINDS = frozenset({"include", "require", "require_relative"})
"""Imports that make every top-level name of the target visible by its bare name."""

Bindings = dict[str, tuple[str, "Symbol"]]


def _import_bindings(
    index: WorkspaceIndex, path: str, folders: dict[str, list[str]] | None = None
) -> tuple[Bindings, dict[str, Bindings]]:
    """What the file's imports bind, resolved in the workspace, per the language's rules:

    - names bound to a top-level definition of another file: ``from m import f`` (Python, JS),
      ``import a.b.C;`` (Java), ``use a::b::C;`` (Rust), ``use App\\C;`` (PHP); every name of
      an included header (C/C++), a required file (Ruby), the files of a ``using`` namespace
      (C#); and the other files of the same package (Go and Java, no import needed);
    - names bound to a whole module, with its top-level definitions: ``import pkg.m as m``,
      ``from pkg import m`` (Python), a Go package (all of its files).
    """
    entry = index.entry(path)
    names: Bindings = {}
    modules: dict[str, Bindings] = {}
    if entry is None:
        return names, modules
    language = entry.language

    def top(target: str) -> dict[str, Symbol]:
        """Top-level definitions, those inside a namespace (C#, C++) included."""
        other = index.entry(target)
        if other is None:
            return {}
        found: dict[str, Symbol] = {}
        for s in other.outline.top_level():  # a name defined twice (``#ifdef``): the first
            found.setdefault(s.name, s)
        return found

    for ref in entry.outline.imports:
        targets = index.resolve(ref, path, language)
        if not targets:
            continue
        first = targets[0]
        pairs = list(zip(ref.names, ref.bound, strict=False))
        found = [(b, top(first)[n]) for n, b in pairs if n in top(first) and n != "*"]
        for bound, sym in found:
            names[bound] = (first, sym)
        for n, b in pairs:  # passed on by the target (``__init__.py``, a barrel, ``pub use``)
            if n != "*" and n not in top(first):
                origin = index.reexported(first, n, language)
                if origin is not None and origin[0] != first:
                    names[b] = origin
                    found.append((b, origin[1]))
        module = ""
        if not found and not pairs and ref.bound:
            module = ref.bound[-1]
        elif not found and len(pairs) == 1 and pairs[0][0] != "*":  # ``from pkg import module``
            module = pairs[0][1]
        if module:
            spread = targets if language == "go" else targets[:1]  # a Go package: all files
            modules[module] = {
                name: (target, sym)
                for target in reversed(spread)
                for name, sym in top(target).items()
            }
            # ``import a.b.C;`` / ``use a::C;``: the bound name is itself a definition.
            for target in targets:
                if module in top(target):
                    names.setdefault(module, (target, top(target)[module]))
        if ref.kind in _INCLUDE_KINDS or language == "csharp":
            for target in targets:
                for name, sym in top(target).items():
                    names.setdefault(name, (target, sym))
    from starcoder_ls.context.crossfile import SAME_PACKAGE

    if language in SAME_PACKAGE:
        folders = folders if folders is not None else _folders(index)
        for other in folders.get(_folder(path), ()):
            if other == path:
                continue
            sibling = index.entry(other)
            if sibling is None or sibling.language != language:
                continue
            for name, sym in top(other).items():
                names.setdefault(name, (other, sym))
    return names, modules


def _folder(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _folders(index: WorkspaceIndex) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in index.paths():
        out.setdefault(_folder(path), []).append(path)
    return out


def _is_name(node: Any) -> bool:
    """A leaf that names something: ``identifier`` and its kinds (``type_identifier``, ...),
    PHP's ``name``, and the command a shell line runs."""
    kind = node.type
    if kind == "word":
        return node.parent is not None and node.parent.type == "command_name"
    return "identifier" in kind or kind == "name"


def _reexport(node: Any) -> bool:
    """``export { A, B } from "./x"``: an import passed on, not a use."""
    return node.type == "export_statement" and node.child_by_field_name("source") is not None


def _usages(text: str, language: str, path: str) -> list[tuple[int, int, str]]:
    """(row, column, name) of every identifier in code (not in strings or comments) outside
    import statements, from a tree-sitter parse."""
    from starcoder_ls.languages.registry import language_for, parser_for

    info = language_for(language, path)
    parser = parser_for(info)
    if info is None or parser is None:
        return []
    tree = parser.parse(text.encode("utf-8", "surrogatepass"))
    out: list[tuple[int, int, str]] = []
    skip_types = info.import_types | {"string", "comment", "string_content", "line_comment"}
    cursor = tree.walk()
    while True:
        node = cursor.node
        descend = node is not None and node.type not in skip_types and not _reexport(node)
        if node is not None and descend and node.child_count == 0 and _is_name(node):
            row, col = node.start_point
            out.append((row, col, (node.text or b"").decode("utf-8", "replace")))
        if descend and cursor.goto_first_child():
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                return out


def sample_positions(index: WorkspaceIndex, n: int, seed: int = 0) -> tuple[list[Sample], int]:
    """Up to ``n`` samples (at most a few per file) and the number of candidate lines."""
    candidates: list[Sample] = []
    folders = _folders(index)
    for entry in index.iter_entries():
        names, modules = _import_bindings(index, entry.path, folders)
        if not names and not modules:
            continue
        lines = index.read_lines(entry.path)
        if not lines:
            continue
        defined_here = {s.name for s in entry.outline.symbols}
        headers = {s.line for s in entry.outline.symbols}
        per_line: dict[int, Sample] = {}
        for row, col, name in _usages("".join(lines), entry.language, entry.path):
            if row in per_line or row in headers or row >= len(lines) or name in _SKIP_NAMES:
                continue
            raw = lines[row]
            owner = re.search(r"(\w+)\s*\.\s*$", raw[:col])
            found: tuple[str, Symbol] | None = None
            if owner is not None and owner.group(1) in modules:
                found = modules[owner.group(1)].get(name)
            elif (
                owner is None
                and name in names
                and name not in defined_here
                and not _MEMBER_ACCESS.search(raw[:col])
            ):
                found = names[name]  # (``env->RemoveFile``, ``f().x`` name a member, not it)
            if found is None or not found[0]:
                continue
            stripped = raw.strip()
            if len(stripped) < 6:
                continue
            target, sym = found
            indent = raw[: len(raw) - len(raw.lstrip())]
            per_line[row] = Sample(
                entry.path, row, indent, stripped, name, target, _first_line(sym.signature)
            )
        per_file = list(per_line.values())
        rng = random.Random(f"{seed}:{entry.path}")
        rng.shuffle(per_file)
        candidates.extend(per_file[:_MAX_PER_FILE])
    total = len(candidates)
    random.Random(seed).shuffle(candidates)
    return sorted(candidates[:n], key=lambda s: (s.path, s.line)), total


def _hidden_text(lines: list[str], sample: Sample) -> str:
    hidden = list(lines)
    hidden[sample.line] = sample.indent + "\n"
    return "".join(hidden)


def run(
    root: Path,
    *,
    settings: Any,
    samples: int = 100,
    seed: int = 0,
    generate: bool = True,
    progress: bool = False,
    index: WorkspaceIndex | None = None,
) -> Result:
    from starcoder_ls.context.crossfile import CrossFileContext
    from starcoder_ls.context.workspaces import build_for_cli
    from starcoder_ls.documents import Snapshot
    from starcoder_ls.engine import CompletionEngine
    from starcoder_ls.evaluation.heldout import edit_similarity

    t0 = time.perf_counter()
    if index is None:
        index = build_for_cli(root, settings.workspace, progress=progress)
    chosen, total = sample_positions(index, samples, seed)
    result = Result(str(root), len(chosen), total)
    if not chosen:
        result.seconds = time.perf_counter() - t0
        return result
    engine = CompletionEngine(settings)
    result.model = engine.backend().model_id
    context = CrossFileContext(lambda uri: index)
    hits = {"with": 0, "without": 0}
    exact = {"with": 0, "without": 0}
    sims = {"with": 0.0, "without": 0.0}
    kinds: dict[str, int] = {}
    xf_tokens = 0
    for sample in chosen:
        lines = index.read_lines(sample.path) or []
        original = "".join(lines)
        text = _hidden_text(lines, sample)
        index.update(sample.path, text)  # the index must not know the hidden line either
        snap = Snapshot.from_text(text, uri=(index.root / sample.path).as_uri(), path=sample.path)
        col = len(sample.indent)
        detail: dict[str, Any] = asdict(sample)
        for arm in ("with", "without"):
            engine.crossfile = context if arm == "with" else None
            built = engine.build_prompt(snap, sample.line, col, root=index.root)
            found = sample.signature in built.prompt.text
            hits[arm] += found
            detail[f"recall_{arm}"] = found
            if arm == "with":
                xf = [
                    s for s in built.prompt.segments if s.kind not in ("prefix", "suffix", "header")
                ]
                xf_tokens += sum(s.tokens for s in xf)
                for kind in {s.kind for s in xf if sample.signature in s.text}:
                    kinds[kind] = kinds.get(kind, 0) + 1
            if generate:
                done = engine.complete(snap, sample.line, col, root=index.root, invoked=True)
                line = (done.text if done else "").split("\n", 1)[0].strip()
                exact[arm] += line == sample.target
                sims[arm] += edit_similarity(line, sample.target)
                detail[f"completion_{arm}"] = line
        index.update(sample.path, original)
        result.details.append(detail)
    engine.close()
    n = len(chosen)
    result.recall_with = hits["with"] / n
    result.recall_without = hits["without"] / n
    result.recall_by_kind = {k: v / n for k, v in sorted(kinds.items())}
    result.cross_file_tokens = xf_tokens / n
    if generate:
        result.exact_with, result.exact_without = exact["with"] / n, exact["without"] / n
        result.edit_sim_with, result.edit_sim_without = sims["with"] / n, sims["without"] / n
    result.seconds = time.perf_counter() - t0
    return result


def format_result(result: Result) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    rows = [
        f"workspace        {result.workspace}",
        f"model            {result.model}",
        f"samples          {result.samples} (of {result.candidates} candidate lines)",
        f"definition recall  with context {pct(result.recall_with)}   without "
        f"{pct(result.recall_without)}",
    ]
    if result.recall_by_kind:
        rows.append(
            "  found through  "
            + ", ".join(f"{k} {pct(v)}" for k, v in result.recall_by_kind.items())
        )
    if result.exact_with is not None:
        rows.append(
            f"exact match      with context {pct(result.exact_with)}   without "
            f"{pct(result.exact_without)}"
        )
        rows.append(
            f"edit similarity  with context {result.edit_sim_with:.3f}   without "
            f"{result.edit_sim_without:.3f}"
        )
    rows.append(f"cross-file tokens per prompt  {result.cross_file_tokens:.0f}")
    rows.append(f"time             {result.seconds:.1f} s")
    return "\n".join(rows)


def cli_register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from starcoder_ls.complete import add_settings_flags

    p = subparsers.add_parser(
        "recall",
        help="does cross-file context put the definitions a line uses in the prompt",
        description="Hide lines that use a symbol defined in another file of the workspace and "
        "compare prompts (and, unless --recall-only, completions) with and without cross-file "
        "context: definition recall, exact match and edit similarity.",
    )
    p.add_argument("--workspace", type=Path, required=True, help="the workspace folder")
    p.add_argument("--samples", type=int, default=100, help="lines to hide (default: 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recall-only", action="store_true", help="build prompts, do not generate")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument("--details", action="store_true", help="with --json: every sample")
    add_settings_flags(p)
    p.set_defaults(func=_cli_eval)


def _cli_eval(args: argparse.Namespace) -> int:
    from starcoder_ls.complete import settings_from_args
    from starcoder_ls.types import BackendError, UserError

    if not args.workspace.is_dir():
        raise UserError(f"--workspace {args.workspace} is not a directory")
    if args.samples < 1:
        raise UserError("--samples must be at least 1")
    settings = settings_from_args(args)
    try:
        result = run(
            args.workspace.resolve(),
            settings=settings,
            samples=args.samples,
            seed=args.seed,
            generate=not args.recall_only,
            progress=sys.stderr.isatty(),
        )
    except BackendError as exc:
        raise UserError(str(exc)) from None
    if not args.json or not args.details:
        result.details = []
    if args.json:
        print(json.dumps(asdict(result), indent=1))
    else:
        print(format_result(result))
        if result.samples == 0:
            print(
                "no samples: no line uses a definition that the file imports from another "
                "file of this workspace",
                file=sys.stderr,
            )
    return 0
