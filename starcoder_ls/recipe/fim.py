"""Fill-in-the-middle transforms, as bigcode's Megatron-LM applies them to StarCoder's data.

A document is cut at two character positions drawn uniformly (so the middle can be empty, a
fragment of a word, or many lines), and rearranged with sentinel tokens:

* PSM: ``<fim_prefix>pre<fim_suffix>suf<fim_middle>mid``
* SPM (bigcode's variant, used with ``spm_rate``): ``<fim_prefix><fim_suffix>suf<fim_middle>pre mid``

Each piece is tokenized on its own and the sentinel ids are placed between them, exactly as
Megatron does, so no token ever spans a sentinel. Repository-level samples put several files of
one repository before the target file, StarCoder2-style (``<repo_name>`` and ``<file_sep>``),
so the model learns to use cross-file context that the server later retrieves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from starcoder_ls.prompt.tokens import (
    ENDOFTEXT,
    FILE_SEP,
    FIM_MIDDLE,
    FIM_PREFIX,
    FIM_SUFFIX,
    REPO_NAME,
)


class Encoder(Protocol):
    def encode(self, text: str) -> list[int]: ...

    def token_id(self, token: str) -> int: ...


@dataclass(frozen=True)
class FimConfig:
    """Rates of the FIM transform.

    ``fim_rate`` and ``spm_rate`` are bigcode's (0.5 and 0.5 for StarCoder). Two optional
    shares of the FIM samples change where the cuts fall, because editors mostly ask for the rest
    of a line or a short block and a small model learns that case much faster from such samples:

    * ``span_rate``: an editor-style middle: from a random position (or the start of its line)
      to the end of that line, plus up to two more lines;
    * ``line_rate``: bigcode's two cuts, moved to line starts, so the middle is whole lines.

    Both 0 (the default) gives bigcode's transform unchanged.
    """

    fim_rate: float = 0.5
    spm_rate: float = 0.5
    line_rate: float = 0.0
    span_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("fim_rate", "spm_rate", "line_rate", "span_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if self.line_rate + self.span_rate > 1.0:
            raise ValueError("line_rate + span_rate must not exceed 1")


@dataclass(frozen=True)
class FimSplit:
    prefix: str
    middle: str
    suffix: str
    spm: bool


def _line_start_at_or_before(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1 if pos > 0 else 0


def _line_end_after(text: str, pos: int) -> int:
    """Index just past the newline that ends the line holding ``pos`` (or the text's end)."""
    nl = text.find("\n", pos)
    return len(text) if nl < 0 else nl + 1


def _editor_span(text: str, pos: int, rng: np.random.Generator) -> tuple[int, int]:
    lo = _line_start_at_or_before(text, pos) if rng.random() < 0.5 else pos
    hi = pos
    for _ in range(1 + int(rng.integers(0, 3))):
        hi = _line_end_after(text, hi)
    return lo, hi


def split_document(text: str, rng: np.random.Generator, config: FimConfig) -> FimSplit | None:
    """Draw a FIM split of ``text``, or ``None`` when this document stays left-to-right."""
    if rng.random() >= config.fim_rate:
        return None
    lo, hi = sorted(int(b) for b in rng.integers(0, len(text) + 1, size=2))
    mode = rng.random()
    if mode < config.span_rate:
        lo, hi = _editor_span(text, hi, rng)
    elif mode < config.span_rate + config.line_rate:
        lo = _line_start_at_or_before(text, lo)
        hi = _line_end_after(text, hi)
    spm = bool(rng.random() < config.spm_rate)
    return FimSplit(text[:lo], text[lo:hi], text[hi:], spm)


def fim_pieces(split: FimSplit) -> list[tuple[str, bool]]:
    """The sample as (text, is_special) pieces in model order."""
    if split.spm:
        return [
            (FIM_PREFIX, True),
            (FIM_SUFFIX, True),
            (split.suffix, False),
            (FIM_MIDDLE, True),
            (split.prefix, False),
            (split.middle, False),
        ]
    return [
        (FIM_PREFIX, True),
        (split.prefix, False),
        (FIM_SUFFIX, True),
        (split.suffix, False),
        (FIM_MIDDLE, True),
        (split.middle, False),
    ]


def render(pieces: Sequence[tuple[str, bool]]) -> str:
    return "".join(text for text, _ in pieces)


def encode_pieces(pieces: Sequence[tuple[str, bool]], tok: Encoder) -> list[int]:
    ids: list[int] = []
    for text, special in pieces:
        if special:
            ids.append(tok.token_id(text))
        elif text:
            ids.extend(tok.encode(text))
    return ids


def document_pieces(
    text: str,
    rng: np.random.Generator,
    config: FimConfig,
    *,
    header: str | None = None,
) -> list[tuple[str, bool]]:
    """One file as a training document: optional ``<file_sep>path`` header, FIM or plain, EOT."""
    pieces: list[tuple[str, bool]] = []
    if header is not None:
        pieces += [(FILE_SEP, True), (header + "\n", False)]
    split = split_document(text, rng, config)
    pieces += fim_pieces(split) if split is not None else [(text, False)]
    pieces.append((ENDOFTEXT, True))
    return pieces


def repo_pieces(
    repo: str,
    context: Sequence[tuple[str, str]],
    target_path: str,
    target_text: str,
    rng: np.random.Generator,
    config: FimConfig,
) -> list[tuple[str, bool]]:
    """A repository-level document: ``<repo_name>repo`` then ``<file_sep>path\\ncode`` per
    context file, then the target file (FIM applied inside it), then EOT."""
    pieces: list[tuple[str, bool]] = [(REPO_NAME, True), (repo, False)]
    for path, code in context:
        pieces += [(FILE_SEP, True), (f"{path}\n{code}", False)]
    pieces += [(FILE_SEP, True), (target_path + "\n", False)]
    split = split_document(target_text, rng, config)
    pieces += fim_pieces(split) if split is not None else [(target_text, False)]
    pieces.append((ENDOFTEXT, True))
    return pieces
