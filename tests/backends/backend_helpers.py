"""Helpers for the backend tests that need to know how the bundled model behaves."""

from __future__ import annotations

import re
from typing import Any

from starcoder_ls.types import CancelToken, FimInput, Prompt

# Prompts after which a model trained on repository-format data tends to open with a special
# token (a FIM sentinel or a file separator); which one does depends on the trained weights.
SPECIAL_OPENERS = (
    "<file_sep>a.py\nx = 1\n",
    "<file_sep>a.py\n<file_sep>b.py\n<file_sep>c.py\n<file_sep>d.py\n<file_sep>e.py\n",
    "<file_sep>" * 40,
    "<repo_name>lib<file_sep>a.py\n",
)


def special_opening(backend: Any, params: Any) -> tuple[str, str]:
    """(prompt, special token) where the backend's greedy output starts with that token, with
    no stops at all so special tokens are spelled out in the text."""
    seen = []
    for text in SPECIAL_OPENERS:
        free = backend.generate(
            Prompt(text=text, family="starcoder", stop=(), fim=FimInput(prefix=text, suffix="")),
            params,
            CancelToken(),
        )
        if m := re.match(r"<[a-z_|]+>", free.text):
            return text, m.group()
        seen.append(free.text)
    raise AssertionError(f"the model opens none of the prompts with a special token: {seen}")
