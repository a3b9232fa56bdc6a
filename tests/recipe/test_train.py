from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from starcoder_ls.recipe.errors import RecipeError
from starcoder_ls.recipe.train import (
    latest_checkpoint,
    load_checkpoint,
    load_checkpoint_model,
    lr_at,
    train,
)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_loss_goes_down_and_outputs_are_written(
    shards_dir: Path, tmp_path: Path, train_config: Any
) -> None:
    run = tmp_path / "run"
    result = train(
        train_config(shards_dir, run, max_steps=24, eval_every=12, save_every=12, lr=5e-3)
    )
    losses = [m["loss"] for m in _metrics(run) if "loss" in m]
    assert losses[-1] < losses[0] - 0.5
    assert result["step"] == 24 and "val_loss" in result and "val_fim_exact_match" in result
    assert all(m["tokens_per_s"] > 0 for m in _metrics(run) if "tokens_per_s" in m)
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert latest_checkpoint(run) == run / "checkpoints" / "step-0000024.pt"
    model, tok = load_checkpoint_model(run)
    assert model.config.vocab_size == tok.vocab_size


def test_resume_continues_identically(shards_dir: Path, tmp_path: Path, train_config: Any) -> None:
    straight = tmp_path / "straight"
    train(train_config(shards_dir, straight))
    interrupted = tmp_path / "interrupted"
    train(train_config(shards_dir, interrupted, stop_after=4))
    assert load_checkpoint(interrupted)["step"] == 4
    train(train_config(shards_dir, interrupted))  # resumes from step 4
    a, b = load_checkpoint(straight), load_checkpoint(interrupted)
    assert a["step"] == b["step"] == 8
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["loader"] == b["loader"]
    losses = lambda run: [(m["step"], m["loss"]) for m in _metrics(run) if "loss" in m]  # noqa: E731
    assert losses(straight) == losses(interrupted)


def test_warmup_then_cosine(shards_dir: Path, tmp_path: Path, train_config: Any) -> None:
    cfg = train_config(
        shards_dir, tmp_path, max_steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1
    )
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(55, cfg) == pytest.approx(0.55)
    assert lr_at(100, cfg) == pytest.approx(0.1)


def test_mismatched_and_corrupt_checkpoints(
    shards_dir: Path, tmp_path: Path, train_config: Any
) -> None:
    run = tmp_path / "run"
    train(train_config(shards_dir, run, max_steps=2, eval_every=100, save_every=2))
    ckpt = latest_checkpoint(run)
    assert ckpt is not None
    data = torch.load(ckpt, weights_only=False)
    data["model_config"]["n_embd"] = 128
    torch.save(data, ckpt)
    with pytest.raises(RecipeError, match=r"does not match this model.*n_embd"):
        train(train_config(shards_dir, run, max_steps=4))
    ckpt.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(RecipeError, match="corrupt or unreadable"):
        train(train_config(shards_dir, run, max_steps=4))
    with pytest.raises(RecipeError, match="unknown model preset"):
        train(train_config(shards_dir, tmp_path / "other", preset="nope"))


def test_two_process_ddp_matches_one_process(
    shards_dir: Path, tmp_path: Path, train_config: Any
) -> None:
    """torchrun with 2 CPU processes (gloo): each rank sees half of every global batch, so the
    result equals a single process with the whole batch, up to float summation order."""
    single = tmp_path / "single"
    train(train_config(shards_dir, single, micro_batch=4, max_steps=4, fim_eval_samples=0))
    ddp = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "starcoder_ls",
        "recipe",
        "train",
        str(shards_dir),
        "--output",
        str(ddp),
        "--preset",
        "micro",
        "--micro-batch",
        "2",
        "--max-steps",
        "4",
        "--warmup-steps",
        "2",
        "--lr",
        "0.003",
        "--eval-every",
        "4",
        "--eval-batches",
        "2",
        "--fim-eval-samples",
        "0",
        "--save-every",
        "4",
        "--log-every",
        "2",
        "--no-progress",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_checkpoint(single), load_checkpoint(ddp)
    assert b["loader"]["world_size"] == 2
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=5e-5, msg=key)
