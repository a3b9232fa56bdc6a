"""What every backend shares: stop handling, prompt fitting, sampling and the decode loop.

The two in-process engines (llama.cpp and transformers) differ only in how they evaluate tokens
and read logits; the rules around them (when to stop, what text to return, how a prompt that is
too long is cut, how cancellation is noticed) live here once, so both behave the same way and a
completion does not change character when the user switches engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from starcoder_ls.types import BackendError, CancelToken, Generation, GenerationParams, Prompt

if TYPE_CHECKING:
    import numpy as np

CHARS_PER_TOKEN = 3.5
"""Code averages about 3.5 characters per BPE token; used only where no tokenizer exists."""


def estimate_tokens(text: str) -> int:
    """Token estimate for backends without a local tokenizer (remote servers, the test backend).

    Defers to the prompt builder's estimate when it has one, so budgeting and counting agree.
    """
    try:
        from starcoder_ls.prompt.builder import estimate_tokens as builder_estimate
    except ImportError:
        return -(-len(text) * 2 // 7) if text else 0  # ceil(len / 3.5)
    return int(builder_estimate(text))


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest shared prefix: how much of a KV cache the next prompt can keep."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def stop_strings(prompt_stop: Iterable[str], params_stop: Iterable[str]) -> tuple[str, ...]:
    """The request's stop strings first (e.g. a newline for single-line), then the family's,
    without duplicates or empty strings (an empty stop would end every generation at once)."""
    seen: dict[str, None] = {}
    for s in (*params_stop, *prompt_stop):
        if s:
            seen.setdefault(s, None)
    return tuple(seen)


def find_stop(text: str, stops: Sequence[str], start: int = 0) -> int:
    """Index of the earliest stop string in ``text`` at or after ``start``, or -1."""
    best = -1
    for s in stops:
        i = text.find(s, start)
        if i != -1 and (best == -1 or i < best):
            best = i
    return best


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to its first stop string (excluded) and whether one was found.

    Servers differ (TGI keeps the matched stop sequence, vLLM drops it); cutting here gives one
    behaviour for every backend.
    """
    i = find_stop(text, stops)
    return (text, False) if i == -1 else (text[:i], True)


def utf8_complete(data: bytes) -> str:
    """Decode ``data``, leaving out a trailing incomplete UTF-8 sequence.

    A byte-level BPE token can end in the middle of a character; while generating, the missing
    bytes may come with the next token, so they are neither shown nor turned into U+FFFD yet.
    """
    end = len(data)
    for back in range(1, min(4, end) + 1):
        byte = data[end - back]
        if byte & 0xC0 != 0x80:  # a lead byte (or ASCII): does its sequence fit?
            if need_bytes(byte) > back:
                end -= back
            break
    return data[:end].decode("utf-8", errors="replace")


def need_bytes(lead: int) -> int:
    """Length of the UTF-8 sequence a lead byte starts; 1 for ASCII and for invalid leads."""
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 1


def fit_prompt(
    ids: list[int], n_ctx: int, max_tokens: int, keep_first: bool
) -> tuple[list[int], int]:
    """Make prompt + generation fit ``n_ctx``: the prompt loses tokens from its left end.

    The end of a FIM prompt (suffix, middle sentinel) is what the model continues from, so the
    far end of the prefix is what goes. ``keep_first`` keeps a leading sentinel token (such as
    ``<fim_prefix>`` or ``<repo_name>``) so the prompt still has the shape the model was trained
    on. Generation is capped to leave room for at least half the context as prompt; 0 tokens
    (evaluate the prompt only) stays 0.
    """
    max_tokens = max(0 if max_tokens == 0 else 1, min(max_tokens, n_ctx // 2))
    room = n_ctx - max_tokens
    if len(ids) <= room:
        return ids, max_tokens
    if keep_first and ids:
        return [ids[0], *ids[len(ids) - room + 1 :]], max_tokens
    return ids[len(ids) - room :], max_tokens


def sample_token(
    logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator
) -> int:
    """Greedy at temperature 0 (deterministic completions, cacheable), otherwise temperature and
    nucleus sampling over the logits."""
    import numpy as np

    if temperature <= 0.0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max()
    probs = np.exp(scaled)
    probs /= probs.sum()
    if 0.0 < top_p < 1.0:
        order = np.argsort(-probs)
        cumulative = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cumulative, top_p)) + 1]
        kept = probs[keep] / probs[keep].sum()
        return int(rng.choice(keep, p=kept))
    return int(rng.choice(len(probs), p=probs))


