"""In-process generation from any GGUF file through llama-cpp-python (the offline laptop case).

The prompt is tokenized here with special tokens parsed and evaluated token by token through
``Llama.eval``, instead of ``create_completion``: its ``suffix=`` FIM path is broken in 0.3.x,
and owning the loop is what allows stopping on the family's end tokens by id, noticing a
cancellation between tokens, and keeping the KV cache between requests.

KV reuse: consecutive completion requests share most of their prompt (the user typed one more
character). ``Llama.eval`` starts by removing every KV entry at or after ``Llama.n_tokens`` and
records what it evaluated in ``Llama.input_ids``, so setting ``n_tokens`` to the length of the
common prefix of the old and new token ids and evaluating only the rest reuses the cache
exactly; ``Generation.evaluated_tokens`` reports that rest.

Leaving and coming back: a request that shares less than half of the cached prompt goes
somewhere else (another file, another part of this one). Before its prompt overwrites the
cache, the cached sequence's KV is copied out (``llama_state_seq_get_data``; the KV only, not
llama-cpp-python's logits table), and the saved sequence that shares the most with the new
prompt, if it beats the live cache, is copied back in. A few sequences are kept (llama-server's
``--cache-ram``, in small), so switching between files costs what changed there, not a whole
prompt.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from starcoder_ls.backends.base import (
    TokenLoopBackend,
    common_prefix_len,
    utf8_complete,
)
from starcoder_ls.types import BackendError, CancelToken

if TYPE_CHECKING:
    import numpy as np
    from llama_cpp import Llama

DEFAULT_MAX_CTX = 8192
"""Context used when none is configured, if the model was trained for more (memory bound)."""
PROMPT_CHUNK = 128
"""Prompt tokens evaluated between two looks at the cancel token."""
SAVED_SEQUENCES = 4
SAVED_BYTES = 256 << 20
"""At most this many sequences, and bytes, of saved KV (least recently used dropped first)."""
SAVE_MIN_TOKENS = 64
"""Shorter cached prompts are cheaper to evaluate again than to keep."""
_SHORT_TEXTS = 1 << 16
"""Texts of one- and two-token runs kept for rendering (cleared when full)."""


@dataclass
class _Saved:
    """One sequence's KV, as llama.cpp serialises it, and the token ids it holds."""

    ids: list[int]
    data: bytes


