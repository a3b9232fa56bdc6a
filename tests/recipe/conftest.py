"""Shared fixtures for the recipe tests: a micro tokenizer and a micro model.

Both are built once per session from a deterministic synthetic corpus, so every recipe test sees
the same ids and weights and the whole set stays fast on two CPU cores.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

_NAMES = ["alpha", "beta", "gamma", "delta", "value", "count", "items", "result", "node", "user_id",
          "parseInt", "getValue", "config", "total", "buffer", "index", "name", "path", "x", "y"]  # fmt: skip
_WORDS = ["compute", "the", "sum", "of", "values", "return", "early", "when", "empty", "größe",
          "naïve", "café", "日本語", "ошибка", "emoji 🙂", "TODO", "FIXME", "note"]  # fmt: skip


def _made_up_word(rng: random.Random) -> str:
    return "".join(
        rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(rng.randint(1, 4))
    )


def _python_snippet(rng: random.Random) -> str:
    f, a, b = rng.choice(_NAMES), rng.choice(_NAMES), rng.choice(_NAMES)
    n = rng.randint(0, 99999)
    words = " ".join([*rng.sample(_WORDS, 3), _made_up_word(rng)])
    return (
        f"def {f}_{rng.randint(0, 9)}({a}, {b}={n}):\n"
        f'    """{words}."""\n'
        f"    if {a} is None:\n"
        f"        return {b}  # {words}\n"
        f"    for i in range({n % 17}):\n"
        f"        {a} += i * {rng.random():.3f}\n"
        f"    return [{a}, {b!r}, '{rng.choice(_WORDS)}']\n"
    )


def _js_snippet(rng: random.Random) -> str:
    f, a = rng.choice(_NAMES), rng.choice(_NAMES)
    n = rng.randint(0, 4096)
    return (
        f"function {f}({a}) {{\n"
        f"\tconst out = {a}.map((v) => v * {n});\n"
        f"\tif (out.length === 0) {{ return null; }}\n"
        f"\treturn `${{out}} {rng.choice(_WORDS)}`; // {rng.choice(_WORDS)}\n"
        f"}}\n"
    )


def micro_corpus(n: int = 300, seed: int = 0) -> list[str]:
    """A few hundred Python/JS-like snippets with digits, unicode, tabs and comment text."""
    rng = random.Random(seed)
    return [(_python_snippet if i % 2 == 0 else _js_snippet)(rng) for i in range(n)]


@pytest.fixture(scope="session")
def micro_texts() -> list[str]:
    return micro_corpus()


@pytest.fixture(scope="session")
def micro_tokenizer(micro_texts: list[str]) -> Any:
    """A ``CodeTokenizer`` with StarCoder's special tokens and a ~600-token vocabulary."""
    from starcoder_ls.recipe.tokenizer import train_tokenizer

    return train_tokenizer(micro_texts, 600, min_frequency=1)


def fit_briefly(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    *,
    steps: int,
    seq: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
) -> None:
    """A few Adam steps on ``texts``: logits with real structure (confident, diverse
    predictions) and layer norms/biases moved off their init, unlike random weights, whose
    chaotic logits amplify any numerical difference."""
    import torch

    ids = [i for text in texts for i in [*tokenizer.encode(text), tokenizer.eos_id]]
    data = torch.tensor(ids)
    seq = min(seq, model.config.n_positions - 1)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    threads = torch.get_num_threads()
    # Matrices this small gain nothing from a second thread, and on a busy 2-core machine
    # the threads' synchronisation makes each step ~10x slower.
    torch.set_num_threads(1)
    model.train()
    try:
        for _ in range(steps):
            starts = torch.randint(0, len(data) - seq - 1, (4,), generator=gen)
            batch = torch.stack([data[s : s + seq] for s in starts.tolist()])
            loss = model(input_ids=batch, labels=batch).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        model.eval()
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def fit_model() -> Callable[..., None]:
    """``fit_model(model, tokenizer, texts, steps=N)``: for tests that build their own shape."""
    return fit_briefly


@pytest.fixture(scope="session")
def micro_model(micro_tokenizer: Any, micro_texts: list[str]) -> Any:
    """The ``micro`` preset (2 layers, n_embd 64, multi-query) briefly fitted to ``micro_texts``."""
    from starcoder_ls.recipe.model import build_model

    model = build_model("micro", vocab_size=micro_tokenizer.vocab_size, seed=0)
    fit_briefly(model, micro_tokenizer, micro_texts, steps=20)
    return model
