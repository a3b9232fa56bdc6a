"""Generation with a transformers model (an HF folder or a hub id) on cpu, cuda or mps.

The loop is ours rather than ``model.generate``: it keeps ``past_key_values`` between requests
(consecutive prompts share their start, so only the tokens after the common prefix are run
through the model), stops on the family's end tokens by id, and looks at the cancel token
between tokens. The module is called ``hf`` so it cannot shadow the ``transformers`` package.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from starcoder_ls.backends.base import (
    TokenLoopBackend,
    common_prefix_len,
)
from starcoder_ls.types import BackendError, CancelToken

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

PROMPT_CHUNK = 256
"""Prompt tokens run through the model between two looks at the cancel token."""
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length")


class TransformersBackend(TokenLoopBackend):
    """One transformers model; one generation at a time, the KV cache kept between them."""

    name = "transformers"

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        n_ctx: int = 0,
        n_threads: int = 0,
        kernels: str = "auto",
        quantize: str = "none",
    ) -> None:
        """``n_threads`` > 0 sets torch's CPU thread count (process-wide: torch has one pool);
        a small model decodes faster on one thread than on several contended ones.

        ``kernels`` (auto, on, off) chooses between the Triton kernels and the PyTorch
        reference path, ``quantize`` (none, int4) packs the linear layers to 4 bits; see
        ``starcoder_ls.kernels.integration``."""
        import torch

        local = Path(model).expanduser()
        source = str(local) if local.exists() else model
        self.device = resolve_device(device)
        if n_threads > 0 and self.device == "cpu":
            torch.set_num_threads(n_threads)
        self.dtype = resolve_dtype(dtype, self.device)
        tokenizer, loaded = load_pretrained(model, getattr(torch, self.dtype))
        self.tokenizer: Any = tokenizer
        # Prompts are fitted to the context here (``fit_prompt``); the tokenizer's own limit
        # would only log a warning about long texts that are cut before the model sees them.
        self.tokenizer.model_max_length = 1 << 62
        self.model: Any = cast(Any, loaded)  # transformers' decorated ``to`` confuses mypy
        self.kernels = self._prepare(kernels, quantize)
        self.model.to(torch.device(self.device)).eval()
        trained = next(
            (
                int(v)
                for k in _CONTEXT_KEYS
                if isinstance(v := getattr(self.model.config, k, None), int)
            ),
            2048,
        )
        self.context_length = min(n_ctx, trained) if n_ctx > 0 else trained
        self.model_id = source
        self._vocab: dict[str, int] = dict(self.tokenizer.get_vocab())
        added = getattr(self.tokenizer, "added_tokens_decoder", {}) or {}
        self._special_ids = frozenset(self.tokenizer.all_special_ids) | frozenset(
            int(i) for i, token in added.items() if getattr(token, "special", False)
        )
        self._end_ids = frozenset(_end_ids(self.model, self.tokenizer))
        self._bos_id = _sequence_start(self.tokenizer)
        self._lock = threading.Lock()
        self._cache: Any = None
        self._cached_ids: list[int] = []

    def _prepare(self, kernels: str, quantize: str) -> Any:
        """Kernels and quantization, before the model moves to its device: packing layer by
        layer from the CPU copy is what lets a model larger than the GPU in half precision
        load in 4-bit. Returns the ``KernelReport``."""
        from starcoder_ls.kernels.integration import KernelError, prepare_model

        try:
            report = prepare_model(self.model, device=self.device, mode=kernels, quantize=quantize)
        except (KernelError, ValueError) as exc:
            raise BackendError(str(exc)) from exc
        if self.device == "cuda" and kernels == "auto" and not report.attention:
            log.warning("transformers backend on a GPU without its kernels: %s", report.reason)
        else:
            log.info("transformers backend: %s", report.summary())
        if quantize == "int4" and not report.int4_kernel:
            log.warning(
                "int4 weights without the Triton kernels are dequantized at every step (slow); "
                "on a CPU the llamacpp backend with a 4-bit GGUF is the fast way"
            )
        return report

    # ------------------------------------------------------------------ tokens

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text)) if text else 0

    def stop_ids(self, stops: tuple[str, ...]) -> frozenset[int]:
        """The family's stop strings that are special tokens of this vocabulary, plus the
        model's own end-of-sequence ids."""
        found = {
            self._vocab[s]
            for s in stops
            if s in self._vocab and self._vocab[s] in self._special_ids
        }
        return self._end_ids | found

    # -------------------------------------------------------------- generation

    def _failed(self, exc: RuntimeError) -> BackendError:
        # Out of memory, device errors: the cache is suspect.
        self._cache, self._cached_ids = None, []
        return BackendError(f"the transformers model failed to generate: {exc}")

    def _evaluate_prompt(
        self, ids: list[int], cancel: CancelToken
    ) -> tuple[int, np.ndarray | None]:
        keep = min(common_prefix_len(self._cached_ids, ids), len(ids) - 1)
        self._truncate_cache(keep)
        logits = None
        for start in range(keep, len(ids), PROMPT_CHUNK):
            if cancel.cancelled:
                return len(self._cached_ids) - keep, None
            logits = self._forward(ids[start : start + PROMPT_CHUNK])
        return len(ids) - keep, logits

    def _truncate_cache(self, keep: int) -> None:
        """Drop cached positions from ``keep`` on; a cache that cannot be cut is dropped whole
        (sliding-window caches past their window, or an unexpected cache type)."""
        drop = len(self._cached_ids) - keep
        if drop <= 0:
            return
        try:
            self._cache.crop(-drop)  # negative: remove this many (transformers 4.x and 5.x)
        except (AttributeError, RuntimeError, ValueError):
            self._cache = None
            self._cached_ids = []
            return
        del self._cached_ids[keep:]

    def _forward(self, ids: list[int]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model(
                torch.tensor([ids], device=self.device),
                past_key_values=self._cache,
                use_cache=True,
                logits_to_keep=1,  # only the next token's: not a vocabulary row per prompt token
            )
        self._cache = out.past_key_values
        self._cached_ids.extend(ids)
        return out.logits[0, -1].float().cpu().numpy()

    def _step(self, token: int) -> np.ndarray:
        return self._forward([token])

    def _token_texts(self) -> list[str]:
        """Through ``convert_tokens_to_string``, which renders a byte-level token's bytes;
        SentencePiece's word-start mark is a space in the middle of a sequence."""
        tok = self.tokenizer
        size = max(len(tok), self.model.get_input_embeddings().weight.shape[0])
        texts: list[str] = []
        for i in range(size):
            piece = tok.convert_ids_to_tokens(i) if i < len(tok) else None
            if piece is None or i in self._special_ids or i in self._end_ids:
                texts.append("")
                continue
            text = str(tok.convert_tokens_to_string([piece]))
            if piece.startswith("\u2581") and not text.startswith(" "):
                text = " " + text
            texts.append("" if "\ufffd" in text else text)
        return texts

    def _text_of(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=False))

    def close(self) -> None:
        with self._lock:
            self._cache = None
            self._cached_ids = []