HEAL_WINDOW = 96
"""Characters before the cursor tokenized to find the last token(s): a token's text is local
(pre-tokenizers split at spaces and punctuation), so the last tokens of this tail are those of
the whole prompt unless one of them reaches the tail's start, which then heals nothing."""
HEAL_MAX_TOKENS = 4
"""At most this many whitespace tokens are taken off together (a newline, then indentation)."""


class TokenIndex:
    """Every token's text, to find the tokens compatible with text the generation must start
    with: those whose text is a start of it, and those whose text starts with all of it.

    ``texts[i]`` is the text token ``i`` adds in the middle of a sequence; special tokens and
    tokens that are part of a character (byte-level BPE) have none ("") and are never allowed.
    """

    def __init__(self, texts: Sequence[str]) -> None:
        import numpy as np

        self.texts = list(texts)
        order = sorted((t, i) for i, t in enumerate(self.texts) if t)
        self._sorted = [t for t, _ in order]
        self._ids = np.array([i for _, i in order], dtype=np.int64)
        self._by_text: dict[str, list[int]] = {}
        for t, i in order:
            self._by_text.setdefault(t, []).append(i)

    def allowed(self, rest: str) -> np.ndarray:
        """Ids of the tokens a generation owing ``rest`` may pick next."""
        import bisect

        import numpy as np

        starts = [i for k in range(1, len(rest)) for i in self._by_text.get(rest[:k], ())]
        lo = bisect.bisect_left(self._sorted, rest)
        hi = bisect.bisect_left(self._sorted, rest + "\U0010ffff", lo)
        return np.concatenate([np.array(starts, dtype=np.int64), self._ids[lo:hi]])


def heal_prompt(
    text: str,
    prefix_end: int,
    tokenize: Callable[[str], list[int]],
    index: TokenIndex,
) -> tuple[str, str, int]:
    """(prompt text, healed text, its token count): ``text`` without the last token(s) of the code before
    ``prefix_end`` (the last one, or a run of up to ``HEAL_MAX_TOKENS`` whitespace tokens),
    and their text, which the generation must start with. ``(text, "")`` when nothing can be
    healed: no code before the cursor, a special token there, or a token the index has no text
    for."""
    if not 0 < prefix_end <= len(text):
        return text, "", 0
    tail = text[max(0, prefix_end - HEAL_WINDOW) : prefix_end]
    ids = tokenize(tail)
    healed, taken = "", 0
    for count, tid in enumerate(reversed(ids)):
        piece = index.texts[tid] if 0 <= tid < len(index.texts) else ""
        if not piece or not tail.endswith(piece + healed):
            break
        if healed and not (piece + healed).isspace():
            break  # more than one token only for whitespace (a newline and indentation)
        if count + 1 == len(ids):
            return text, "", 0  # the token may reach before the tail: its text is unsure
        healed = piece + healed
        taken = count + 1
        if taken >= HEAL_MAX_TOKENS or not piece.isspace():
            break
    if not healed or not index.allowed(healed).size:
        return text, "", 0
    return text[: prefix_end - len(healed)] + text[prefix_end:], healed, taken


def healing(
    backend: TokenLoopBackend, prompt: Prompt, params: GenerationParams
) -> tuple[str, str, GenerationParams]:
    """(text to tokenize, healed text, params): the prompt as ``params.token_healing`` wants
    it, with ``max_tokens`` raised by the tokens that write the healed text again, so the
    answer may be as long as without healing."""
    if not params.token_healing or prompt.prefix_end < 0:
        return prompt.text, "", params
    text, healed, taken = heal_prompt(
        prompt.text, prompt.prefix_end, backend.tokenize, backend.token_index()
    )
    if not healed:
        return prompt.text, "", params
    return text, healed, replace(params, max_tokens=params.max_tokens + taken)


