"""Parallel sequences for the llama.cpp backend: the team server's GGUF throughput engine.

One request at a time leaves the CPU waiting on overhead: a decoding step evaluates a single
token, and reading the weights costs the same for one token as for eight. ``LlamaBatchEngine``
opens a second llama.cpp context on the loaded model with ``max_batch`` sequences, each with
its own part of the KV cache (a shared one makes every token attend over all sequences' cells,
masked: three times slower here with 8 sequences), and each step makes one ``llama_decode``
call holding the next token of every decoding sequence plus chunks of the prompts being
prefilled. A request that arrives while others decode joins at the next step, and
a long prompt is fed in chunks of the step's room, so it never stalls the others for long.

Each sequence lives in a slot, and a slot keeps its tokens' KV after its request: a new request
takes the free slot whose cached tokens share the longest start with its prompt (llama-server's
slot choice), so the next keystroke of the same editor evaluates only what changed.

Each sequence keeps its own ``TokenStream``, the rules of the one-at-a-time loop for stops,
sampling and streaming, so batching changes how fast a completion comes, never what it says.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from starcoder_ls.backends.base import (
    Stopwatch,
    TokenStream,
    common_prefix_len,
    fit_prompt,
    healing,
    stop_strings,
)
from starcoder_ls.serve.engine import Engine, Job
from starcoder_ls.types import BackendError, Generation

if TYPE_CHECKING:
    import numpy as np

    from starcoder_ls.backends.llamacpp import LlamaCppBackend

log = logging.getLogger(__name__)

STEP_TOKENS = 512
"""Tokens one ``llama_decode`` call takes: every decoding sequence's next token first, then
prompt chunks in arrival order."""
POOL_CAP = 16384
"""KV cells of all slots together at most, unless one model context is larger: memory grows
with it. Each slot gets an equal part (the context a request may use here)."""


@dataclass(eq=False)
class _Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)
    """What the KV cache holds for this sequence id, position by position."""
    used_at: float = 0.0
    busy: bool = False


class _Rows:
    """A step's input for ``llama_decode`` in arrays this engine owns: the ``llama_batch``
    struct points into them, and a step fills them a slice at a time (a prompt chunk of 500
    tokens was 2,500 ctypes writes per step)."""

    def __init__(self, llama_cpp: Any, room: int) -> None:
        import ctypes

        import numpy as np

        self.token = np.zeros(room, dtype=np.int32)
        self.pos = np.zeros(room, dtype=np.int32)
        self.seq = np.zeros(room, dtype=np.int32)
        self.logits = np.zeros(room, dtype=np.int8)
        self._one_seq_each = np.ones(room, dtype=np.int32)
        int32_p = ctypes.POINTER(ctypes.c_int32)
        base = self.seq.ctypes.data
        self._seq_ptrs = (int32_p * room)(
            *(ctypes.cast(base + 4 * i, int32_p) for i in range(room))
        )
        batch = self.batch = llama_cpp.llama_batch()
        batch.n_tokens = 0
        batch.token = self.token.ctypes.data_as(int32_p)
        batch.embd = None
        batch.pos = self.pos.ctypes.data_as(int32_p)
        batch.n_seq_id = self._one_seq_each.ctypes.data_as(int32_p)
        batch.seq_id = ctypes.cast(self._seq_ptrs, ctypes.POINTER(int32_p))
        batch.logits = self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))


@dataclass(eq=False)
class _Seq:
    job: Job
    slot: _Slot
    ids: list[int]
    """The prompt's tokens."""
    max_tokens: int
    evaluated: int
    """Prompt tokens evaluated for this request (the rest came from the slot's cache)."""
    watch: Stopwatch
    truncated: bool
    stream: TokenStream | None = None
    """Made when the prompt is in: generation timing starts there."""
    prompt_ms: float = 0.0
    token: int = 0
    """The sampled token the next step evaluates."""
    error: BackendError | None = None

    @property
    def prefilling(self) -> bool:
        return self.stream is None


