from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from starcoder_ls.prompt.tokens import FILE_SEP, FIM_MIDDLE, FIM_PREFIX, REPO_NAME
from starcoder_ls.recipe.data import ShardConfig, ShardLoader, build_shards, read_meta
from starcoder_ls.recipe.errors import RecipeError
from starcoder_ls.recipe.tokenizer import CodeTokenizer


def test_shards_hold_the_corpus_as_fim_documents(
    shards_dir: Path, corpus_tokenizer_file: Path
) -> None:
    meta = read_meta(shards_dir)
    tok = CodeTokenizer.load(corpus_tokenizer_file)
    train = meta["splits"]["train"]
    assert meta["seq_len"] == 128 and meta["dtype"] == "uint16"
    assert train["rows"] == sum(s["rows"] for s in train["shards"]) > 10
    assert len(train["shards"]) >= 2  # rows_per_shard=256 forces several files
    loader = ShardLoader(shards_dir, "train", 4)
    ids = np.concatenate([loader.row(i) for i in range(loader.n_rows)])
    assert ids.max() < tok.vocab_size
    counts = {
        t: int((ids == tok.token_id(t)).sum())
        for t in (FIM_PREFIX, FIM_MIDDLE, FILE_SEP, REPO_NAME)
    }
    assert counts[FIM_PREFIX] > 0 and counts[FIM_MIDDLE] > 0 and counts[REPO_NAME] > 0
    assert counts[FILE_SEP] > counts[REPO_NAME]
    text = tok.decode(ids.tolist())
    assert "def " in text and "import " in text


def test_sharding_is_deterministic(
    corpus_dir: Path, corpus_tokenizer_file: Path, tmp_path: Path
) -> None:
    outs = []
    for name in ("a", "b"):
        cfg = ShardConfig(
            corpus=corpus_dir, tokenizer=corpus_tokenizer_file, output=tmp_path / name, seq_len=64
        )
        build_shards(cfg, progress=False)
        outs.append(
            b"".join(p.read_bytes() for p in sorted((tmp_path / name / "train").glob("*.bin")))
        )
    assert outs[0] == outs[1]


def test_loader_resumes_exactly(shards_dir: Path) -> None:
    straight = ShardLoader(shards_dir, "train", 16, seed=7)
    n = straight.n_rows // 16 + 3  # crosses an epoch boundary
    expected = [straight.next_batch() for _ in range(n)]
    assert straight.epoch == 1
    first = ShardLoader(shards_dir, "train", 16, seed=7)
    got = [first.next_batch() for _ in range(n - 5)]
    state = json.loads(json.dumps(first.state_dict()))
    resumed = ShardLoader(shards_dir, "train", 16, seed=7)
    resumed.load_state_dict(state)
    got += [resumed.next_batch() for _ in range(5)]
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_ranks_split_each_global_batch(shards_dir: Path) -> None:
    single = ShardLoader(shards_dir, "train", 4, seed=1)
    ranks = [ShardLoader(shards_dir, "train", 2, seed=1, rank=r, world_size=2) for r in range(2)]
    for _ in range(5):
        whole = single.next_batch()
        parts = np.concatenate([r.next_batch() for r in ranks])
        np.testing.assert_array_equal(whole, parts)


def test_bad_inputs(tmp_path: Path, corpus_tokenizer_file: Path, shards_dir: Path) -> None:
    with pytest.raises(RecipeError, match="no token shards"):
        ShardLoader(tmp_path, "train", 1)
    with pytest.raises(RecipeError, match="fewer than one global batch"):
        ShardLoader(shards_dir, "validation", 10_000)
    empty = tmp_path / "corpus"
    empty.mkdir()
    (empty / "train.jsonl").write_text("")
    (empty / "validation.jsonl").write_text("")
    out = tmp_path / "shards"
    out.mkdir()
    (out / "keep.txt").write_text("previous output")
    with pytest.raises(RecipeError, match="empty"):
        build_shards(
            ShardConfig(corpus=empty, tokenizer=corpus_tokenizer_file, output=out), progress=False
        )
    assert (out / "keep.txt").read_text() == "previous output"
