"""Plain data passed along the road of one completion request.

editor -> server -> should_complete -> context -> prompt -> cache -> backend -> postprocess.
Only the server layer knows LSP types; everything after it takes and returns these dataclasses,
so each stage is testable on its own and the CLI (`complete`, `prompt`) runs the same code.

Positions here are plain: line numbers are 0-based and columns are offsets in Python ``str``
code points. The server converts LSP positions (utf-16 by default) at its border.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from typing import Protocol


class CompletionMode(str, enum.Enum):
    """How much the model may write at the cursor."""

    NONE = "none"
    SINGLE_LINE = "single_line"
    MULTI_LINE = "multi_line"


@dataclass(frozen=True)
class Segment:
    """One piece of prompt context, as `starcoder-ls prompt --json` reports it.

    ``start_line``/``end_line`` are 1-based and inclusive (what an editor shows); ``path`` is
    relative to the workspace root when the file is inside it.
    """

    kind: str
    """prefix, suffix, import, header, definition, similar, recent, ..."""
    path: str
    start_line: int
    end_line: int
    text: str
    tokens: int = 0
    score: float = 0.0


@dataclass(frozen=True)
class FimInput:
    """What a FIM template renders: the in-file window and the cross-file context."""

    prefix: str
    suffix: str
    path: str | None = None
    """Workspace-relative path of the current file, when known."""
    language: str | None = None
    repo_name: str | None = None
    extra: tuple[Segment, ...] = ()
    """Context from other files, most relevant last (closest to the cursor in the prompt)."""


@dataclass(frozen=True)
class Prompt:
    """The exact text a backend receives, plus what it was built from."""

    text: str
    """Special tokens appear spelled out; backends parse them as special tokens."""
    family: str
    stop: tuple[str, ...]
    """Stop strings of the family (end-of-text, FIM pad, file separator, ...)."""
    fim: FimInput
    """The structured input, for dialects that take prefix and suffix separately (/infill)."""
    segments: tuple[Segment, ...] = ()
    tokens: int = 0
    mode: CompletionMode = CompletionMode.MULTI_LINE
    prefix_end: int = -1
    """Where in ``text`` the code before the cursor ends: the end of the text for left-to-right
    and SPM prompts, before the suffix sentinel for PSM. -1: unknown (no token healing)."""


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    """Extra stop strings (e.g. a newline for single-line completions) besides the family's."""
    seed: int = 0
    """Seeds sampling when temperature > 0, so the same request gives the same text."""
    stop_after_text: bool = False
    """Stop strings count only once the generation has written something other than whitespace:
    on a blank line a model often starts with a line break before the code it means, and a
    single-line request's newline stop would end it there with nothing."""
    stop_below_indent: int = 0
    """Multi-line: end the generation where a later line starts, with code, indented less than
    this many columns (the cursor's block is over; post-processing would cut there anyway).
    Lines that start with a closing bracket do not count. 0: off; -1: the indentation of the
    completion's first line of code (the cursor at column 0 of a blank line). Local backends
    only."""
    min_indent: int = 0
    """llama.cpp server's ``n_indent``: after the first line, a line whose code starts left of
    this column (a blank line too) ends the generation, cut where that code would start. 0: off.
    Local backends only."""
    predict_ms: float = 0.0
    """llama.cpp server's ``t_max_predict_ms``: once this many milliseconds of generation have
    passed, the next line break ends it (kept in the text). 0: no limit. Local backends only."""
    prompt_ms: float = 0.0
    """A limit on evaluating the prompt: past it, evaluation stops between chunks and the answer
    is empty (what was evaluated stays cached for the next request). 0: no limit."""
    token_healing: bool = False
    """Token healing: the prompt ends before the last token(s) of the code before the cursor
    (a newline and the indentation after it, part of a name or an operator: text the tokenizer
    would merge with what comes next), and the first generated tokens are held to text that
    starts with what was taken off; that text is not part of the answer. Needs
    ``Prompt.prefix_end``; backends with a tokenizer (llama.cpp, transformers, the team server)."""


@dataclass
class Generation:
    text: str
    prompt_tokens: int = 0
    """Tokens in the prompt."""
    evaluated_tokens: int = 0
    """Prompt tokens the backend actually had to evaluate (fewer when its KV cache was reused)."""
    completion_tokens: int = 0
    latency_ms: float = 0.0
    finish_reason: str = "stop"
    """stop, length, cancelled."""
    stop_type: str = ""
    """Why it ended, in llama.cpp server's words: ``eos`` (an end token), ``word`` (a stop
    string, in ``stopping_word``), ``limit`` (a token, time or indentation limit), ``none``
    (cancelled); "" when the backend does not say."""
    stopping_word: str = ""
    prompt_ms: float = 0.0
    """Time spent evaluating the prompt (0 when the backend does not say)."""
    predicted_ms: float = 0.0
    """Time spent generating after the prompt (0 when the backend does not say)."""
    truncated: bool = False
    """The prompt did not fit the context and lost tokens from its start."""


class CancelToken:
    """Set when a request is cancelled or superseded; backends poll it between tokens."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True when cancelled meanwhile (used by debounce)."""
        return self._event.wait(timeout)


class UserError(Exception):
    """A failure the user can act on: the message says what went wrong and how to fix it. The
    CLI prints it without a traceback."""


class BackendError(Exception):
    """A backend failed in a way the user can act on (unreachable, bad model file, HTTP error)."""


class SecretFileError(Exception):
    """No prompt is built inside a file that looks like credentials (``completeSecretFiles``)."""


class Tokenizer(Protocol):
    def count(self, text: str) -> int:
        """Number of tokens of ``text`` with special tokens parsed."""
        ...


class Backend(Protocol):
    """One generation engine. Heavy libraries are imported in the constructor, not at import."""

    name: str
    """llamacpp, transformers, openai, tgi, ollama, llamacpp-server, huggingface, test."""
    model_id: str
    """Identifies the weights in cache keys and reports (a path or a model name)."""

    @property
    def context_length(self) -> int:
        """Largest prompt + generation the model accepts, in the units of ``count_tokens``."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with the model's own tokenizer, or an estimate if it has none."""
        ...

    def generate(self, prompt: Prompt, params: GenerationParams, cancel: CancelToken) -> Generation:
        """The raw middle (before post-processing). Returns early with finish_reason
        ``cancelled`` once ``cancel`` is set; raises BackendError on failure."""
        ...

    def close(self) -> None: ...


@dataclass
class Completion:
    """A finished completion at a position, ready for the server to convert."""

    text: str
    """What to insert at the cursor (after post-processing)."""
    line: int
    character: int
    """0-based, code points: where ``text`` is inserted."""
    replace_end_character: int | None = None
    """When set, the completion replaces the current line up to this column (e.g. a closing
    bracket it already contains)."""
    model: str = ""
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    cached: bool = False
    mode: CompletionMode = CompletionMode.MULTI_LINE
    request_id: str = ""
    raw: str = ""
    extra: dict[str, object] = field(default_factory=dict)