@dataclass
class DecodeResult:
    text: str
    tokens: list[int]
    finish_reason: str
    """stop, length, cancelled."""
    stop_type: str = "none"
    """eos, word, limit, none (see ``Generation.stop_type``)."""
    stopping_word: str = ""


class TokenStream:
    """One sequence being decoded: picks its tokens, notices its stops, and says which part of
    its text is safe to show while it is still running.

    The one-at-a-time loop (``decode_loop``) and the team server's batched decoder each keep
    one per sequence, so a sequence stops, samples and streams the same way whichever of them
    runs it. ``text_of(ids)`` renders generated ids (special tokens spelled out); ``room`` is
    how many tokens the context has left after the prompt.
    """

    def __init__(
        self,
        text_of: Callable[[list[int]], str],
        *,
        stop_ids: frozenset[int],
        stops: Sequence[str],
        params: GenerationParams,
        room: int,
        seed: int = 0,
        heal: str = "",
        index: TokenIndex | None = None,
    ) -> None:
        import numpy as np

        self._text_of = text_of
        self._owed = heal if index is not None else ""
        """Healed text the generation has not written yet: while there is some, only tokens
        that agree with it are picked, and their text is not part of the answer."""
        self._index = index
        self.stop_ids = stop_ids
        self.stops = tuple(stops)
        self.params = params
        self.room = room
        self._rng = np.random.default_rng(seed)
        self._longest_stop = max((len(s) for s in self.stops), default=0)
        self.tokens: list[int] = []
        self.text = ""
        self.finish_reason = ""
        """Empty while running; then stop, length or cancelled."""
        self.stop_type = ""
        """eos, word, limit or none once finished (see ``Generation.stop_type``)."""
        self.stopping_word = ""
        self._started = time.perf_counter()
        self._shown = 0
        self._prefix_offset = 0
        self._read_offset = 0

    @property
    def finished(self) -> bool:
        return bool(self.finish_reason)

    def push(self, logits: np.ndarray) -> int | None:
        """Pick the next token from ``logits``. Returns the token the model must evaluate next,
        or None when the sequence ended (a stop token is never evaluated nor shown; a stop
        string is cut off with everything after it)."""
        params = self.params
        if self._owed and self._index is not None:
            import numpy as np

            allowed = self._index.allowed(self._owed)
            masked = np.full(logits.shape, -np.inf, dtype=np.float32)
            masked[allowed] = logits[allowed]
            logits = masked
        return self.accept(sample_token(logits, params.temperature, params.top_p, self._rng))

    @property
    def greedy(self) -> bool:
        """Picks the most likely token: a batch may pick it for many sequences at once and
        ``accept`` it. Not while healing, whose picks are held to the healed text."""
        return self.params.temperature <= 0.0 and not self._owed

    def accept(self, token: int) -> int | None:
        """``push`` with the token already picked (the most likely one, for a greedy stream)."""
        if self._owed:
            return self._heal(token)
        if token in self.stop_ids:
            self._end("stop", "eos")
            return None
        self.tokens.append(token)
        previous = len(self.text)
        self._extend_text()
        return self._check(token, previous)

    def _heal(self, token: int) -> int | None:
        """A token that writes (part of) the healed text: the part past it starts the answer,
        and later tokens are rendered after this one."""
        assert self._index is not None
        piece = self._index.texts[token] if 0 <= token < len(self._index.texts) else ""
        owed = self._owed
        if not piece or not (owed.startswith(piece) or piece.startswith(owed)):
            raise BackendError(f"token healing: token {token} does not continue {owed!r}")
        self.tokens.append(token)
        self._owed = owed[len(piece) :] if owed.startswith(piece) else ""
        if not self._owed:
            self.text = piece[len(owed) :]
            self._prefix_offset = len(self.tokens) - 1
            self._read_offset = len(self.tokens)
            return self._check(token, 0)
        if len(self.tokens) >= self.params.max_tokens or len(self.tokens) >= self.room:
            self._end("length", "limit")
            return None
        return token

    def _check(self, token: int, previous: int) -> int | None:
        """The stops, limits and time rules, once the text written since ``previous`` is in."""
        params = self.params
        start = max(0, previous - self._longest_stop)
        if params.stop_after_text:
            body = self.text.lstrip()
            start = len(self.text) if not body else max(start, len(self.text) - len(body))
        hit = find_stop(self.text, self.stops, start)
        if hit != -1:
            self.stopping_word = next(s for s in self.stops if self.text.startswith(s, hit))
            self.text = self.text[:hit]
            self._end("stop", "word")
            return None
        if params.stop_below_indent:
            line_start = self.text.rfind("\n", 0, max(previous, 1))
            hit = dedent_at(self.text, max(line_start, 0), params.stop_below_indent)
            if hit != -1:
                self.text = self.text[:hit]
                self._end("stop", "limit")
                return None
        if params.min_indent > 0:
            hit = short_line_at(self.text, previous, params.min_indent)
            if hit != -1:
                self.text = self.text[:hit]
                self._end("stop", "limit")
                return None
        if len(self.tokens) >= params.max_tokens or len(self.tokens) >= self.room:
            self._end("length", "limit")
            return None
        if (
            params.predict_ms > 0
            and "\n" in self.text[previous:]
            and (time.perf_counter() - self._started) * 1000 > params.predict_ms
        ):
            self._end("length", "limit")
            return None
        return token

    def _end(self, reason: str, kind: str) -> None:
        self.finish_reason = reason
        self.stop_type = kind
        return None

    def _extend_text(self) -> None:
        """Add the text of the tokens not rendered yet, decoding only them and the token(s)
        before them (whole-sequence decoding each step costs O(length) per token).

        The preceding tokens are decoded with them because a tokenizer may render a token
        differently at the start of a text (SentencePiece drops a leading space); the new text
        is what decoding them adds. While the new tokens end in the middle of a character
        (a replacement character, or nothing more for a renderer that holds such bytes back),
        nothing is added: the character's other bytes come with the next token, and a
        character cut in half by the end of the generation is left out."""
        start, read = self._prefix_offset, self._read_offset
        before = self._text_of(self.tokens[start:read]) if read > start else ""
        now = self._text_of(self.tokens[start:])
        if len(now) > len(before) and not now.endswith("\ufffd"):
            self.text += now[len(before) :]
            self._prefix_offset, self._read_offset = read, len(self.tokens)

    def cancel(self) -> None:
        if not self.finish_reason:
            self._end("cancelled", "none")

    def new_text(self) -> str:
        """Text not handed out before that no later token can take back: while running, a tail
        that could be the start of a stop string, or half a character, is held back."""
        end = len(self.text)
        if not self.finish_reason:
            end -= held_back(self.text, self.stops)
        if end <= self._shown:
            return ""
        piece = self.text[self._shown : end]
        self._shown = end
        return piece

    def result(self) -> DecodeResult:
        return DecodeResult(
            self.text,
            self.tokens,
            self.finish_reason or "cancelled",
            self.stop_type or "none",
            self.stopping_word,
        )