class LlamaCppBackend(TokenLoopBackend):
    """One GGUF model in this process; one generation at a time (llama.cpp contexts are not
    re-entrant), with the KV cache carried from one request to the next."""

    name = "llamacpp"

    def __init__(self, path: str | Path, *, n_ctx: int = 0, n_threads: int = 0) -> None:
        from starcoder_ls.backends.gguf import GGUFError, check_gguf_file, load_gguf

        path = Path(path).expanduser()
        try:
            check_gguf_file(path)
            trained = _trained_context(path)
        except GGUFError as exc:
            raise BackendError(str(exc)) from exc
        # Learned absolute positions (StarCoder) make llama.cpp abort the whole process past the
        # trained context, so the configured context can only shrink it.
        limit = trained or n_ctx or DEFAULT_MAX_CTX
        self.context_length = min(n_ctx or min(limit, DEFAULT_MAX_CTX), limit)
        threads = self.threads = n_threads or default_threads()
        try:
            self._llm: Llama = load_gguf(
                path,
                n_ctx=self.context_length,
                n_batch=min(512, self.context_length),
                n_threads=threads,
                # Prompt evaluation too: llama-cpp-python's default is every logical CPU, whose
                # threads wait for each other at every layer (stalls of 100+ ms were measured
                # for a 3-token prompt while other processes kept one of 2 cores busy).
                n_threads_batch=threads,
                # llama.cpp's fused attention, which llama-server also picks on CPUs: fewer,
                # faster kernels per layer (about a tenth off a batched decoding step here).
                flash_attn=True,
            )
        except GGUFError as exc:
            raise BackendError(str(exc)) from exc
        except Exception as exc:  # llama-cpp-python raises bare errors for odd files
            raise BackendError(f"llama.cpp cannot load {path}: {exc}") from exc
        self.model_id = str(path)
        self.path = path
        self._lock = threading.Lock()
        """Held for a whole generation: a llama.cpp context runs one sequence at a time."""
        self._tokenizer_lock = threading.Lock()
        """Held while tokenizing, which may run beside a generation but not beside ``close``."""
        self._last_tokens: tuple[str, tuple[int, ...]] | None = None
        self._closed = False
        self._released = False
        self._n_vocab = int(self._llm.n_vocab())
        self._special_ids, self._end_ids = self._special_tokens()
        self._bos_id = self._sequence_start()
        self._stop_id_cache: dict[tuple[str, ...], frozenset[int]] = {}
        self._short_texts: dict[tuple[int, ...], str] = {}
        self._saved: list[_Saved] = []
        """Saved sequences, least recently used first."""
        self.restored = 0
        """Requests that started from a saved sequence (tests and benchmarks read it)."""

    # ------------------------------------------------------------------ tokens

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` with special tokens (``<fim_prefix>``...) parsed as such.

        The last text's ids are kept: a prompt is counted to fit it and then generated from,
        and the second tokenization of the same text costs nothing."""
        with self._tokenizer_lock:
            self._check_open()
            last = self._last_tokens
            if last is not None and last[0] == text:
                return list(last[1])
            ids = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            self._last_tokens = (text, tuple(ids))
            return list(ids)

    def _check_open(self) -> None:
        # Past close() the model's memory is freed: touching it would crash the process.
        if self._closed:
            raise BackendError(f"the llamacpp backend for {self.path} was closed")

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text)) if text else 0

    def _special_tokens(self) -> tuple[frozenset[int], frozenset[int]]:
        """Control tokens (sentinels such as ``<fim_prefix>``) and, among all tokens, those
        llama.cpp itself treats as the end of a generation (EOS, EOT, FIM pad, file separator)."""
        import llama_cpp

        vocab = self._llm._model.vocab
        control = [i for i in range(self._n_vocab) if llama_cpp.llama_vocab_is_control(vocab, i)]
        end = [i for i in range(self._n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)]
        return frozenset(control), frozenset(end)

    def _sequence_start(self) -> int | None:
        """BOS when the GGUF says its tokenizer adds one (``tokenizer.ggml.add_bos_token``)."""
        import llama_cpp

        vocab = self._llm._model.vocab
        if not llama_cpp.llama_vocab_get_add_bos(vocab):
            return None
        bos = int(llama_cpp.llama_vocab_bos(vocab))
        return bos if 0 <= bos < self._n_vocab else None

    def stop_ids(self, stops: tuple[str, ...]) -> frozenset[int]:
        """The family's stop strings that are single special tokens, plus the model's own
        end-of-generation tokens: these end a generation by id, before any text is decoded."""
        cached = self._stop_id_cache.get(stops)
        if cached is None:
            ids = set(self._end_ids)
            for s in stops:
                found = self.tokenize(s)
                if len(found) == 1 and found[0] in self._special_ids:
                    ids.add(found[0])
            cached = self._stop_id_cache[stops] = frozenset(ids)
        return cached

    # -------------------------------------------------------------- generation

    def _failed(self, exc: RuntimeError) -> BackendError:
        # llama_decode failed: the cache state is unknown.
        self._llm.reset()
        return BackendError(f"llama.cpp failed to evaluate the prompt: {exc}")

    def _evaluate_prompt(
        self, ids: list[int], cancel: CancelToken
    ) -> tuple[int, np.ndarray | None]:
        """Evaluate what the KV cache lacks of ``ids``; the logits after the last one, or None
        when cancelled (the cache then holds a valid prefix for the next request)."""
        if self._released:
            raise BackendError(
                f"the llamacpp backend for {self.path} handed its context to another engine"
            )
        llm = self._llm
        cached = llm.input_ids[: llm.n_tokens].tolist()
        common = common_prefix_len(cached, ids)
        if common < len(cached) / 2:  # going elsewhere: keep this sequence for a return
            self._save(cached)
            best = max(self._saved, key=lambda s: common_prefix_len(s.ids, ids), default=None)
            if best is not None and common_prefix_len(best.ids, ids) > common + SAVE_MIN_TOKENS:
                common = self._restore(best, ids)
        # At least the last token is evaluated again: its logits are what the first new token
        # is picked from, and only the last evaluated position's logits are kept.
        keep = min(common, len(ids) - 1)
        llm.n_tokens = keep
        for start in range(keep, len(ids), PROMPT_CHUNK):
            if cancel.cancelled:
                return llm.n_tokens - keep, None
            llm.eval(ids[start : start + PROMPT_CHUNK])
        return len(ids) - keep, self._last_logits()

    def _save(self, ids: list[int]) -> None:
        """Copy the cached sequence's KV out (unless it is short, or already saved)."""
        import llama_cpp

        if len(ids) < SAVE_MIN_TOKENS:
            return
        for i, saved in enumerate(self._saved):
            if saved.ids == ids:
                self._saved.append(self._saved.pop(i))
                return
        ctx = self._llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0)
        if not 0 < written <= size:
            return
        # A saved prefix of this sequence is worth nothing beside it.
        self._saved = [s for s in self._saved if ids[: len(s.ids)] != s.ids]
        self._saved.append(_Saved(list(ids), ctypes.string_at(buffer, written)))
        while len(self._saved) > SAVED_SEQUENCES or (
            len(self._saved) > 1 and sum(len(s.data) for s in self._saved) > SAVED_BYTES
        ):
            self._saved.pop(0)

    def _restore(self, saved: _Saved, ids: list[int]) -> int:
        """Put ``saved`` back in the cache; how much of ``ids`` it holds (0 if it failed)."""
        import llama_cpp

        llm = self._llm
        ctx = llm._ctx.ctx
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), 0, -1, -1)
        buffer = (ctypes.c_uint8 * len(saved.data)).from_buffer_copy(saved.data)
        if llama_cpp.llama_state_seq_set_data(ctx, buffer, len(saved.data), 0) != len(saved.data):
            llm.n_tokens = 0
            llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), 0, -1, -1)
            return 0
        llm.input_ids[: len(saved.ids)] = saved.ids
        llm.n_tokens = len(saved.ids)
        self._saved.remove(saved)
        self._saved.append(saved)
        self.restored += 1
        return common_prefix_len(saved.ids, ids)

    def _last_logits(self) -> np.ndarray:
        import numpy as np

        pointer = self._llm._ctx.get_logits_ith(-1)
        return np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).copy()

    def _step(self, token: int) -> np.ndarray:
        self._llm.eval([token])
        return self._last_logits()

    def _token_texts(self) -> list[str]:
        import ctypes

        import llama_cpp

        vocab = self._llm._model.vocab
        buf = ctypes.create_string_buffer(256)
        texts: list[str] = []
        for i in range(self._n_vocab):
            if i in self._special_ids or i in self._end_ids:
                texts.append("")
                continue
            n = llama_cpp.llama_token_to_piece(vocab, i, buf, len(buf), 0, False)
            try:
                texts.append(buf.raw[: max(0, n)].decode("utf-8"))
            except UnicodeDecodeError:  # a byte of a character, not a character
                texts.append("")
        return texts

    def _text_of(self, ids: list[int]) -> str:
        # A decoding step renders its newest one or two tokens (``TokenStream``): the texts of
        # such short runs are kept, since the same ones come back all the time and each
        # rendering is a call into llama.cpp.
        if len(ids) > 2:
            return utf8_complete(bytes(self._llm.detokenize(ids, special=True)))
        key = tuple(ids)
        text = self._short_texts.get(key)
        if text is None:
            if len(self._short_texts) >= _SHORT_TEXTS:
                self._short_texts.clear()
            text = self._short_texts[key] = utf8_complete(
                bytes(self._llm.detokenize(ids, special=True))
            )
        return text

    def release_context(self) -> None:
        """Free this backend's llama.cpp context (its KV cache, saved sequences and compute
        buffers), keeping the model, its tokenizer and its settings: for an engine that runs the
        model in contexts of its own. Generating here afterwards is an error."""
        with self._lock:
            self._released = True
            self._saved.clear()
            self._llm._ctx.close()

    def close(self) -> None:
        with self._lock, self._tokenizer_lock:
            if not self._closed:
                self._closed = True
                self._llm.close()


def _trained_context(path: Path) -> int:
    """``<arch>.context_length`` from the GGUF metadata (read with the vocabulary only, which
    is fast), 0 when the file does not say."""
    from starcoder_ls.backends.gguf import load_gguf

    probe = load_gguf(path, n_ctx=512, vocab_only=True)
    try:
        arch = probe.metadata.get("general.architecture", "")
        value = probe.metadata.get(f"{arch}.context_length", "")
    finally:
        probe.close()
    return int(value) if str(value).isdigit() else 0


def default_threads() -> int:
    """Half the logical CPUs, about the physical cores: llama.cpp's own default, because its
    threads meet at a barrier after every layer, and a hyper-thread sibling or a core busy with
    other work stalls them all (seconds per token were measured with every core in use)."""
    return max(1, (os.cpu_count() or 2) // 2)
