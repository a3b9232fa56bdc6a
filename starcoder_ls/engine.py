"""The completion pipeline, free of LSP types: what the server, the CLI and the benchmarks run.

should_complete -> in-file context -> prompt (FIM template, token budget) -> cache ->
backend -> post-processing -> Completion.

The engine owns the backend (created on first use, recreated when settings that affect it
change) and the caches. ``complete`` is synchronous and runs off the event loop; it polls the
request's CancelToken between stages and the backend polls it between tokens.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starcoder_ls.settings import REMOTE_BACKENDS, Settings
from starcoder_ls.types import (
    Backend,
    BackendError,
    CancelToken,
    Completion,
    CompletionMode,
    FimInput,
    Generation,
    GenerationParams,
    Prompt,
    SecretFileError,
    Segment,
)

if TYPE_CHECKING:
    from starcoder_ls.context.crossfile import CrossFileContext
    from starcoder_ls.context.infile import Anchor
    from starcoder_ls.prompt.redact import Redactor

log = logging.getLogger(__name__)

# Settings that require a new backend when they change.
_BACKEND_FIELDS = (
    "backend",
    "model",
    "url",
    "api_key_env",
    "device",
    "dtype",
    "kernels",
    "quantize",
    "n_threads",
    "n_ctx",
    "tls_verify",
    "ca_bundle",
    "timeout_ms",
    "retries",
)
_LAST_PROMPTS = 32
_BEFORE_LINES = 200
_AFTER_LINES = 100
"""Lines around the cursor that cross-file retrieval looks at (identifiers, similar code)."""
# Room left for the template's sentinels and file headers when budgeting the in-file window.
_TEMPLATE_MARGIN = 16
_SLACK = 0.15
"""Share of the in-file budget a new window leaves free, so that it holds for that much typing
before it is cut anew (and the model's KV cache of the prompt is lost)."""
_GROW = 0.5
"""While the user types, a kept window may outgrow the budget by this share of it (never the
model's context): a longer prompt whose start is cached costs next to nothing, a new start
costs all of it again."""
_ANCHORS = 64
"""Documents whose last window and other-file context are remembered."""
_REGION = (8, 24)
"""Lines above and below where the other files' context was chosen within which it is kept
as it is while the user types (beyond, it changes when what the names near the cursor need
does)."""


_WHOLE_TEXTS = 8192
_RECENT_TEXTS = 256
"""Whole texts whose sums ``LineTokenCounter`` remembers (a few requests' worth of pieces)."""


class LineTokenCounter:
    """Token counts summed line by line, each distinct line counted once.

    Consecutive requests see almost the same lines (the user typed one character), so the
    in-file window is budgeted from cached per-line counts instead of re-tokenizing kilobytes
    on every keystroke. A sum of per-line counts is never below the count of the whole text
    in practice (byte-level BPE only merges more across a line break: "\n" + indentation), so
    the window stays within budget. Exact counts come from the backend when it generates, and
    from ``build_prompt(exact=True)`` where a report needs them (``starcoder-ls prompt``).
    """

    def __init__(
        self,
        count: Callable[[str], int],
        count_many: Callable[[list[str]], list[int]] | None = None,
        max_lines: int = 50_000,
    ) -> None:
        self._count = count
        self._count_many = count_many
        """Counts several texts in one call (a worker process: one round trip, not one per
        line)."""
        self._max = max_lines
        self._cache: dict[str, int] = {}
        self._texts: dict[str, int] = {}
        self._whole: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, text: str) -> int:
        known = self._texts.get(text)  # whole pieces recur: retries of the window, headers
        if known is not None:
            return known
        total = self._sum_lines(text)
        with self._lock:
            if len(self._texts) >= _RECENT_TEXTS:
                self._texts.clear()
            self._texts[text] = total
        return total

    def whole(self, text: str) -> int:
        """The exact count of ``text`` in one tokenizer call, remembered: for pieces that recur
        whole between requests (outlines of other files), where one call per line would cost
        more than it saves."""
        known = self._whole.get(text)
        if known is None:
            known = self._count(text)
            with self._lock:
                if len(self._whole) >= _WHOLE_TEXTS:
                    self._whole.clear()
                self._whole[text] = known
        return known

    @property
    def batches(self) -> bool:
        """Whether several texts are counted in one call (a worker process's round trip)."""
        return self._count_many is not None

    def whole_many(self, texts: list[str]) -> None:
        """Count the texts :meth:`whole` has not seen, in one call, and remember them: what a
        caller about to ask for several counts does first, so that a worker process is asked
        once instead of once per text."""
        todo = [t for t in dict.fromkeys(texts) if t and t not in self._whole]
        if not todo:
            return
        counts = self._count_many(todo) if self._count_many is not None else map(self._count, todo)
        with self._lock:
            if len(self._whole) + len(todo) >= _WHOLE_TEXTS:
                self._whole.clear()
            self._whole.update(zip(todo, counts, strict=True))

    def _sum_lines(self, text: str) -> int:
        lines = text.splitlines(keepends=True)
        cache = self._cache
        with self._lock:
            missing = set(lines).difference(cache)
        if self._count_many is not None and missing:  # the tokenizer, unlocked
            todo = list(missing)
            counted = dict(zip(todo, self._count_many(todo), strict=True))
        else:
            counted = {line: self._count(line) for line in missing}
        with self._lock:
            if len(cache) + len(counted) > self._max:
                cache.clear()
            cache.update(counted)
            try:
                return sum(map(cache.__getitem__, lines))
            except KeyError:  # cleared just now: lines counted before are gone
                pass
        return sum(counted[line] if line in counted else self._count(line) for line in lines)


