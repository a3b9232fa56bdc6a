"""``starcoder-ls complete`` and ``starcoder-ls prompt``: the completion pipeline from a shell.

Both read the file as on disk and run the same engine the language server runs (tree-sitter
context, the model's FIM template, post-processing), so what they print is what an editor would
get at that position. With no ``--model`` they use the default offline model through llama.cpp,
in its worker process.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from starcoder_ls.types import UserError

_POSITION = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+)$")
# Settings a command line may set, as (flag, settings key, type).
_FLAGS: tuple[tuple[str, str, type], ...] = (
    ("--backend", "backend", str),
    ("--model", "model", str),
    ("--family", "family", str),
    ("--url", "url", str),
    ("--api-key-env", "apiKeyEnv", str),
    ("--max-tokens", "maxTokens", int),
    ("--temperature", "temperature", float),
    ("--context-tokens", "contextTokens", int),
    ("--timeout-ms", "timeoutMs", int),
    ("--cross-file-tokens", "crossFileTokens", int),
    ("--device", "device", str),
    ("--dtype", "dtype", str),
    ("--kernels", "kernels", str),
    ("--quantize", "quantize", str),
)


@dataclass(frozen=True)
class Position:
    file: Path
    line: int
    """1-based line, like compilers print."""
    col: int
    """1-based column in characters (code points)."""


def parse_position(spec: str) -> Position:
    m = _POSITION.match(spec)
    if not m:
        raise UserError(f"expected FILE:LINE:COL (1-based), got {spec!r}")
    line, col = int(m["line"]), int(m["col"])
    if line < 1 or col < 1:
        raise UserError(f"line and column are 1-based, got {line}:{col}")
    return Position(Path(m["file"]), line, col)


def split_at(text: str, pos: Position) -> tuple[str, str]:
    """Prefix and suffix of ``text`` around a 1-based position (the column is clamped to the line)."""
    line, col = zero_based(text, pos)
    lines = text.split("\n")
    offset = sum(len(x) + 1 for x in lines[:line]) + col
    return text[:offset], text[offset:]


def zero_based(text: str, pos: Position) -> tuple[int, int]:
    lines = text.split("\n")
    if pos.line > len(lines):
        raise UserError(f"{pos.file} has {len(lines)} lines; line {pos.line} is out of range")
    return pos.line - 1, min(pos.col - 1, len(lines[pos.line - 1].rstrip("\r")))


def read_source(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        raise UserError(f"{path} looks binary; completion needs a text file")
    return data.decode("utf-8", errors="replace")


def add_settings_flags(p: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """A flag per setting a command line may set, except the settings keys in ``skip``."""
    for flag, key, kind in _FLAGS:
        if key in skip:
            continue
        p.add_argument(flag, type=kind, dest=f"setting_{key}", metavar=key.upper(), default=None)


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> Any:
    """Settings from the flags ``add_settings_flags`` added; ``overrides`` (settings keys) win."""
    from starcoder_ls.settings import parse_settings

    raw = {
        key: getattr(args, f"setting_{key}")
        for _, key, _ in _FLAGS
        if getattr(args, f"setting_{key}", None) is not None
    }
    raw.update(overrides)
    settings, errors = parse_settings(raw)
    if errors:
        raise UserError("; ".join(errors))
    return settings


def _engine_for(args: argparse.Namespace) -> Any:
    from starcoder_ls.engine import CompletionEngine
    from starcoder_ls.types import BackendError

    engine = CompletionEngine(settings_from_args(args))
    try:
        backend = engine.backend()
    except BackendError as exc:
        raise UserError(str(exc)) from None
    if notice := getattr(backend, "notice", ""):
        print(f"starcoder-ls: warning: {notice}", file=sys.stderr)
    if args.workspace is not None:
        attach_workspace(engine, args.workspace, progress=sys.stderr.isatty())
    return engine


def attach_workspace(engine: Any, root: Path, *, progress: bool = False) -> Any:
    """Index ``root`` and give the engine cross-file context from it; returns the index."""
    from starcoder_ls.context.crossfile import CrossFileContext
    from starcoder_ls.context.workspaces import build_for_cli

    if not root.is_dir():
        raise UserError(f"--workspace {root} is not a directory")
    if not engine.settings.cross_file or not engine.settings.workspace.index:
        return None
    index = build_for_cli(root, engine.settings.workspace, progress=progress)

    def index_for(uri: str) -> Any:
        from starcoder_ls.context.workspaces import uri_to_path

        path = uri_to_path(uri)
        return index if path is not None and index.relative(path) else None

    engine.crossfile = CrossFileContext(index_for)
    return index


def _snapshot(pos: Position, text: str) -> Any:
    from starcoder_ls.documents import Snapshot

    path = pos.file.resolve()
    return Snapshot.from_text(text, uri=path.as_uri(), path=str(path))


def complete(pos: Position, args: argparse.Namespace) -> dict[str, Any]:
    from starcoder_ls.types import BackendError, SecretFileError

    text = read_source(pos.file)
    line, col = zero_based(text, pos)
    engine = _engine_for(args)
    root = args.workspace or pos.file.resolve().parent
    t0 = time.perf_counter()
    try:
        snap = _snapshot(pos, text)  # parsed once for both
        # The exact prompt report (mode, family, exact token count), then the completion.
        built = engine.build_prompt(snap, line, col, root=root)
        result = engine.complete(snap, line, col, root=root, invoked=True)
        if notice := getattr(engine.backend(), "notice", ""):  # what the answer showed
            print(f"starcoder-ls: warning: {notice}", file=sys.stderr)
    except (BackendError, SecretFileError) as exc:
        raise UserError(str(exc)) from None
    finally:
        engine.close()
    return {
        "completion": result.text if result else "",
        "model": result.model if result else engine.settings.model or "default",
        "latency_ms": round((time.perf_counter() - t0) * 1000, 1),
        "prompt_tokens": built.prompt.tokens,
        "cached": bool(result and result.cached),
        "mode": built.mode.value,
        "family": built.prompt.family,
        "raw": result.raw if result else "",
    }


def prompt(pos: Position, args: argparse.Namespace) -> dict[str, Any]:
    from starcoder_ls.types import BackendError, SecretFileError

    text = read_source(pos.file)
    line, col = zero_based(text, pos)
    engine = _engine_for(args)
    root = args.workspace or pos.file.resolve().parent
    try:
        built = engine.build_prompt(_snapshot(pos, text), line, col, root=root)
    except (BackendError, SecretFileError) as exc:
        raise UserError(str(exc)) from None
    finally:
        engine.close()
    segments = []
    for seg in built.prompt.segments:
        d = asdict(seg)
        d.pop("text", None)
        segments.append(d)
    return {
        "prompt": built.prompt.text,
        "family": built.prompt.family,
        "mode": built.mode.value,
        "tokens": built.prompt.tokens,
        "stop": list(built.prompt.stop),
        "segments": segments,
    }


def cli_register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "complete",
        help="print a completion at FILE:LINE:COL",
        description="Complete the code at a position of a file (1-based LINE and COL, as "
        "compilers print them) with the same pipeline the language server runs. Uses the "
        "default offline model unless --model/--backend say otherwise.",
    )
    p.add_argument("position", metavar="FILE:LINE:COL")
    p.add_argument(
        "--workspace",
        type=Path,
        help="workspace root: index it and add context from its other files (default: no "
        "cross-file context; paths relative to the file's folder)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON object")
    add_settings_flags(p)
    p.set_defaults(func=_cli_complete)

    q = subparsers.add_parser(
        "prompt",
        help="print the exact prompt for FILE:LINE:COL",
        description="Print the exact prompt string the backend would receive at a position, "
        "and the context segments it was built from.",
    )
    q.add_argument("position", metavar="FILE:LINE:COL")
    q.add_argument(
        "--workspace",
        type=Path,
        help="workspace root: index it and add context from its other files (default: no "
        "cross-file context; paths relative to the file's folder)",
    )
    q.add_argument("--json", action="store_true", help="print a JSON object")
    add_settings_flags(q)
    q.set_defaults(func=_cli_prompt)


def _cli_complete(args: argparse.Namespace) -> int:
    result = complete(parse_position(args.position), args)
    if args.json:
        print(json.dumps(result))
    else:
        sys.stdout.write(str(result["completion"]) + "\n")
    return 0


def _cli_prompt(args: argparse.Namespace) -> int:
    result = prompt(parse_position(args.position), args)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        sys.stdout.write(result["prompt"] + "\n")
    return 0
