"""``starcoder-ls eval lines --workspace DIR``: which model and settings complete *your* code.

Held-out lines are drawn from the workspace's own files (those the index takes: ignored,
vendored, secret and oversized files are left out): a line is hidden, the cursor put at its
first non-blank character (where an editor's auto-indent leaves it), and the engine completes
one line there, once with cross-file context from the rest of the workspace and once without.
The index is shown the file with the hole while the engine runs, so no context carries the
hidden line. Lines without a letter or digit (a lone ``}``) are not drawn: they are easy to
guess and say little about a model.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from starcoder_ls.evaluation.core import Case

if TYPE_CHECKING:
    from starcoder_ls.context.index import WorkspaceIndex

MAX_PER_FILE = 4
"""At most this many lines from one file, so one big file does not decide the score."""
_WORDY = re.compile(r"\w")


def sample_cases(index: WorkspaceIndex, n: int, *, seed: int = 0) -> tuple[list[Case], int]:
    """Up to ``n`` held-out lines and the number of files they could come from."""
    drawn: list[Case] = []
    files = 0
    for entry in sorted(index.iter_entries(), key=lambda e: e.path):
        lines = index.read_lines(entry.path)
        if not lines:
            continue
        candidates = [i for i, line in enumerate(lines) if _WORDY.search(line)]
        if not candidates:
            continue
        files += 1
        rng = random.Random(f"{seed}:{entry.path}")
        for i in sorted(rng.sample(candidates, min(MAX_PER_FILE, len(candidates)))):
            drawn.append(_case(entry.path, lines, i))
    random.Random(seed).shuffle(drawn)
    return sorted(drawn[:n], key=lambda c: (c.path, c.prefix.count("\n"))), files


def _case(path: str, lines: Sequence[str], i: int) -> Case:
    raw = lines[i]
    body = raw.rstrip("\r\n")
    ending = raw[len(body) :]
    code = body.lstrip(" \t")
    indent = body[: len(body) - len(code)]
    previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
    return Case(
        id=f"{path}:{i + 1}",
        path=path,
        prefix="".join(lines[:i]) + indent,
        suffix=ending + "".join(lines[i + 1 :]),
        target=code.rstrip(),
        single_line=True,
        previous=previous,
    )
