"""Session fixtures shared across the suite: a small real corpus and what the recipe makes of it.

The corpus is three packages of the running interpreter's standard library (real code, already on
every machine, deterministic for a given Python), small enough that tokenizer training and
sharding take a second or two.
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path
from typing import Any

import pytest

# Without an NVIDIA GPU the Triton kernels run in Triton's CPU interpreter. Triton reads this when
# a kernel is defined, so it is set before any test module imports ``starcoder_ls.kernels``.
if not Path("/dev/nvidiactl").exists():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# An empty `model` setting means the real default model (Gemma-3-270M) for users; the suite's
# servers and commands run the bundled tiny model, which answers in milliseconds. Tests of the
# real default name it explicitly (tests/test_default_model.py).
os.environ.setdefault("STARCODER_LS_DEFAULT_MODEL", "tiny")

STDLIB = Path(sysconfig.get_paths()["stdlib"])
MICRO_PACKAGES = ("json", "html", "http", "urllib")


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from starcoder_ls.recipe.corpus import CorpusConfig, build_corpus

    out = tmp_path_factory.mktemp("pipeline") / "corpus"
    build_corpus(
        CorpusConfig(
            sources=[f"{name}={STDLIB / name}" for name in MICRO_PACKAGES],
            output=out,
            languages=frozenset({"python"}),
            val_fraction=0.25,
        ),
        progress=False,
    )
    return out


@pytest.fixture(scope="session")
def corpus_tokenizer_file(corpus_dir: Path) -> Path:
    from starcoder_ls.recipe.corpus import read_corpus
    from starcoder_ls.recipe.tokenizer import train_tokenizer

    files = list(read_corpus(corpus_dir / "train.jsonl"))
    tok = train_tokenizer((f.text for f in files), 768, length=len(files))
    path = corpus_dir.parent / "tokenizer.json"
    tok.save(path)
    return path


@pytest.fixture(scope="session")
def shards_dir(corpus_dir: Path, corpus_tokenizer_file: Path) -> Path:
    from starcoder_ls.recipe.data import ShardConfig, build_shards
    from starcoder_ls.recipe.fim import FimConfig

    out = corpus_dir.parent / "shards"
    build_shards(
        ShardConfig(
            corpus=corpus_dir,
            tokenizer=corpus_tokenizer_file,
            output=out,
            seq_len=128,
            fim=FimConfig(line_rate=0.3),
            rows_per_shard=256,
        ),
        progress=False,
    )
    return out


@pytest.fixture(scope="session")
def train_config() -> Any:
    """A factory for few-second training runs of the micro preset."""
    return _tiny_train_config


def _tiny_train_config(data: Path, output: Path, **overrides: Any) -> Any:
    from starcoder_ls.recipe.train import TrainConfig

    values: dict[str, Any] = dict(
        data=data,
        output=output,
        preset="micro",
        micro_batch=4,
        max_steps=8,
        warmup_steps=2,
        lr=3e-3,
        eval_every=4,
        eval_batches=2,
        fim_eval_samples=2,
        save_every=4,
        log_every=2,
        progress=False,
    )
    values.update(overrides)
    return TrainConfig(**values)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` need a real GPU with compiled Triton kernels; tests marked
    ``interpreter`` (and not ``cuda``) run kernels on CPU tensors, which only Triton's
    interpreter can. Without a GPU the first are skipped; on a GPU box, unless
    TRITON_INTERPRET=1 is set, the second."""
    interpreting = os.environ.get("TRITON_INTERPRET") == "1"
    if not interpreting:
        skip = pytest.mark.skip(reason="needs Triton's CPU interpreter (TRITON_INTERPRET=1)")
        for item in items:
            if item.get_closest_marker("interpreter") and not item.get_closest_marker("cuda"):
                item.add_marker(skip)
    if not any(item.get_closest_marker("cuda") for item in items):
        return
    import torch

    reason = None
    if not torch.cuda.is_available():
        reason = "needs a CUDA GPU"
    elif interpreting:
        reason = "TRITON_INTERPRET=1 runs kernels in the CPU interpreter"
    if reason:
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if item.get_closest_marker("cuda"):
                item.add_marker(skip)