@dataclass
class PromptResult:
    prompt: Prompt
    mode: CompletionMode
    prefix: str
    suffix: str


def relative_path(uri_path: str | None, root: Path | None) -> str | None:
    if not uri_path:
        return None
    path = Path(uri_path)
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except (ValueError, OSError):
            pass
    return path.name


@dataclass
class Usage:
    """Backend work since the server started: requests, prompt tokens, the prompt tokens the
    backend had to evaluate (the rest came from its KV cache), and tokens generated."""

    requests: int = 0
    prompt_tokens: int = 0
    evaluated_tokens: int = 0
    generated_tokens: int = 0
    cancelled: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, gen: Generation) -> None:
        with self._lock:
            self.requests += 1
            self.prompt_tokens += gen.prompt_tokens
            self.evaluated_tokens += gen.evaluated_tokens
            self.generated_tokens += gen.completion_tokens
            self.cancelled += gen.finish_reason == "cancelled"

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {
                "requests": self.requests,
                "prompt_tokens": self.prompt_tokens,
                "evaluated_tokens": self.evaluated_tokens,
                "generated_tokens": self.generated_tokens,
                "cancelled": self.cancelled,
            }


class CompletionEngine:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        backend_factory: Callable[[Settings], Backend] | None = None,
    ) -> None:
        from starcoder_ls.cache import CompletionCache, ForwardCache

        self.settings = settings or Settings()
        self._backend_factory = backend_factory
        self._backend: Backend | None = None
        self._line_counter: LineTokenCounter | None = None
        self._family: tuple[Backend, str] | None = None
        self._frames: dict[tuple[str, str | None, str | None], tuple[int, float]] = {}
        self._backend_lock = threading.Lock()
        self._backend_failure: BackendError | None = None
        self.cache = CompletionCache(self.settings.cache)
        self.forward = ForwardCache()
        self.last_prompts: dict[str, Prompt] = {}
        """The last prompt built per document (``starcoder.lastPrompt``)."""
        self.crossfile: CrossFileContext | None = None
        """Cross-file retrieval (set by the server and the CLI when there is a workspace)."""
        self.open_lines: Callable[[Path], list[str] | None] | None = None
        """Lines of an open document by file path (the server's documents are newer than
        the files on disk)."""
        self._redactor: Redactor | None = None
        self._secret_docs: dict[tuple[str, Path | None], bool] = {}
        self.usage = Usage()
        """What the backend was asked for since the start (``starcoder.status``)."""
        self._anchors: dict[str, tuple[Anchor | None, list[Segment], int, object]] = {}
        """Per document: where its last window was cut and the other files' context it had,
        kept while the user types so that prompts start the same way."""

    # -- backend lifecycle -------------------------------------------------------------------

    def update_settings(self, settings: Settings) -> bool:
        """Apply ``settings``; True when they replace the backend."""
        from starcoder_ls.cache import CompletionCache

        old, self.settings = self.settings, settings
        replaced = any(getattr(old, f) != getattr(settings, f) for f in _BACKEND_FIELDS)
        if replaced:
            self.close_backend()
            # Completions on screen came from the old model; don't serve their rest.
            self.forward = type(self.forward)()
        if old.cache != settings.cache:
            self.cache.close()
            self.cache = CompletionCache(settings.cache)
        return replaced

    def backend(self) -> Backend:
        """The backend, created on first use; raises BackendError when it cannot be created.

        A model that crashed its worker while loading is not tried again on every keystroke:
        the same error is raised until the settings change or the backend is restarted."""
        with self._backend_lock:
            if self._backend_failure is not None:
                raise self._backend_failure
            if self._backend is None:
                try:
                    if self._backend_factory is not None:
                        self._backend = self._backend_factory(self.settings)
                    else:
                        from starcoder_ls.backends import create_backend

                        self._backend = create_backend(self.settings)
                except BackendError as exc:
                    if getattr(exc, "at_load", False):
                        self._backend_failure = exc
                    raise
            return self._backend

    def _window_counter(self, backend: Backend) -> Callable[[str], int]:
        with self._backend_lock:
            if self._line_counter is None or backend is not self._backend:
                self._line_counter = LineTokenCounter(
                    backend.count_tokens, getattr(backend, "count_tokens_many", None)
                )
            return self._line_counter

    def close_backend(self) -> None:
        with self._backend_lock:
            backend, self._backend = self._backend, None
            self._line_counter = None
            self._backend_failure = None
        if backend is not None:
            try:
                backend.close()
            except Exception:  # closing must never take the server down
                log.exception("closing the backend failed")

    def family(self, backend: Backend) -> str:
        if self.settings.family != "auto":
            return self.settings.family
        # What a team server says it serves comes first: it knows its model.
        served = getattr(backend, "family", None)
        if isinstance(served, str) and served:
            return served
        known = self._family
        if known is not None and known[0] is backend:
            return known[1]
        from starcoder_ls.models.registry import family_for

        # Looked up once per backend: it may read the model file's vocabulary.
        family = family_for(self.settings.model or backend.model_id, default="starcoder")
        self._family = (backend, family)
        return family

    # -- the pipeline --------------------------------------------------------------------------

    def build_prompt(
        self,
        snapshot: Any,
        line: int,
        character: int,
        *,
        root: Path | None = None,
        mode: CompletionMode | None = None,
        backend: Backend | None = None,
        context_tokens: int | None = None,
        exact: bool = True,
    ) -> PromptResult:
        """The exact prompt for a position (also what `starcoder-ls prompt` prints).

        With ``exact=False`` (the per-keystroke path) token counts come from the cached
        per-line counts: the budget holds all the same, and the backend reports the true
        prompt length when it generates.
        """
        from starcoder_ls.context.infile import decide_mode, window
        from starcoder_ls.prompt.builder import build_prompt

        if self.secret_document(snapshot.uri, root):
            raise SecretFileError(
                f"{_uri_path(snapshot.uri) or snapshot.uri} looks like a credentials file: no "
                "prompt is built there (set completeSecretFiles to allow it)"
            )
        backend = backend or self.backend()
        s = self.settings
        if mode is None:
            mode = decide_mode(snapshot, line, character)
        limit = min(s.context_tokens, context_tokens or s.context_tokens)
        ceiling = backend.context_length - s.max_tokens - _TEMPLATE_MARGIN
        budget = min(limit - _TEMPLATE_MARGIN, ceiling)
        if budget < 32:
            raise BackendError(
                f"the model's context ({backend.context_length} tokens) leaves no room for a "
                f"prompt with maxTokens={s.max_tokens}; lower maxTokens"
            )
        path = relative_path(_uri_path(snapshot.uri), root)
        counter = self._window_counter(backend)
        frame = self._frame_cost(self.family(backend), snapshot.language_id, path, counter)
        room = getattr(backend, "extra_context_tokens", None)  # what reaches the model
        anchor, before, since, depends = self._anchors.get(snapshot.uri, (None, [], line, None))
        share = min(s.cross_file_tokens, budget // 2, budget if room is None else room)
        share = share if s.cross_file and self.crossfile else 0
        now = self.crossfile.generation(snapshot.uri) if self.crossfile is not None else None
        near = since - _REGION[0] <= line <= since + _REGION[1]
        changed = depends != now  # another file was edited since: what is found now is newer
        if before and near and not changed and sum(seg.tokens for seg in before) <= share:
            extras = before  # kept as it is whatever retrieval would find: no need to ask
        else:
            found = self._cross_file(snapshot, line, character, budget, counter, frame, room)
            extras = _steady(before, found, share, near=near, changed=changed)
        win = window(
            snapshot,
            line,
            character,
            budget_tokens=budget - sum(seg.tokens for seg in extras),
            prefix_ratio=s.prefix_ratio,
            count_tokens=counter,
            anchor=anchor if extras is before else None,  # a new start: a new window too
            slack=_SLACK,
            keep_within=min(budget * (1 + _GROW), ceiling) - sum(seg.tokens for seg in extras),
        )
        # A kept window may have outgrown the budget: the prompt holds it and its extras.
        used = sum(seg.tokens for seg in extras) + win.prefix_tokens + win.suffix_tokens
        budget = max(budget, min(ceiling, used))
        self._remember_anchor(
            snapshot.uri, win.anchor, extras, since if extras is before else line, now
        )
        segments = [
            type(seg)(**{**seg.__dict__, "path": seg.path or (path or "")}) for seg in win.segments
        ]
        prefix, suffix = win.prefix, win.suffix
        redactor = self.redactor()
        if redactor is not None:  # the prompt leaves the machine: no credentials in it
            prefix, suffix = redactor.redact_around(prefix, suffix, path)
            segments = [_redacted(seg, redactor) for seg in segments]
            extras = [_redacted(seg, redactor) for seg in extras]
        fim = FimInput(
            prefix=prefix,
            suffix=suffix,
            path=path,
            language=snapshot.language_id,
            repo_name=root.name if root is not None else None,
            extra=tuple(extras),
        )
        family = self.family(backend)
        from starcoder_ls.prompt.templates import fim_order

        prompt = build_prompt(
            fim,
            family,
            count_tokens=backend.count_tokens if exact else self._window_counter(backend),
            budget_tokens=budget + _TEMPLATE_MARGIN,
            mode=mode,
            segments=segments,
            fim_mode=fim_order(family, s.fim_mode),
        )
        return PromptResult(prompt, mode, prefix, suffix)

    def redactor(self) -> Redactor | None:
        """The secret redactor, when prompts need it: every prompt for a server (an HTTP
        backend), and local ones too with ``redactSecrets: always``."""
        s = self.settings
        if s.redact_secrets != "always" and s.backend not in REMOTE_BACKENDS:
            return None
        if self._redactor is None:
            from starcoder_ls.prompt.redact import Redactor

            self._redactor = Redactor()
        return self._redactor

    def secret_document(self, uri: str, root: Path | None) -> bool:
        """Whether completing in this document is refused: it looks like credentials (by its
        name, or the name of the file a symlink points to) and ``completeSecretFiles`` is off."""
        if self.settings.complete_secret_files:
            return False
        key = (uri, root)
        known = self._secret_docs.get(key)
        if known is None:
            from starcoder_ls.context.workspace import is_secret_path

            path = _uri_path(uri)
            known = path is not None and is_secret_path(path, root.resolve() if root else None)
            if len(self._secret_docs) > 4096:
                self._secret_docs.clear()
            self._secret_docs[key] = known
        return known

    def _frame_cost(
        self, family: str, language: str | None, path: str | None, count: Callable[[str], int]
    ) -> tuple[int, float]:
        """What the prompt template adds around another file's text, in tokens: (per segment,
        besides its path; per line, a fraction where the counter rounds bytes). Measured on a probe block rendered as the template renders
        it: a commented layout prefixes every line, a file-separator layout only heads it."""
        key = (family, language, path.rsplit(".", 1)[-1] if path else None)
        held = self._frames.get(key)
        if held is not None:
            return held
        from starcoder_ls.prompt.templates import extra_block, get_template

        try:
            template = get_template(family)
        except ValueError:
            return (2, 0.0)
        fim = FimInput(prefix="", suffix="", path=path, language=language)

        def block(text: str) -> int:
            seg = Segment(kind="import", path="p", start_line=1, end_line=1, text=text)
            return count(extra_block(template, seg, fim))

        # Eight more lines, of lengths that differ, than the one-line probe: a counter that
        # rounds each line's bytes to tokens averages out.
        more = "".join(f"{'v' * (1 + 5 * i)} = {i}\n" for i in range(8))
        one = block("x\n")
        per_line = max(0.0, (block("x\n" + more) - one - count(more)) / 8)
        per_segment = max(0, one - count("x\n") - math.ceil(per_line) - count("p"))
        if len(self._frames) > 64:
            self._frames.clear()
        self._frames[key] = (per_segment, per_line)
        return per_segment, per_line

    def _cross_file(
        self,
        snapshot: Any,
        line: int,
        character: int,
        budget: int,
        count: Callable[[str], int],
        frame: tuple[int, float] = (2, 0.0),
        room: int | None = None,
    ) -> list[Segment]:
        """Context from other files, within ``crossFileTokens`` (at most half the budget, and
        no more than ``room``: what the backend says reaches the model)."""
        s = self.settings
        ctx = self.crossfile
        room = budget if room is None else room
        if ctx is None or not s.cross_file or min(s.cross_file_tokens, room) <= 0:
            return []
        from starcoder_ls.context.crossfile import Request

        index = ctx.index_for(snapshot.uri)
        if index is None and not ctx.has_recent(snapshot.uri):
            return []  # no workspace and nothing edited elsewhere: nothing to retrieve
        file_path = _uri_path(snapshot.uri)
        rel = index.relative(file_path) if index is not None and file_path else None
        # Slices of the text (one copy each), not joins of hundreds of lines per keystroke.
        starts = snapshot.line_starts
        cursor = starts[line] + character
        end = line + _AFTER_LINES
        before = snapshot.text[starts[max(0, line - _BEFORE_LINES)] : cursor]
        after = snapshot.text[cursor : starts[end] if end < len(starts) else len(snapshot.text)]
        try:
            return ctx.segments(
                Request(
                    uri=snapshot.uri,
                    path=rel,
                    language=snapshot.language_id,
                    before=before,
                    after=after,
                    line=line,
                    budget=min(s.cross_file_tokens, budget // 2, room),
                    count_tokens=getattr(count, "whole", count),
                    count_ahead=(
                        count.whole_many
                        if isinstance(count, LineTokenCounter) and count.batches
                        else None
                    ),
                    open_lines=self.open_lines,
                    segment_cost=frame[0],
                    line_cost=frame[1],
                )
            )
        except Exception:  # context is a bonus: a retrieval bug must not cost the completion
            log.exception("cross-file retrieval failed")
            return []

    def params(
        self,
        mode: CompletionMode,
        *,
        blank_line: bool = False,
        block_indent: int = 0,
        family: str = "",
    ) -> GenerationParams:
        """Generation parameters for ``mode``; ``blank_line``: the cursor's line holds nothing
        but whitespace, so a single line's newline stop waits for the first code;
        ``block_indent``: the cursor line's indentation, left of which a multi-line completion
        is over (generating on would only be cut off afterwards); ``family``: the prompt's,
        for ``tokenHealing: auto``."""
        from starcoder_ls.prompt.templates import left_to_right

        s = self.settings
        single = mode is CompletionMode.SINGLE_LINE
        heal = s.token_healing == "on" or (
            s.token_healing == "auto" and bool(family) and left_to_right(family)
        )
        return GenerationParams(
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            stop=("\n",) if single else (),
            stop_after_text=single and blank_line,
            stop_below_indent=0 if single else block_indent,
            token_healing=heal,
        )

    def complete(
        self,
        snapshot: Any,
        line: int,
        character: int,
        *,
        cancel: CancelToken | None = None,
        root: Path | None = None,
        invoked: bool = False,
        context_tokens: int | None = None,
        mode: CompletionMode | None = None,
    ) -> Completion | None:
        """A completion at a 0-based (line, code-point column), or None when there is none.

        ``mode`` overrides the decision the syntax tree makes (single or multi-line); the
        evaluations use it to ask for what their benchmark measures.
        Raises BackendError when the backend cannot be created or fails.
        """
        from starcoder_ls.postprocess import postprocess
        from starcoder_ls.prompt.templates import left_to_right

        cancel = cancel or CancelToken()
        t0 = time.perf_counter()
        if not self.settings.language_enabled(snapshot.language_id or ""):
            return None
        if self.secret_document(snapshot.uri, root):
            log.debug("no completion in %s: it looks like a credentials file", snapshot.uri)
            return None
        line_prefix = snapshot.line_text(line)[:character]
        reuse = self.forward.lookup(snapshot.uri, line, line_prefix)
        if reuse:
            return Completion(
                text=reuse,
                line=line,
                character=character,
                model=self._model_name(),
                latency_ms=round((time.perf_counter() - t0) * 1000, 2),
                cached=True,
                request_id=uuid.uuid4().hex,
                extra={"source": "forward"},
            )
        from starcoder_ls.context.infile import decide_mode

        if mode is None or mode is CompletionMode.NONE:
            mode = decide_mode(snapshot, line, character)
        if mode is CompletionMode.NONE and not invoked:
            return None
        if mode is CompletionMode.NONE:
            mode = CompletionMode.SINGLE_LINE
        backend = self.backend()
        built = self.build_prompt(
            snapshot,
            line,
            character,
            root=root,
            mode=mode,
            backend=backend,
            context_tokens=context_tokens,
            exact=False,
        )
        self._remember_prompt(snapshot.uri, built.prompt)
        if cancel.cancelled:
            return None
        if not built.prompt.text:
            # A left-to-right model at the start of a file with no context: nothing to
            # continue from (a server would refuse an empty prompt).
            log.debug("no completion in %s: the prompt is empty", snapshot.uri)
            return None
        text_of_line = snapshot.line_text(line)
        lead = text_of_line[: len(text_of_line) - len(text_of_line.lstrip(" \t"))]
        blank = not text_of_line.strip()
        indent = len(lead[:character].expandtabs(4))
        params = self.params(
            mode,
            blank_line=blank,
            # At column 0 of a blank line the block is wherever the model indents its code.
            block_indent=-1 if blank and indent == 0 else indent,
            family=built.prompt.family,
        )
        key = self.cache.make_key(backend.model_id, built.prompt.text, params)
        raw = self.cache.get(key)
        cached = raw is not None
        prompt_tokens = built.prompt.tokens
        if raw is None:
            gen = backend.generate(built.prompt, params, cancel)
            self.usage.add(gen)
            if gen.finish_reason == "cancelled" or cancel.cancelled:
                return None
            raw = gen.text
            prompt_tokens = gen.prompt_tokens or prompt_tokens
            self.cache.put(key, raw)
        text = postprocess(
            raw,
            prefix=built.prefix,
            suffix=built.suffix,
            mode=mode,
            stop=built.prompt.stop,
            language=snapshot.language_id,
            check_syntax=self.settings.syntax_check,
            left_to_right=left_to_right(built.prompt.family),
        )
        if not text:
            return None
        self.forward.remember(snapshot.uri, line, line_prefix, text)
        return Completion(
            text=text,
            line=line,
            character=character,
            model=backend.model_id,
            latency_ms=round((time.perf_counter() - t0) * 1000, 2),
            prompt_tokens=prompt_tokens,
            cached=cached,
            mode=mode,
            request_id=uuid.uuid4().hex,
            raw=raw,
        )

    def _remember_anchor(
        self, uri: str, anchor: Anchor | None, extras: list[Segment], line: int, depends: object
    ) -> None:
        with self._backend_lock:
            self._anchors.pop(uri, None)
            self._anchors[uri] = (anchor, extras, line, depends)
            while len(self._anchors) > _ANCHORS:
                del self._anchors[next(iter(self._anchors))]

    def _remember_prompt(self, uri: str, prompt: Prompt) -> None:
        with self._backend_lock:
            self.last_prompts.pop(uri, None)
            self.last_prompts[uri] = prompt  # most recent last
            while len(self.last_prompts) > _LAST_PROMPTS:
                del self.last_prompts[next(iter(self.last_prompts))]

    def last_prompt(self, uri: str | None = None) -> Prompt | None:
        """The prompt last sent for ``uri`` (or for any document): what the model saw."""
        with self._backend_lock:
            if uri is not None:
                return self.last_prompts.get(uri)
            return next(reversed(self.last_prompts.values()), None)

    def remote_status(self) -> dict[str, Any] | None:
        """What a remote backend learned about its server (its context, and for a llama.cpp
        server whether other files' context arrives), or None for local backends."""
        status = getattr(self._backend, "status", None)
        return status() if callable(status) else None

    def worker_status(self) -> dict[str, Any] | None:
        """The model worker process of a local backend (pid, load time, memory at load, what
        it runs on, crashes so far), or None for other backends or before it started."""
        backend = self._backend
        info = getattr(backend, "info", None)
        if info is None:
            return None
        return {
            "pid": info.pid,
            "load_ms": info.load_ms,
            "rss_bytes_at_load": info.rss_bytes,
            "runs_on": info.runs_on,
            "restarts": getattr(backend, "restarts", 0),
            "crashes": list(getattr(backend, "crashes", [])),
        }

    def _model_name(self) -> str:
        return self._backend.model_id if self._backend is not None else self.settings.model

    def close(self) -> None:
        self.close_backend()
        self.cache.close()


def _uri_path(uri: str) -> str | None:
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(uri).path)
    if "://" in uri:
        return None
    return uri


def _redacted(seg: Segment, redactor: Redactor) -> Segment:
    text = redactor.redact(seg.text, seg.path)
    return seg if text == seg.text else dataclasses.replace(seg, text=text)


_CORE_KINDS = ("import", "definition")
"""Other-file context about names used near the cursor: a change there is worth a new prompt
start; similar and recently edited code alone is not."""


def _steady(
    before: list[Segment],
    found: list[Segment],
    limit: int,
    *,
    near: bool = False,
    changed: bool = False,
) -> list[Segment]:
    """The other files' context for this request: the previous request's (the same list) while
    it fits ``limit``, no other file ``changed`` since, and the cursor is ``near`` where it was
    chosen or, further away, it already holds what retrieval found now about the names used
    near the cursor (their imports and definitions); otherwise what was found. So the prompt
    keeps its start while the user types, and moves in rare jumps."""
    if limit <= 0:
        return before if not before else []
    if changed or sum(seg.tokens for seg in before) > limit:
        return found
    if near and before:
        return before
    held = {(seg.path, seg.text) for seg in before}
    if all((seg.path, seg.text) in held for seg in found if seg.kind in _CORE_KINDS):
        return before
    return found
