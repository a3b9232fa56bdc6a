"""``starcoder-ls complete FILE:LINE:COL``: one completion from the command line.

This is the command-line face of completion: it reads the file as on disk, builds a
fill-in-the-middle prompt around the position and asks the model for the middle. With no
``--model`` it uses the bundled offline model through llama.cpp.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from starcoder_ls.recipe.errors import RecipeError

_POSITION = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+)$")


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
        raise RecipeError(f"expected FILE:LINE:COL (1-based), got {spec!r}")
    line, col = int(m["line"]), int(m["col"])
    if line < 1 or col < 1:
        raise RecipeError(f"line and column are 1-based, got {line}:{col}")
    return Position(Path(m["file"]), line, col)


def split_at(text: str, pos: Position) -> tuple[str, str]:
    """Prefix and suffix of ``text`` around a 1-based position (the column is clamped to the line)."""
    lines = text.split("\n")
    if pos.line > len(lines):
        raise RecipeError(f"{pos.file} has {len(lines)} lines; line {pos.line} is out of range")
    offset = sum(len(line) + 1 for line in lines[: pos.line - 1])
    offset += min(pos.col - 1, len(lines[pos.line - 1]))
    return text[:offset], text[offset:]


def read_source(path: Path) -> str:
    if not path.is_file():
        raise RecipeError(f"no such file: {path}")
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        raise RecipeError(f"{path} looks binary; completion needs a text file")
    return data.decode("utf-8", errors="replace").replace("\r\n", "\n")


def complete(
    pos: Position, *, model: Path | None = None, max_tokens: int = 64, workspace: Path | None = None
) -> dict[str, object]:
    from starcoder_ls.models import BUNDLED_GGUF
    from starcoder_ls.recipe.evaluate import GGUFModel, infill_ids, stop_ids
    from starcoder_ls.recipe.tokens import FILE_SEP

    text = read_source(pos.file)
    prefix, suffix = split_at(text, pos)
    model_path = model or BUNDLED_GGUF
    llm = GGUFModel(model_path)
    ids = infill_ids(llm, prefix, suffix, max_tokens)
    root = workspace or pos.file.resolve().parent
    try:
        rel = pos.file.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = pos.file.name
    sep = llm.special_id(FILE_SEP)
    if sep is not None:
        header = [sep, *llm.tokenize(rel + "\n")]
        if len(header) + len(ids) + max_tokens <= llm.n_ctx:
            ids = header + ids
    t0 = time.perf_counter()
    out = llm.greedy(ids, max_tokens, stop_ids(llm))
    latency_ms = (time.perf_counter() - t0) * 1000
    completion = llm.detokenize(out)
    return {
        "completion": completion,
        "model": str(model_path),
        "latency_ms": round(latency_ms, 1),
        "prompt_tokens": len(ids),
        "completion_tokens": len(out),
        "cached": False,
    }


def cli_register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "complete",
        help="print a completion at FILE:LINE:COL",
        description="Complete the code at a position of a file (1-based LINE and COL, as "
        "compilers print them), using the bundled offline model unless --model is given.",
    )
    p.add_argument("position", metavar="FILE:LINE:COL")
    p.add_argument("--model", type=Path, help="a GGUF file (default: the bundled model)")
    p.add_argument(
        "--workspace", type=Path, help="workspace root (for the file's path in the prompt)"
    )
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=_cli_run)


def _cli_run(args: argparse.Namespace) -> int:
    result = complete(
        parse_position(args.position),
        model=args.model,
        max_tokens=args.max_tokens,
        workspace=args.workspace,
    )
    if args.json:
        print(json.dumps(result))
    else:
        sys.stdout.write(str(result["completion"]) + "\n")
    return 0
