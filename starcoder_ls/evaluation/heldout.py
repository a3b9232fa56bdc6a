"""Held-out line infilling for any model with FIM tokens: our runs, HF folders, GGUF files.

Two measurements, so a user can put one model next to another:

* perplexity of held-out files (plain left-to-right, each window starts after an end-of-text);
* single-line FIM exact match: a deterministic sample of non-blank held-out lines is hidden,
  the model gets the prefix and suffix, and its first generated line must equal the hidden one
  (trailing whitespace ignored). Beside it, two baselines that need no model: an empty line,
  and a repeat of the previous non-blank line. Edit similarity is reported as well.

Prompts are built from token ids, so a HF model and a GGUF file of the same weights see exactly
the same input. The recipe evaluates its checkpoints through this module; nothing here imports
the recipe.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from starcoder_ls.types import UserError


class EvaluationError(UserError):
    """An evaluation cannot run: a model without FIM tokens, nothing to measure on, ..."""


# Sentinel spellings by family: StarCoder/StarCoder2/ours, SantaCoder, Qwen2.5-Coder-style.
_FIM_SPELLINGS = (
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    ("<fim-prefix>", "<fim-suffix>", "<fim-middle>"),
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
)
_STOP_SPELLINGS = (
    "<|endoftext|>",
    "<fim_pad>",
    "<fim-pad>",
    "<|fim_pad|>",
    "<file_sep>",
    "<|file_sep|>",
    "<|im_end|>",
    "<eos>",
    "<end_of_turn>",
)


@dataclass(frozen=True)
class LineSample:
    path: str
    line: int
    """0-based index of the hidden line."""
    prefix: str
    target: str
    suffix: str
    previous: str
    """The previous non-blank line (the repeat baseline)."""


def sample_lines(files: Sequence[Any], n: int, *, seed: int = 0) -> list[LineSample]:
    """A deterministic sample of ``n`` non-blank lines from files (objects with .path/.text)."""
    candidates: list[tuple[int, int]] = []
    split: list[list[str]] = []
    for fi, f in enumerate(sorted(files, key=lambda f: f.path)):
        lines = f.text.split("\n")
        split.append(lines)
        candidates += [(fi, li) for li, line in enumerate(lines) if line.strip()]
    if not candidates:
        return []
    ordered = sorted(files, key=lambda f: f.path)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(candidates), size=min(n, len(candidates)), replace=False)
    out: list[LineSample] = []
    for k in sorted(int(i) for i in picks):
        fi, li = candidates[k]
        lines = split[fi]
        prev = next((lines[j] for j in range(li - 1, -1, -1) if lines[j].strip()), "")
        prefix = "".join(line + "\n" for line in lines[:li])
        suffix = "\n".join(lines[li + 1 :])
        out.append(LineSample(ordered[fi].path, li, prefix, lines[li], suffix, prev))
    return out


class EvalModel(Protocol):
    n_ctx: int

    def tokenize(self, text: str) -> list[int]: ...
    def special_id(self, token: str) -> int | None: ...
    def detokenize(self, ids: Sequence[int]) -> str: ...
    def greedy(self, ids: list[int], max_new_tokens: int, stop_ids: set[int]) -> list[int]: ...
    def log_probs(self, ids: list[int]) -> np.ndarray:
        """Log-probability of ids[1:] given the tokens before each."""
        ...


class InMemoryModel:
    """A transformers causal LM object and our tokenizer (used during training and for HF folders)."""

    def __init__(self, model: Any, tokenizer: Any):
        self.model = model
        self.tok = tokenizer
        self.n_ctx = int(
            model.config.n_positions
            if hasattr(model.config, "n_positions")
            else model.config.max_position_embeddings
        )

    def tokenize(self, text: str) -> list[int]:
        return list(self.tok.encode(text))

    def special_id(self, token: str) -> int | None:
        tid = (
            self.tok.backend.token_to_id(token)
            if hasattr(self.tok, "backend")
            else self.tok.convert_tokens_to_ids(token)
        )
        return None if tid is None or (isinstance(tid, int) and tid < 0) else int(tid)

    def detokenize(self, ids: Sequence[int]) -> str:
        return str(self.tok.decode(list(ids)))

    def greedy(self, ids: list[int], max_new_tokens: int, stop_ids: set[int]) -> list[int]:
        import torch

        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        out: list[int] = []
        with torch.no_grad():
            x = torch.tensor([ids], device=device)
            past = None
            for _ in range(max_new_tokens):
                res = self.model(input_ids=x, past_key_values=past, use_cache=True)
                past = res.past_key_values
                nxt = int(res.logits[0, -1].argmax())
                if nxt in stop_ids:
                    break
                out.append(nxt)
                if len(ids) + len(out) >= self.n_ctx:
                    break
                x = torch.tensor([[nxt]], device=device)
        if was_training:
            self.model.train()
        return out

    def log_probs(self, ids: list[int]) -> np.ndarray:
        import torch

        device = next(self.model.parameters()).device
        with torch.no_grad():
            logits = self.model(input_ids=torch.tensor([ids], device=device)).logits[0, :-1].float()
            lp = torch.log_softmax(logits, dim=-1)
            return lp.gather(1, torch.tensor(ids[1:], device=device)[:, None])[:, 0].cpu().numpy()


class GGUFModel:
    """A GGUF file through llama.cpp (what the server runs on a laptop)."""

    def __init__(self, path: Path, n_ctx: int | None = None, n_threads: int | None = None):
        from starcoder_ls.backends.gguf import load_gguf

        train_ctx = gguf_context_length(path)
        self.n_ctx = min(n_ctx or train_ctx, train_ctx)
        self.llm = load_gguf(path, n_ctx=self.n_ctx, logits_all=True, n_threads=n_threads)

    def tokenize(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def special_id(self, token: str) -> int | None:
        ids = self.llm.tokenize(token.encode("utf-8"), add_bos=False, special=True)
        return int(ids[0]) if len(ids) == 1 else None

    def detokenize(self, ids: Sequence[int]) -> str:
        return bytes(self.llm.detokenize(list(ids))).decode("utf-8", errors="replace")

    def greedy(self, ids: list[int], max_new_tokens: int, stop_ids: set[int]) -> list[int]:
        self.llm.reset()
        out: list[int] = []
        for tok in self.llm.generate(ids, temp=0.0, top_k=1, reset=True):
            if tok in stop_ids or len(out) >= max_new_tokens:
                break
            out.append(int(tok))
            if len(ids) + len(out) >= self.n_ctx:
                break
        return out

    def log_probs(self, ids: list[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(ids)
        logits = np.asarray(self.llm.scores[: len(ids) - 1], dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        lse = np.log(np.exp(logits).sum(axis=1))
        return logits[np.arange(len(ids) - 1), ids[1:]] - lse


def gguf_context_length(path: Path) -> int:
    """The context a GGUF model was trained for: going past it with learned absolute positions
    (StarCoder's) reads outside the position table, so every caller must stay within it."""
    from starcoder_ls.backends.gguf import load_gguf

    probe = load_gguf(path, n_ctx=512, vocab_only=True)
    arch = probe.metadata.get("general.architecture", "")
    value = probe.metadata.get(f"{arch}.context_length")
    if value is None:
        raise EvaluationError(f"{path} does not say its context length ({arch}.context_length)")
    return int(value)


def _fim_ids(model: EvalModel) -> tuple[int, int, int]:
    for spelling in _FIM_SPELLINGS:
        ids = [model.special_id(t) for t in spelling]
        if all(i is not None for i in ids):
            return ids[0], ids[1], ids[2]  # type: ignore[return-value]
    raise EvaluationError(
        "this model's tokenizer has no FIM tokens (<fim_prefix>/<fim_suffix>/<fim_middle>)"
    )


def stop_ids(model: EvalModel) -> set[int]:
    return {i for t in _STOP_SPELLINGS if (i := model.special_id(t)) is not None}


def infill_ids(model: EvalModel, prefix: str, suffix: str, max_new_tokens: int) -> list[int]:
    """PSM prompt within the context: 3/4 of the room for the prefix (its end), 1/4 for the suffix."""
    pre, suf, mid = _fim_ids(model)
    room = model.n_ctx - max_new_tokens - 3
    p_ids = model.tokenize(prefix) if prefix else []
    s_ids = model.tokenize(suffix) if suffix else []
    s_room = min(len(s_ids), room // 4)
    p_room = min(len(p_ids), room - s_room)
    s_room = min(len(s_ids), room - p_room)
    return [pre, *p_ids[len(p_ids) - p_room :], suf, *s_ids[:s_room], mid]


def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein(a, b) / max(len): 1.0 for identical strings."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return 1.0 - prev[-1] / max(len(a), len(b))


def _score(preds: Sequence[str], samples: Sequence[LineSample]) -> dict[str, float]:
    em = sum(p.rstrip() == s.target.rstrip() for p, s in zip(preds, samples, strict=True))
    es = sum(
        edit_similarity(p.strip(), s.target.strip()) for p, s in zip(preds, samples, strict=True)
    )
    n = max(1, len(samples))
    return {"exact_match": round(em / n, 4), "edit_similarity": round(es / n, 4)}


def fim_exact_match(
    model: EvalModel, samples: Sequence[LineSample], *, max_new_tokens: int = 48
) -> dict[str, Any]:
    return _first_lines(
        model,
        samples,
        lambda s: infill_ids(model, s.prefix, s.suffix, max_new_tokens),
        max_new_tokens,
    )


def l2r_exact_match(
    model: EvalModel, samples: Sequence[LineSample], *, max_new_tokens: int = 48
) -> dict[str, Any]:
    """The same lines completed from the prefix alone: how a model without FIM tokens (or a
    left-to-right prompt) does, the baseline a FIM adaptation has to beat."""
    room = model.n_ctx - max_new_tokens
    return _first_lines(
        model,
        samples,
        lambda s: model.tokenize(s.prefix)[-room:] if s.prefix else [],
        max_new_tokens,
    )


def _first_lines(
    model: EvalModel,
    samples: Sequence[LineSample],
    prompt: Callable[[LineSample], list[int]],
    max_new_tokens: int,
) -> dict[str, Any]:
    """Greedy completions of each sample's prompt, scored by their first line. An empty
    prompt (the first line of a file, left to right) has nothing to continue: an empty line."""
    stops = stop_ids(model)
    preds: list[str] = []
    t0 = time.perf_counter()
    for s in samples:
        ids = prompt(s)
        text = model.detokenize(model.greedy(ids, max_new_tokens, stops)) if ids else ""
        preds.append(text.split("\n", 1)[0])
    result: dict[str, Any] = _score(preds, samples)
    result["samples"] = len(samples)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return result


def baselines(samples: Sequence[LineSample]) -> dict[str, dict[str, float]]:
    return {
        "empty_line": _score(["" for _ in samples], samples),
        "repeat_previous_line": _score([s.previous for s in samples], samples),
    }


def perplexity(
    model: EvalModel, texts: Sequence[str], *, max_tokens: int = 50_000
) -> dict[str, float]:
    """Token-level perplexity over non-overlapping windows, each opened by end-of-text."""
    eos = model.special_id("<|endoftext|>")
    total, count = 0.0, 0
    window = model.n_ctx - 1
    for text in texts:
        ids = model.tokenize(text)
        for start in range(0, len(ids), window):
            chunk = ids[start : start + window]
            seq = ([eos] if eos is not None else []) + chunk
            if len(seq) < 2:
                continue
            lp = model.log_probs(seq)
            total -= float(lp.sum())
            count += len(lp)
            if count >= max_tokens:
                break
        if count >= max_tokens:
            break
    if count == 0:
        raise EvaluationError("no held-out tokens to measure perplexity on")
    return {
        "loss": round(total / count, 4),
        "perplexity": round(math.exp(total / count), 3),
        "tokens": count,
    }
