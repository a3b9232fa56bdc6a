"""Continuous batching for the transformers backend: the team server's throughput engine.

Decoding one sequence at a time leaves the model mostly idle: a step evaluates one token, so its
cost is fixed overhead (Python, kernel launches, reading the weights) far more than arithmetic.
``BatchEngine`` keeps up to ``max_batch`` sequences in one batch and evaluates the next token of
all of them in one model call, so that overhead is paid once per step instead of once per
sequence. Batching is per step, not per request: a job that arrives while others decode is
prefilled and joins at the next step, and a sequence that finishes leaves at once, so no client
waits for the longest generation of its batch.

The batch's KV cache is right-aligned: every row's real tokens end at the last column, and a row
shorter than the longest is padded on its left (masked out). Joining rows (left-pad whichever
side is narrower) and decoding (one new column for every row) keep that shape, so the mask
follows from the row lengths alone, and when rows leave, the leading columns no remaining row
uses are cut: the cache is as wide as the longest live sequence, however many requests went
through. Positions are explicit (the number of real tokens before each one), so padding never
shifts them and a batched sequence sees what it would see alone.

Each sequence keeps its own ``TokenStream``, the rules of the one-at-a-time loop for stops,
sampling and streaming, so batching changes how fast a completion comes, never what it says.
"""

from __future__ import annotations

import functools
import logging
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
    import torch

    from starcoder_ls.backends.hf import TransformersBackend

log = logging.getLogger(__name__)

SPARE_COLUMNS = 32
"""Columns a cache buffer holds beyond its live width, so a decode step writes its column in
place instead of copying the whole cache; the buffer is re-made (with this many spare again)
only when they run out, which also bounds what it holds beyond the live sequences."""


PREFILL_CHUNK = 256
"""Prompt tokens (all joining rows together) one prefill call takes; the batch decodes a step
between two chunks, so a long prompt joining delays the others by one chunk at a time."""
SAVED_ROWS = 16
SAVED_BYTES = 256 << 20
"""Finished sequences' keys and values kept for the next prompts that start the same way: at
most this many, and bytes (least recently used dropped first)."""
REUSE_MIN = 32
"""A kept sequence is used when it holds at least half of a prompt, and this many tokens."""


@dataclass(eq=False)
class _Sequence:
    """One job in the batch: its stream, and what its row of the cache holds."""

    job: Job
    stream: TokenStream
    prompt_ids: list[int]
    watch: Stopwatch
    length: int = 0
    """Real (unpadded) tokens in the cache row: also the position of the next token."""
    token: int = 0
    """The token the next step evaluates."""
    reused: int = 0
    """Prompt tokens whose keys and values came from a kept sequence, not the model."""
    error: BackendError | None = None
    """Set when the job failed on its own (its streaming callback raised)."""

    @property
    def cached_ids(self) -> list[int]:
        """The tokens the row's keys and values are for."""
        return self.prompt_ids + self.stream.tokens[: self.length - len(self.prompt_ids)]


@dataclass(eq=False)
class _Joining:
    """Prompts being prefilled together, a chunk of columns per call: left-padded to the
    longest, or a single row that starts from a kept sequence."""

    seqs: list[_Sequence]
    ids: torch.Tensor
    """(rows, width) prompt ids, right-aligned."""
    pad: torch.Tensor
    """(rows, 1) padding columns before each row's first token."""
    cache: Any
    done: int
    """Columns already in ``cache``."""


@dataclass(eq=False)
class _Kept:
    ids: list[int]
    layers: list[tuple[torch.Tensor, torch.Tensor]] = field(repr=False)
    bytes: int


