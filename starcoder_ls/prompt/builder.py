"""Prompt assembly within a token budget.

The in-file window (prefix and suffix) arrives already cut to its share of the budget; what is
left to decide here is how much cross-file context fits. Context blocks are dropped
lowest-score-first until the rendered prompt fits, because a prompt over the model's context is
either rejected or silently truncated at its start by the backend, and the start is where the
repository header and the most distant context live.

Each block is counted once (blocks are independent pieces of the prompt, see
``templates.extra_block``), the full prompt once, and only when it is over budget the trimmed
prompt once more: dropping a block takes its count off the total without re-rendering. Only
when the tokenizer merged across a block boundary does that arithmetic miss, and then more
blocks are dropped with exact counts. A prompt build stays within a few tokenizer passes over
the prompt, which matters on every keystroke.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from functools import lru_cache

from starcoder_ls.prompt import templates
from starcoder_ls.types import CompletionMode, FimInput, Prompt, Segment

CHARS_PER_TOKEN = 3.5
"""Bytes of UTF-8 per token assumed by :func:`estimate_tokens`. Byte-level BPE code tokenizers
average about 3.5-4 characters per token on source code; the low end is used so the estimate
errs towards more tokens (a prompt that fits by the estimate rarely overflows for real)."""


@lru_cache(maxsize=1)
def _special_pattern() -> re.Pattern[str]:
    spellings = {s for t in templates.FAMILIES.values() for s in t.special_tokens}
    return re.compile("|".join(re.escape(s) for s in sorted(spellings, key=len, reverse=True)))


def estimate_tokens(text: str) -> int:
    """A cheap token count for backends that expose no tokenizer (some remote servers).

    Each special-token spelling of a known family counts as one token (backends parse them);
    the rest counts as ``ceil(utf8_bytes / 3.5)``. Counting bytes rather than characters keeps
    the estimate sane for CJK text and emoji, which byte-level BPE splits into several tokens.
    """
    if not text:
        return 0
    specials = 0
    rest = text
    if "<" in text:
        rest, specials = _special_pattern().subn("", text)
    return specials + math.ceil(len(rest.encode("utf-8", errors="replace")) / CHARS_PER_TOKEN)


def build_prompt(
    fim: FimInput,
    family: str,
    *,
    count_tokens: Callable[[str], int],
    budget_tokens: int,
    mode: CompletionMode,
    segments: Sequence[Segment] = (),
    fim_mode: str = templates.PSM,
) -> Prompt:
    """Render ``fim`` for ``family``, keeping the cross-file segments that fit ``budget_tokens``.

    ``count_tokens`` must count special tokens as one token (as backends parse them). ``segments``
    are the in-file parts (prefix, suffix, headers) reported with the prompt; they are given
    their token counts when they have none. The in-file window is never cut here, so a prompt
    whose window alone exceeds the budget comes back over budget with all extras dropped (its
    ``tokens`` says so). Raises ValueError for an unknown family or an unsupported ``fim_mode``.
    """
    template = templates.get_template(family)
    templates.check_mode(template, fim_mode)

    candidates: list[tuple[Segment, str]] = []
    for seg in fim.extra:
        block = templates.extra_block(template, seg, fim)
        if block:
            candidates.append((seg, block))
    costs = [count_tokens(block) for _, block in candidates]
    kept = list(range(len(candidates)))
    # Lowest score goes first; among equal scores the earliest one, since extras come ordered
    # from least to most relevant.
    drop_order = sorted(kept, key=lambda i: (candidates[i][0].score, i))

    def text_for(indices: list[int]) -> str:
        outer, inner = templates.head(template, fim, [candidates[i][1] for i in indices])
        return templates.assemble(template, outer, inner, fim, fim_mode)

    text = text_for(kept)
    total = count_tokens(text)
    if total > budget_tokens and kept:
        estimated = total
        for i in drop_order:
            if estimated <= budget_tokens:
                break
            kept.remove(i)
            estimated -= costs[i]
        text = text_for(kept)
        total = count_tokens(text)
        # Only when the tokenizer merged across a block boundary is the estimate off.
        for i in drop_order:
            if total <= budget_tokens or not kept:
                break
            if i in kept:
                kept.remove(i)
                text = text_for(kept)
                total = count_tokens(text)

    kept_extras = tuple(dataclasses.replace(candidates[i][0], tokens=costs[i]) for i in kept)
    in_file = tuple(
        seg
        if seg.tokens or not seg.text
        else dataclasses.replace(seg, tokens=count_tokens(seg.text))
        for seg in segments
    )
    return Prompt(
        text=text,
        family=family,
        stop=template.stop,
        fim=dataclasses.replace(fim, extra=kept_extras),
        segments=kept_extras + in_file,
        tokens=total,
        mode=mode,
        prefix_end=templates.prefix_end(template, text, fim, fim_mode),
    )
