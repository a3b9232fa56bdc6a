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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from starcoder_ls.backends.base import Stopwatch, TokenStream, fit_prompt, stop_strings
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
        self._joining: list[_Sequence] = []
        """Jobs being prefilled, so that a failure or ``close`` reaches them too."""
        self._cache: Any = None
        """A transformers ``DynamicCache`` with one row per sequence; None when idle."""
        self._width = 0
        """Live columns of the cache: the longest sequence in the batch."""
        super().__init__(backend, max_queue=max_queue, max_batch=max_batch)

    @property
    def cache_size(self) -> tuple[int, int]:
        """(rows, columns) the KV cache holds now: (0, 0) when idle."""
        return len(self._seqs), self._width

    # ---------------------------------------------------------- the worker side

    def _work(self) -> None:
        free = self.max_batch - len(self._seqs)
        jobs: list[Job] = []
        if free > 0 and (self._waiting or not self._seqs):
            # Sleep only when nothing decodes; otherwise take what is waiting and go on.
            jobs = self._take(free, block=not self._seqs)
        with self._torch.inference_mode():
            try:
                if jobs:
                    self._admit(jobs)
                if self._seqs:
                    self._step()
            except Exception as exc:
                self._fail_all(exc)
        if self._stopped:  # closed: the loop ends now, so answer what is left
            left, self._seqs, self._cache, self._width = self._seqs, [], None, 0
            for seq in left:
                seq.stream.cancel()
                self._finish(seq)

    def _cancel_running(self) -> None:
        for seq in [*self._joining, *self._seqs]:
            seq.job.cancel.cancel()

    def _admit(self, jobs: list[Job]) -> None:
        """Prefill new jobs together, pick their first tokens and add those still going to the
        batch."""
        hf = self._hf
        for job in jobs:
            watch = Stopwatch()
            try:
                ids = hf.tokenize(job.prompt.text)
                if not ids:
                    self._done(job, Generation(text="", finish_reason="stop"), None)
                    continue
                ids, max_tokens = fit_prompt(
                    ids, hf.context_length, job.params.max_tokens, ids[0] in hf._special_ids
                )
                if max_tokens == 0:  # nothing to generate; no cache outlives a batch here
                    empty = Generation("", len(ids), 0, finish_reason="length", stop_type="limit")
                    self._done(job, empty, None)
                    continue
                params = job.params
                if params.max_tokens != max_tokens:
                    params = replace(params, max_tokens=max_tokens)
                stream = TokenStream(
                    hf._text_of,
                    stop_ids=hf.stop_ids(job.prompt.stop),
                    stops=stop_strings(job.prompt.stop, job.params.stop),
                    params=params,
                    room=hf.context_length - len(ids),
                    seed=job.params.seed,
                )
            except Exception as exc:  # this request's text or parameters: it alone fails
                log.exception("preparing a generation failed")
                self._done(job, None, BackendError(f"generation failed: {exc}"))
                continue
            self._joining.append(_Sequence(job, stream, ids, watch, length=len(ids)))
        if not self._joining:
            return
        cache, logits = self._prefill(self._joining)
        joined, self._joining = self._joining, []
        rows = [row for row, seq in enumerate(joined) if self._advance(seq, logits[row])]
        if rows:
            self._merge(
                [joined[row] for row in rows],
                _compact(cache, rows, max(joined[row].length for row in rows)),
            )

    def _prefill(self, seqs: list[_Sequence]) -> tuple[Any, np.ndarray]:
        """Run the prompts through the model as one left-padded batch: their cache, and the
        logits after each prompt."""
        from transformers import DynamicCache

        torch, device = self._torch, self._device
        width = max(seq.length for seq in seqs)
        ids = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, width - seq.length :] = torch.tensor(seq.prompt_ids)
        start = torch.tensor([width - seq.length for seq in seqs], device=device)[:, None]
        columns = torch.arange(width, device=device)[None, :]
        cache = DynamicCache()
        out = self._hf.model(
            input_ids=ids.to(device),
            attention_mask=columns >= start,
            position_ids=(columns - start).clamp(min=0),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,  # the next token only: no vocabulary-wide logits per prompt token
        )
        return cache, out.logits[:, -1].float().cpu().numpy()

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
        logits = out.logits[:, -1].float().cpu().numpy()
        rows = []
        for row, seq in enumerate(seqs):
            seq.length += 1
            if seq.job.cancel.cancelled:
                seq.stream.cancel()
                self._finish(seq)
            elif self._advance(seq, logits[row]):
                rows.append(row)
        if len(rows) < len(seqs):
            self._keep(rows)

    def _advance(self, seq: _Sequence, logits: np.ndarray) -> bool:
        """Pick ``seq``'s next token; False once it ended (and its job was answered)."""
        token = seq.stream.push(logits)
        on_text = seq.job.on_text
        if on_text is not None and (piece := seq.stream.new_text()):
            try:
                on_text(piece)
            except Exception as exc:  # the client's callback: this request fails, no other
                log.exception("streaming a generation failed")
                self._done(seq.job, None, BackendError(f"generation failed: {exc}"))
                return False
        if token is None:
            self._finish(seq)
            return False
        seq.token = token
        return True

    def _finish(self, seq: _Sequence) -> None:
        result = seq.stream.result()
        generation = Generation(
            text=result.text,
            prompt_tokens=len(seq.prompt_ids),
            evaluated_tokens=len(seq.prompt_ids),
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
        failed = [*self._joining, *self._seqs]
        self._joining, self._seqs, self._cache, self._width = [], [], None, 0
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