class BatchEngine(Engine):
    """Decodes up to ``max_batch`` jobs together, one token of every sequence per model call;
    waiting jobs join a running batch at the next step."""

    def __init__(self, backend: TransformersBackend, *, max_queue: int, max_batch: int) -> None:
        import torch

        try:
            _slab_layer()
        except ImportError as exc:  # transformers before its caches were made of layers
            raise BackendError(
                f"continuous batching needs a newer transformers (one with DynamicLayer): {exc}"
            ) from exc
        self._hf = backend
        self._torch = torch
        self._device = torch.device(backend.device)
        from starcoder_ls.kernels.integration import ATTENTION

        self._mask_4d = getattr(backend.model.config, "_attn_implementation", "") in (
            "sdpa",
            ATTENTION,
        )
        """sdpa (and the decode kernel, which takes sdpa's masks) take a ready boolean mask,
        sparing transformers' mask building each step; other attention kinds get the 2D
        padding mask and build their own."""
        self._seqs: list[_Sequence] = []
        """The batch's rows, in cache order."""
        self._joining: list[_Joining] = []
        """Prompts being prefilled, in arrival order."""
        self._kept: list[_Kept] = []
        """Finished sequences' keys and values, least recently used first."""
        self.reused_tokens = 0
        """Prompt tokens taken from kept sequences instead of the model (``/metrics``, tests)."""
        self._cache: Any = None
        """A transformers ``DynamicCache`` with one row per sequence; None when idle."""
        self._width = 0
        """Live columns of the cache: the longest sequence in the batch."""
        super().__init__(backend, max_queue=max_queue, max_batch=max_batch)

    @property
    def cache_size(self) -> tuple[int, int]:
        """(rows, columns) the KV cache holds now: (0, 0) when idle."""
        return len(self._seqs), self._width

    @property
    def prefilling(self) -> list[tuple[int, int]]:
        """(columns in the cache, columns in all) of each group of prompts being prefilled."""
        return [(joining.done, int(joining.ids.shape[1])) for joining in self._joining]

    # ---------------------------------------------------------- the worker side

    def _work(self) -> None:
        free = self.max_batch - len(self._seqs) - sum(len(j.seqs) for j in self._joining)
        jobs: list[Job] = []
        if free > 0 and (self._waiting or not (self._seqs or self._joining)):
            # Sleep only when nothing runs; otherwise take what is waiting and go on.
            jobs = self._take(free, block=not (self._seqs or self._joining))
        with self._torch.inference_mode():
            try:
                if jobs:
                    self._admit(jobs)
                if self._joining:
                    self._prefill_chunk()
                if self._seqs:
                    self._step()
            except Exception as exc:
                self._fail_all(exc)
        if self._stopped:  # closed: the loop ends now, so answer what is left
            left = [*self._joining_seqs(), *self._seqs]
            self._joining, self._seqs, self._cache, self._width = [], [], None, 0
            for seq in left:
                seq.stream.cancel()
                self._finish(seq)

    def _joining_seqs(self) -> list[_Sequence]:
        return [seq for joining in self._joining for seq in joining.seqs]

    def _cancel_running(self) -> None:
        for seq in [*self._joining_seqs(), *self._seqs]:
            seq.job.cancel.cancel()

    def _admit(self, jobs: list[Job]) -> None:
        """Line new jobs up for prefilling: each one that starts like a kept sequence on its
        own, from the kept keys and values; the others together."""
        hf = self._hf
        fresh: list[_Sequence] = []
        for job in jobs:
            watch = Stopwatch()
            try:
                text, heal, params = healing(hf, job.prompt, job.params)
                ids = hf.tokenize(text)
                if not ids:
                    self._done(job, Generation(text="", finish_reason="stop"), None)
                    continue
                ids, max_tokens = fit_prompt(
                    ids, hf.context_length, params.max_tokens, ids[0] in hf._special_ids
                )
                if max_tokens == 0:  # nothing to generate; no cache outlives a batch here
                    empty = Generation("", len(ids), 0, finish_reason="length", stop_type="limit")
                    self._done(job, empty, None)
                    continue
                if params.max_tokens != max_tokens:
                    params = replace(params, max_tokens=max_tokens)
                stream = TokenStream(
                    hf._text_of,
                    stop_ids=hf.stop_ids(job.prompt.stop),
                    stops=stop_strings(job.prompt.stop, job.params.stop),
                    params=params,
                    room=hf.context_length - len(ids),
                    seed=job.params.seed,
                    heal=heal,
                    index=hf.token_index() if heal else None,
                )
            except Exception as exc:  # this request's text or parameters: it alone fails
                log.exception("preparing a generation failed")
                self._done(job, None, BackendError(f"generation failed: {exc}"))
                continue
            seq = _Sequence(job, stream, ids, watch, length=len(ids))
            kept = self._find_kept(ids)
            if kept is None:
                fresh.append(seq)
            else:  # its own group: it starts from the kept keys and values
                seq.reused = min(common_prefix_len(kept.ids, ids), len(ids) - 1)
                self.reused_tokens += seq.reused
                self._joining.append(self._group([seq], kept, seq.reused))
        if fresh:
            self._joining.append(self._group(fresh, None, 0))

    def _group(self, seqs: list[_Sequence], kept: _Kept | None, reused: int) -> _Joining:
        """Prompts to prefill together, right-aligned; with ``kept``, one prompt whose first
        ``reused`` tokens' keys and values are copied from it."""
        from transformers import DynamicCache

        torch = self._torch
        width = max(seq.length for seq in seqs)
        ids = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, width - seq.length :] = torch.tensor(seq.prompt_ids)
        pad = torch.tensor([width - seq.length for seq in seqs], device=self._device)[:, None]
        cache = DynamicCache()
        if kept is not None:
            slab = _slab_layer()
            cache.layers = [slab(k[:, :, :reused], v[:, :, :reused]) for k, v in kept.layers]
        return _Joining(seqs, ids, pad, cache, reused)

    def _prefill_chunk(self) -> None:
        """Run the next columns of the oldest joining prompts through the model; once they are
        all in, pick each row's first token and add the rows still going to the batch."""
        torch, device = self._torch, self._device
        joining = self._joining[0]
        seqs = joining.seqs
        if all(seq.job.cancel.cancelled for seq in seqs):
            self._joining.pop(0)
            for seq in seqs:
                seq.stream.cancel()
                self._finish(seq)
            return
        width = joining.ids.shape[1]
        end = min(width, joining.done + max(16, PREFILL_CHUNK // len(seqs)))
        columns = torch.arange(end, device=device)[None, :]
        out = self._hf.model(
            input_ids=joining.ids[:, joining.done : end].to(device),
            attention_mask=columns >= joining.pad,
            position_ids=(columns[:, joining.done :] - joining.pad).clamp(min=0),
            past_key_values=joining.cache,
            use_cache=True,
            logits_to_keep=1,  # the next token only: no vocabulary-wide logits per prompt token
        )
        joining.done = end
        if end < width:
            return
        self._joining.pop(0)
        rows, ended = self._pick(seqs, out.logits[:, -1].float().cpu().numpy())
        self._keep_rows(joining.cache, [seqs[row] for row in ended], ended)
        if rows:
            self._merge(
                [seqs[row] for row in rows],
                _compact(joining.cache, rows, max(seqs[row].length for row in rows)),
            )
        for row in ended:
            self._finish(seqs[row])

    def _pick(self, seqs: list[_Sequence], logits: np.ndarray) -> tuple[list[int], list[int]]:
        """Each row's next token: the rows going on, and those that ended (cancelled, or
        their stream is over), whose jobs the caller answers once the cache is trimmed."""
        rows, ended = [], []
        for row, seq in enumerate(seqs):
            if seq.job.cancel.cancelled:
                seq.stream.cancel()
                ended.append(row)
            elif self._advance(seq, logits[row]):
                rows.append(row)
            else:
                ended.append(row)
        return rows, ended

    def _merge(
        self, rows: list[_Sequence], layers: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> None:
        """Add prefilled rows to the batch, left-padding whichever cache is narrower."""
        width = max(seq.length for seq in rows)
        if self._cache is not None:
            pad = self._torch.nn.functional.pad
            old_pad, new_pad = max(0, width - self._width), max(0, self._width - width)
            joined = []
            for layer, (keys, values) in zip(self._cache.layers, layers, strict=True):
                old_k, old_v = (
                    pad(layer.keys, (0, 0, old_pad, 0)),
                    pad(layer.values, (0, 0, old_pad, 0)),
                )
                new_k, new_v = pad(keys, (0, 0, new_pad, 0)), pad(values, (0, 0, new_pad, 0))
                joined.append((self._torch.cat((old_k, new_k)), self._torch.cat((old_v, new_v))))
            layers, width = joined, max(width, self._width)
        self._install(layers, width)
        self._seqs = self._seqs + rows

    def _install(self, layers: list[tuple[torch.Tensor, torch.Tensor]], width: int) -> None:
        """Make these compact keys and values the batch's cache, each in a buffer with spare
        columns for the steps to come."""
        from transformers import DynamicCache

        slab = _slab_layer()
        self._cache = DynamicCache()
        self._cache.layers = [slab(keys, values) for keys, values in layers]
        self._width = width

    def _step(self) -> None:
        """One model call: the next token of every sequence."""
        torch, device, seqs = self._torch, self._device, self._seqs
        width = self._width + 1
        lengths = torch.tensor([seq.length for seq in seqs], device=device)[:, None]
        mask = torch.arange(width, device=device)[None, :] >= width - 1 - lengths
        self.stats.batches[len(seqs)] += 1
        out = self._hf.model(
            input_ids=torch.tensor([[seq.token] for seq in seqs], device=device),
            attention_mask=mask[:, None, None, :] if self._mask_4d else mask,
            position_ids=lengths,
            past_key_values=self._cache,
            use_cache=True,
        )
        self._width = width
        for seq in seqs:
            seq.length += 1
        rows, ended = self._pick(seqs, out.logits[:, -1].float().cpu().numpy())
        if ended:
            self._keep_rows(self._cache, [seqs[row] for row in ended], ended)
            self._keep(rows)
            for row in ended:
                self._finish(seqs[row])

    def _find_kept(self, ids: list[int]) -> _Kept | None:
        """The kept sequence sharing the longest start with ``ids``, if it is worth using."""
        best, shared = None, 0
        for kept in self._kept:
            n = common_prefix_len(kept.ids, ids)
            if n > shared:
                best, shared = kept, n
        if best is None or shared < REUSE_MIN or 2 * shared < len(ids):
            return None
        self._kept.remove(best)
        self._kept.append(best)  # most recently used last
        return best

    def _keep_rows(self, cache: Any, seqs: list[_Sequence], rows: list[int]) -> None:
        """Keep these finished rows' keys and values (right-aligned in ``cache``) for prompts
        to come, dropping the least recently used beyond ``SAVED_ROWS`` / ``SAVED_BYTES``."""
        for seq, row in zip(seqs, rows, strict=True):
            ids = seq.cached_ids
            if len(ids) < REUSE_MIN:
                continue
            layers = _compact(cache, [row], len(ids))
            size = sum(k.numel() * k.element_size() * 2 for k, _ in layers)
            # A kept sequence this one starts with has nothing more to give.
            self._kept = [k for k in self._kept if ids[: len(k.ids)] != k.ids]
            self._kept.append(_Kept(ids, layers, size))
        while self._kept and (
            len(self._kept) > SAVED_ROWS or sum(k.bytes for k in self._kept) > SAVED_BYTES
        ):
            self._kept.pop(0)

    def _advance(self, seq: _Sequence, logits: np.ndarray) -> bool:
        """Pick ``seq``'s next token; False once it ended."""
        token = seq.stream.push(logits)
        on_text = seq.job.on_text
        if on_text is not None and (piece := seq.stream.new_text()):
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

    def _finish(self, seq: _Sequence) -> None:
        if seq.error is not None:
            self._done(seq.job, None, seq.error)
            return
        result = seq.stream.result()
        generation = Generation(
            text=result.text,
            prompt_tokens=len(seq.prompt_ids),
            evaluated_tokens=len(seq.prompt_ids) - seq.reused,
            completion_tokens=len(result.tokens),
            latency_ms=seq.watch.ms(),
            finish_reason=result.finish_reason,
            stop_type=result.stop_type,
            stopping_word=result.stopping_word,
        )
        self._done(seq.job, generation, None)

    def _keep(self, rows: list[int]) -> None:
        """Keep these rows of the batch (the others' jobs were answered), cutting the columns no
        remaining row uses: the cache holds live sequences only."""
        if not rows:
            self._seqs, self._cache, self._width = [], None, 0
            return
        self._seqs = [self._seqs[row] for row in rows]
        width = max(seq.length for seq in self._seqs)
        self._install(_compact(self._cache, rows, width), width)

    def _fail_all(self, exc: Exception) -> None:
        """A model call failed (out of memory, a device error): the batch's cache is suspect, so
        every job in it fails, and the engine starts clean with the next ones."""
        if isinstance(exc, RuntimeError):
            error = BackendError(f"the transformers model failed to generate: {exc}")
        else:
            log.exception("batched generation failed")
            error = BackendError(f"generation failed: {exc}")
        failed = [*self._joining_seqs(), *self._seqs]
        self._joining, self._seqs, self._cache, self._width = [], [], None, 0
        self._kept = []
        for seq in failed:
            self._done(seq.job, None, error)


def _compact(cache: Any, rows: list[int], width: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's keys and values for ``rows`` over the last ``width`` columns, as new
    tensors: a view would keep the dropped rows and columns in memory."""
    import torch

    index = torch.tensor(rows, device=cache.layers[0].keys.device)
    out = []
    for layer in cache.layers:
        start = layer.keys.shape[-2] - width
        out.append(
            (
                layer.keys[:, :, start:].index_select(0, index),
                layer.values[:, :, start:].index_select(0, index),
            )
        )
    return out


@functools.cache
def _slab_layer() -> type:
    """The cache layer class of the batch, made on first use so that importing this module
    does not import transformers."""
    from transformers.cache_utils import DynamicLayer

    class SlabLayer(DynamicLayer):
        """A ``DynamicLayer`` whose tensors are views of buffers with spare columns: the
        model's ``update`` writes a step's column in place instead of concatenating."""

        def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
            super().__init__()
            self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
            self._live = keys.shape[-2]
            self._keys = _with_spare(keys, self._live)
            self._values = _with_spare(values, self._live)
            self.keys, self.values = (
                self._keys[:, :, : self._live],
                self._values[:, :, : self._live],
            )

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            start, end = self._live, self._live + key_states.shape[-2]
            if end > self._keys.shape[-2]:
                self._keys = _with_spare(self._keys, start, end - start)
                self._values = _with_spare(self._values, start, end - start)
            self._keys[:, :, start:end] = key_states
            self._values[:, :, start:end] = value_states
            self._live = end
            self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
            return self.keys, self.values

    return SlabLayer


def _with_spare(tensor: torch.Tensor, live: int, more: int = 0) -> torch.Tensor:
    """A new buffer holding the first ``live`` columns of ``tensor``, with room for ``more``
    plus ``SPARE_COLUMNS``."""
    batch, heads, _, dim = tensor.shape
    buffer = tensor.new_empty((batch, heads, live + more + SPARE_COLUMNS, dim))
    buffer[:, :, :live] = tensor[:, :, :live]
    return buffer