def load_pretrained(model: str, dtype: Any) -> tuple[Any, Any]:
    """(tokenizer, model) for a ``model`` setting of the transformers backend:

    * a Hugging Face folder, or a hub id;
    * a GGUF file, dequantized by transformers (for the architectures it reads);
    * a LoRA adapter folder (``adapter_config.json``, as ``recipe adapt --lora`` writes): its
      base model is loaded, the embeddings grown to the adapter's tokenizer where it added
      tokens, and the adapter merged in memory, so it decodes as fast as the merged model.
      The files on disk stay as they are.
    """
    local = Path(model).expanduser()
    adapter = (local / "adapter_config.json").is_file() and not (local / "config.json").is_file()
    if local.is_dir() and adapter:
        return _load_adapter(local, dtype)
    if local.is_file():
        return load_gguf_model(local, dtype)
    if local.exists() and not (local / "config.json").is_file():
        raise BackendError(
            f"{local} is not a Hugging Face model folder (no config.json), a LoRA adapter "
            "(no adapter_config.json) or a GGUF file"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = str(local) if local.exists() else model
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local.exists())
        loaded = AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, local_files_only=local.exists()
        )
    except Exception as exc:  # OSError, ValueError, HTTP errors: all mean "cannot load"
        raise BackendError(f"cannot load the transformers model {model!r}: {exc}") from exc
    return tokenizer, loaded