class LlamaBatchEngine(Engine):
    """Up to ``max_batch`` jobs decoded together in one llama.cpp context, one step at a time;
    waiting jobs join at the next step."""

    def __init__(self, backend: LlamaCppBackend, *, max_queue: int, max_batch: int) -> None:
        import llama_cpp

        self._cpp = llama_cpp
        self._gguf = backend
        slots = max(1, max_batch)
        self._slot_ctx = min(backend.context_length, max(512, POOL_CAP // slots))
        self._pool = self._slot_ctx * slots
        # The backend's own settings (attention kernel, cache types, threads), so a sequence
        # here is computed as it is there; then room for the slots.
        params = llama_cpp.llama_context_params.from_buffer_copy(backend._llm.context_params)
        params.n_ctx = self._pool
        params.n_batch = params.n_ubatch = min(STEP_TOKENS, self._pool)
        params.n_seq_max = slots
        params.kv_unified = False
        params.no_perf = True
        self._ctx = llama_cpp.llama_init_from_model(backend._llm._model.model, params)
        if not self._ctx:
            raise BackendError(
                f"llama.cpp could not make a context of {self._pool} tokens for "
                f"{max_batch} sequences; lower --max-batch or --n-ctx"
            )
        # The backend's own context would sit unused beside this one (for Gemma-3-270M about
        # 150 MB of buffers and its KV cache).
        backend.release_context()
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._step_room = int(params.n_batch)
        self._tokenizer = ThreadPoolExecutor(1, thread_name_prefix="starcoder-ls-tokenize")
        self._rows = _Rows(llama_cpp, self._step_room)
        self._n_vocab = backend._n_vocab
        self._slots = [_Slot(i) for i in range(slots)]
        self._seqs: list[_Seq] = []
        super().__init__(backend, max_queue=max_queue, max_batch=max_batch)
        self.context_length = self._slot_ctx

    def submit(self, job: Job) -> None:
        # The prompt is tokenized on a thread of its own while the model runs (llama.cpp
        # tokenizes without the GIL, as llama-server does on its HTTP threads), not in the
        # step loop, where a 400-token prompt held every sequence up for about 0.8 ms.
        job.prompt_ids = self._tokenizer.submit(self._prompt_ids, job)
        try:
            super().submit(job)
        except BaseException:
            job.prompt_ids.cancel()
            raise

    def _prompt_ids(self, job: Job) -> list[int]:
        """The prompt's ids, token healing done (the job learns what was taken off)."""
        text, job.heal, job.params = healing(self._gguf, job.prompt, job.params)
        return self._gguf.tokenize(text)

    # ---------------------------------------------------------- the worker side

    def _loop(self) -> None:
        try:
            super()._loop()
        finally:  # the model is freed after this thread ends: the context goes first
            self._tokenizer.shutdown(wait=True, cancel_futures=True)
            self._cpp.llama_free(self._ctx)

    def _work(self) -> None:
        free = sum(not slot.busy for slot in self._slots)
        jobs: list[Job] = []
        if free > 0 and (self._waiting or not self._seqs):
            jobs = self._take(free, block=not self._seqs)
        for job in jobs:
            self._admit(job)
        if self._seqs:
            try:
                self._step()
            except Exception as exc:
                self._fail_all(exc)
        if self._stopped:
            for seq in list(self._seqs):
                if seq.stream is not None:
                    seq.stream.cancel()
                self._finish(seq)

    def _cancel_running(self) -> None:
        for seq in self._seqs:
            seq.job.cancel.cancel()

    def _admit(self, job: Job) -> None:
        """Give ``job`` the free slot that holds the most of its prompt, and drop what that
        slot holds beyond the shared start."""
        gguf = self._gguf
        watch = Stopwatch()
        try:
            ids = job.prompt_ids.result() if job.prompt_ids else self._prompt_ids(job)
            if gguf._bos_id is not None and (not ids or ids[0] != gguf._bos_id):
                ids = [gguf._bos_id, *ids]
            if not ids:
                self._done(job, Generation(text="", finish_reason="stop", stop_type="eos"), None)
                return
            whole = len(ids)
            ids, max_tokens = fit_prompt(
                ids, self._slot_ctx, job.params.max_tokens, ids[0] in gguf._special_ids
            )
        except Exception as exc:  # this request's text: it alone fails
            log.exception("preparing a generation failed")
            self._done(job, None, BackendError(f"generation failed: {exc}"))
            return
        free = [slot for slot in self._slots if not slot.busy]

        def fit(slot: _Slot) -> tuple[int, bool, float]:
            # A slot holding at least half of the prompt, the most first (llama-server's
            # similarity rule); otherwise an empty one, then the least recently used.
            shared = common_prefix_len(slot.tokens, ids)
            return (shared if 2 * shared >= len(ids) else 0, not slot.tokens, -slot.used_at)

        slot = max(free, key=fit)
        keep = min(common_prefix_len(slot.tokens, ids), len(ids) - 1)
        self._cpp.llama_memory_seq_rm(self._memory, slot.seq_id, keep, -1)
        del slot.tokens[keep:]
        slot.busy = True
        slot.used_at = time.monotonic()
        self._seqs.append(
            _Seq(job, slot, ids, max_tokens, len(ids) - keep, watch, len(ids) < whole)
        )

    def _step(self) -> None:
        """One ``llama_decode``: each decoding sequence's next token and prompt chunks, in the
        order of the sequences' ids."""
        live = [seq for seq in self._seqs if not seq.job.cancel.cancelled]
        decoding = [seq for seq in live if not seq.prefilling]
        room = self._step_room - len(decoding)
        chunks: list[tuple[_Seq, list[int]]] = []
        for seq in live:
            if seq.prefilling and room > 0:
                start = len(seq.slot.tokens)
                chunk = seq.ids[start : start + room]
                chunks.append((seq, chunk))
                room -= len(chunk)
        # Rows in sequence-id order: with a cache per sequence, llama.cpp splits a batch into
        # runs of consecutive sequence ids, so rows in admission order would be decoded a
        # sequence at a time (and on the matrix-vector path) once slots turn over.
        work: list[tuple[_Seq, list[int]]] = [(seq, [seq.token]) for seq in decoding]
        work.extend(chunks)
        work.sort(key=lambda entry: entry[0].slot.seq_id)
        rows = self._rows
        n = 0
        outputs: list[tuple[_Seq, int]] = []  # sequences with a logits row: their row index
        wanted: list[int] = []  # the rows whose logits are read
        for seq, tokens in work:
            start = len(seq.slot.tokens)
            end = n + len(tokens)
            rows.token[n:end] = tokens
            rows.pos[n:end] = range(start, start + len(tokens))
            rows.seq[n:end] = seq.slot.seq_id
            if not seq.prefilling or start + len(tokens) == len(seq.ids):
                outputs.append((seq, len(outputs)))
                wanted.append(end - 1)
            n = end
        rows.logits[:n] = 0
        rows.logits[wanted] = 1
        if n:
            rows.batch.n_tokens = n
            rc = self._cpp.llama_decode(self._ctx, rows.batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
        if decoding:
            self.stats.batches[len(decoding)] += 1
        done: list[_Seq] = []
        logits, best = self._outputs(len(outputs))
        for seq, tokens in work:
            seq.slot.tokens.extend(tokens)
        for seq, index in outputs:
            if not self._advance(seq, logits[index], best[index]):
                done.append(seq)
        for seq in self._seqs:
            if seq in done:
                continue
            if seq.job.cancel.cancelled:
                if seq.stream is not None:
                    seq.stream.cancel()
                done.append(seq)
            elif (
                seq.prefilling
                and seq.job.params.prompt_ms
                and (seq.watch.ms() > seq.job.params.prompt_ms)
            ):
                done.append(seq)  # t_max_prompt_ms: what was evaluated stays cached
        for seq in done:
            self._finish(seq)

    def _outputs(self, count: int) -> tuple[np.ndarray, list[int]]:
        """The step's logits, a row per token that asked for them (batch order), read in place
        (valid until the next decode), and each row's most likely token: one pass over all
        rows instead of one per sequence."""
        import numpy as np

        if count == 0:
            return np.empty((0, self._n_vocab), dtype=np.float32), []
        pointer = self._cpp.llama_get_logits(self._ctx)
        rows = np.ctypeslib.as_array(pointer, shape=(count, self._n_vocab))
        return rows, rows.argmax(axis=1).tolist()

    def _advance(self, seq: _Seq, logits: np.ndarray, best: int) -> bool:
        """The prompt is in, or one more token was evaluated: pick the next one (``best``, the
        most likely, for a greedy sequence). False once the sequence ended."""
        gguf = self._gguf
        if seq.stream is None:
            seq.prompt_ms = seq.watch.ms()
            if seq.max_tokens == 0:
                return False
            params = seq.job.params
            if params.max_tokens != seq.max_tokens:
                params = replace(params, max_tokens=seq.max_tokens)
            seq.stream = TokenStream(
                gguf._text_of,
                stop_ids=gguf.stop_ids(seq.job.prompt.stop),
                stops=stop_strings(seq.job.prompt.stop, seq.job.params.stop),
                params=params,
                room=self._slot_ctx - len(seq.ids),
                seed=params.seed,
                heal=seq.job.heal,
                index=gguf.token_index() if seq.job.heal else None,
            )
        stream = seq.stream
        token = stream.accept(best) if stream.greedy else stream.push(logits)
        on_text = seq.job.on_text
        if on_text is not None and (piece := stream.new_text()):
            try:
                on_text(piece)
            except Exception as exc:  # the client's callback: this request fails, no other
                log.exception("streaming a generation failed")
                seq.error = BackendError(f"generation failed: {exc}")
                return False
        if token is None:
            return False
        seq.token = token
        return True

    def _finish(self, seq: _Seq) -> None:
        if seq in self._seqs:
            self._seqs.remove(seq)
        seq.slot.busy = False
        seq.slot.used_at = time.monotonic()
        if seq.error is not None:
            self._done(seq.job, None, seq.error)
            return
        stream = seq.stream
        if stream is None:  # ended before its prompt was in (cancelled, or out of time)
            cancelled = seq.job.cancel.cancelled
            generation = Generation(
                text="",
                prompt_tokens=len(seq.ids),
                evaluated_tokens=seq.evaluated,
                latency_ms=seq.watch.ms(),
                finish_reason="cancelled" if cancelled else "length",
                stop_type="none" if cancelled else "limit",
                prompt_ms=seq.prompt_ms or seq.watch.ms(),
                truncated=seq.truncated,
            )
        else:
            result = stream.result()
            generation = Generation(
                text=result.text,
                prompt_tokens=len(seq.ids),
                evaluated_tokens=seq.evaluated,
                completion_tokens=len(result.tokens),
                latency_ms=seq.watch.ms(),
                finish_reason=result.finish_reason,
                stop_type=result.stop_type,
                stopping_word=result.stopping_word,
                prompt_ms=seq.prompt_ms,
                predicted_ms=max(0.0, seq.watch.ms() - seq.prompt_ms),
                truncated=seq.truncated,
            )
        self._done(seq.job, generation, None)

    def _fail_all(self, exc: Exception) -> None:
        """A decode failed: the cache is suspect, so every running job fails and every slot
        starts empty."""
        log.exception("batched llama.cpp generation failed")
        error = BackendError(f"llama.cpp failed to generate: {exc}")
        self._cpp.llama_memory_clear(self._memory, True)
        for slot in self._slots:
            slot.tokens.clear()
        for seq in list(self._seqs):
            self._seqs.remove(seq)
            seq.slot.busy = False
            self._done(seq.job, None, error)

    @property
    def slots(self) -> list[tuple[int, bool]]:
        """(cached tokens, busy) of each slot, for tests and ``/metrics``."""
        return [(len(slot.tokens), slot.busy) for slot in self._slots]