def dedent_at(text: str, start: int, block: int) -> int:
    """Index of the line break before the first line after ``start`` (never the first line)
    whose code starts left of column ``block``, or -1. A line is judged once its first
    non-blank character has arrived; blank lines and lines starting with a closing bracket
    never end a block here (the closer may be the completion's own). ``block`` -1: the block is
    where the completion's first code is indented (the cursor sat at column 0 of a blank line,
    under a header whose body the model indents itself)."""
    if block < 0:
        code = len(text) - len(text.lstrip())
        if code >= len(text):
            return -1
        line_start = text.rfind("\n", 0, code) + 1
        block = len(text[line_start:code].expandtabs(4))
        start = max(start, code)
    if block <= 0:
        return -1
    i = text.find("\n", start)
    while i != -1:
        j = k = i + 1
        while k < len(text) and text[k] in " \t":
            k += 1
        if k >= len(text):
            return -1
        if text[k] not in "\r\n)]}" and len(text[j:k].expandtabs(4)) < block:
            return i
        i = text.find("\n", j)
    return -1


def short_line_at(text: str, start: int, indent: int) -> int:
    """llama.cpp server's ``n_indent`` rule: the index where the code of the first line after a
    line break (from the line holding ``start`` on) begins left of column ``indent`` (spaces and
    tabs count one each; a blank line's code is its line break), or -1. A line is judged once a
    character other than a space or tab has arrived."""
    nl = text.rfind("\n", 0, start)
    if nl == -1:
        nl = text.find("\n")
    while nl != -1:
        j = k = nl + 1
        while k < len(text) and text[k] in " \t":
            k += 1
        if k >= len(text):
            return -1
        if k - j < indent:
            return k
        nl = text.find("\n", j)
    return -1


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of ``text`` a stream must not show yet: the longest tail
    that is a proper prefix of a stop string, or a trailing replacement character (the first
    bytes of a character whose last bytes come with the next token)."""
    hold = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:n]):
                hold = n
                break
    stripped = len(text) - len(text.rstrip("\ufffd"))
    return max(hold, stripped)


def decode_loop(
    logits: np.ndarray,
    step: Callable[[int], np.ndarray],
    text_of: Callable[[list[int]], str],
    *,
    stop_ids: frozenset[int],
    stops: Sequence[str],
    params: GenerationParams,
    room: int,
    cancel: CancelToken,
    seed: int = 0,
    on_text: Callable[[str], None] | None = None,
    heal: str = "",
    index: TokenIndex | None = None,
) -> DecodeResult:
    """Pick tokens one at a time until a stop token, a stop string, ``max_tokens``, the end of
    the context (``room`` tokens left) or cancellation.

    ``step(token)`` evaluates one token and returns the next logits. ``on_text``, when given,
    receives the text as it becomes final (see ``TokenStream.new_text``).
    """
    stream = TokenStream(
        text_of,
        stop_ids=stop_ids,
        stops=stops,
        params=params,
        room=room,
        seed=seed,
        heal=heal,
        index=index,
    )
    while True:
        if cancel.cancelled:
            stream.cancel()
            break
        token = stream.push(logits)
        if on_text is not None and (piece := stream.new_text()):
            on_text(piece)
        if token is None:
            break
        logits = step(token)
    return stream.result()


class Stopwatch:
    """Milliseconds since creation, for ``Generation.latency_ms``."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()

    def ms(self) -> float:
        return (time.perf_counter() - self._t0) * 1000.0


class _PromptDeadline(CancelToken):
    """The request's cancel token, also set once ``ms`` milliseconds have passed (0: never);
    it times the prompt's evaluation too."""

    def __init__(self, parent: CancelToken, ms: float) -> None:
        super().__init__()
        self._parent = parent
        self._t0 = time.perf_counter()
        self._until = self._t0 + ms / 1000 if ms > 0 else float("inf")

    @property
    def cancelled(self) -> bool:
        return self._parent.cancelled or time.perf_counter() > self._until

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self._t0) * 1000.0


class TokenLoopBackend:
    """``generate`` for engines that run the token loop in this process (llama.cpp,
    transformers): tokenize, fit the context, evaluate what the KV cache lacks, decode.

    Subclasses provide the engine-specific pieces: ``tokenize``, ``stop_ids``,
    ``_evaluate_prompt`` (logits after the prompt, or None when cancelled), ``_step``,
    ``_text_of``, and ``_failed`` (reset what a failure left in doubt; the error to raise).
    """

    context_length: int
    _lock: threading.Lock
    _special_ids: frozenset[int]
    _bos_id: int | None = None
    """The token the model's tokenizer puts before every sequence (Gemma's ``<bos>``, Llama's
    ``<s>``), or None when it adds none (StarCoder). A model trained with it writes nonsense
    without it, so prompts get it; token counts of pieces of a prompt do not."""

    def tokenize(self, text: str) -> list[int]:
        raise NotImplementedError

    def stop_ids(self, stops: tuple[str, ...]) -> frozenset[int]:
        raise NotImplementedError

    def _evaluate_prompt(
        self, ids: list[int], cancel: CancelToken
    ) -> tuple[int, np.ndarray | None]:
        raise NotImplementedError

    def _step(self, token: int) -> np.ndarray:
        raise NotImplementedError

    def _text_of(self, ids: list[int]) -> str:
        raise NotImplementedError

    def _check_open(self) -> None:
        """Raise BackendError when the backend was closed."""

    def _failed(self, exc: RuntimeError) -> BackendError:
        raise NotImplementedError

    def _token_texts(self) -> list[str]:
        """Each token's text in the middle of a sequence; "" for special tokens and for tokens
        that are part of a character."""
        raise NotImplementedError

    _token_index: TokenIndex | None = None
    _index_lock = threading.Lock()

    def token_index(self) -> TokenIndex:
        """The vocabulary's texts, indexed for token healing (built on first use: about 1.6 s
        for Gemma's 262k tokens on one core, see ``prepare_healing``)."""
        with TokenLoopBackend._index_lock:
            if self._token_index is None:
                self._token_index = TokenIndex(self._token_texts())
            return self._token_index

    def prepare_healing(self) -> None:
        """Build the token index on a thread of its own, so that the first healed completion
        does not wait for it."""
        threading.Thread(
            target=self.token_index, name="starcoder-ls-token-index", daemon=True
        ).start()

    def generate(
        self,
        prompt: Prompt,
        params: GenerationParams,
        cancel: CancelToken,
        on_text: Callable[[str], None] | None = None,
    ) -> Generation:
        """``on_text`` receives the generated text piece by piece as it becomes final (the
        team server streams it); the returned ``Generation`` has all of it."""
        watch = Stopwatch()
        text, heal, params = healing(self, prompt, params)
        ids = self.tokenize(text)
        if not ids:
            return Generation(text="", finish_reason="stop", stop_type="eos")
        if self._bos_id is not None and ids[0] != self._bos_id:
            ids = [self._bos_id, *ids]
        whole = len(ids)
        ids, max_tokens = fit_prompt(
            ids, self.context_length, params.max_tokens, keep_first=ids[0] in self._special_ids
        )
        stop_ids = self.stop_ids(prompt.stop)
        stops = stop_strings(prompt.stop, params.stop)
        with self._lock:
            self._check_open()
            try:
                deadline = _PromptDeadline(cancel, params.prompt_ms)
                evaluated, logits = self._evaluate_prompt(ids, deadline)
                prompt_ms = deadline.elapsed_ms()
                if logits is None or max_tokens == 0:
                    stopped = cancel.cancelled
                    return Generation(
                        text="",
                        prompt_tokens=len(ids),
                        evaluated_tokens=evaluated,
                        latency_ms=watch.ms(),
                        finish_reason="cancelled" if stopped else "length",
                        stop_type="none" if stopped else "limit",
                        prompt_ms=prompt_ms,
                        truncated=len(ids) < whole,
                    )
                result = decode_loop(
                    logits,
                    self._step,
                    self._text_of,
                    stop_ids=stop_ids,
                    stops=stops,
                    params=params
                    if params.max_tokens == max_tokens
                    else replace(params, max_tokens=max_tokens),
                    room=self.context_length - len(ids),
                    cancel=cancel,
                    seed=params.seed,
                    on_text=on_text,
                    heal=heal,
                    index=self.token_index() if heal else None,
                )
            except RuntimeError as exc:
                raise self._failed(exc) from exc
        return Generation(
            text=result.text,
            prompt_tokens=len(ids),
            evaluated_tokens=evaluated,
            completion_tokens=len(result.tokens),
            latency_ms=watch.ms(),
            finish_reason=result.finish_reason,
            stop_type=result.stop_type,
            stopping_word=result.stopping_word,
            prompt_ms=prompt_ms,
            predicted_ms=max(0.0, deadline.elapsed_ms() - prompt_ms),
            truncated=len(ids) < whole,
        )