def load_gguf_model(path: Path, dtype: Any) -> tuple[Any, Any]:
    """A GGUF file as a transformers model with plain float weights (and its tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from starcoder_ls.backends.gguf import GGUFError, check_gguf_file

    try:
        check_gguf_file(path)
    except GGUFError as exc:
        raise BackendError(str(exc)) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    except Exception as exc:  # transformers' GGUF reader raises many kinds; all mean the same
        raise BackendError(
            f"transformers cannot read {path.name} as a model ({exc}); give the model's "
            "Hugging Face folder instead"
        ) from None
    # The tensors are dequantized floats now; the GGUF mark would stop save_pretrained and
    # make peft treat the model as a quantized one.
    loaded.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(loaded.config, "quantization_config"):
        del loaded.config.quantization_config
    return tokenizer, loaded


def _load_adapter(folder: Path, dtype: Any) -> tuple[Any, Any]:
    import json

    from transformers import AutoTokenizer

    try:
        from peft import PeftModel
    except ImportError:
        raise BackendError(
            f"{folder} is a LoRA adapter; serving one needs peft (pip install 'starcoder-ls[recipe]')"
        ) from None
    try:
        base = str(
            json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackendError(
            f"{folder}/adapter_config.json does not name its base model ({exc})"
        ) from None
    tokenizer, model = load_pretrained(_adapter_base(folder, base), dtype)
    if (folder / "tokenizer_config.json").is_file():  # the adapter's, with any tokens it added
        tokenizer = AutoTokenizer.from_pretrained(folder)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    try:
        adapted = PeftModel.from_pretrained(model, str(folder))
    except Exception as exc:  # a mismatched base or a damaged file
        raise BackendError(f"cannot apply the adapter {folder} to {base}: {exc}") from exc
    return tokenizer, adapted.merge_and_unload()


def _adapter_base(folder: Path, base: str) -> str:
    """Where an adapter's base lives: a path (absolute, or relative to the adapter), a model
    name this package knows (``default``, a pulled registry name), else a hub id."""
    for candidate in (Path(base).expanduser(), folder / base):
        if candidate.exists():
            return str(candidate)
    from starcoder_ls.backends import gguf_for

    try:
        known = Path(gguf_for("" if base == "default" else base))
    except BackendError:
        return base
    return str(known) if known.is_file() else base


def resolve_device(device: str) -> str:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is absent is an error
    the user should see rather than a silent fallback to a much slower one."""
    import torch

    has_mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendError("device is cuda but torch sees no CUDA GPU (is this a CPU-only torch?)")
    if device == "mps" and not has_mps:
        raise BackendError("device is mps but this torch build or machine has no Metal support")
    if device not in ("cpu", "cuda", "mps"):
        raise BackendError(f"unknown device {device!r}; use auto, cpu, cuda or mps")
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto``: half precision on GPUs (bfloat16 where supported), float32 on CPU, where half
    precision kernels are slow or missing."""
    if dtype != "auto":
        if dtype not in ("float32", "float16", "bfloat16"):
            raise BackendError(f"unknown dtype {dtype!r}; use auto, float32, float16 or bfloat16")
        return dtype
    if device == "cuda":
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float16" if device == "mps" else "float32"


def _sequence_start(tokenizer: Any) -> int | None:
    """The BOS id when the tokenizer puts one before every text (Gemma, Llama), else None."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return None
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    return int(bos) if with_special and with_special[0] == bos else None


def _end_ids(model: Any, tokenizer: Any) -> set[int]:
    """End-of-sequence ids from the generation config and the tokenizer (either may be absent,
    an int or a list)."""
    ids: set[int] = set()
    config = getattr(model, "generation_config", None)
    for value in (getattr(config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids
