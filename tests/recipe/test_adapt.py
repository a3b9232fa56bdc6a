"""Adapting an existing model: loading the base, and adding the FIM tokens it lacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from starcoder_ls.recipe import fim  # noqa: E402
from starcoder_ls.recipe.adapt import ADDED_TOKENS, HFEncoder, extend_tokenizer, load_base  # noqa: E402
from starcoder_ls.recipe.errors import RecipeError  # noqa: E402

ROOT = Path(__file__).parents[2]
CODE = [
    "def add(a, b):\n    return a + b\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n",
    "for i in range(10):\n    print(i * i)\n",
] * 20


def micro_tokenizer(eos: str = "<|endoftext|>") -> object:
    """A left-to-right model's tokenizer: byte-level BPE with an end token only."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=[eos],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    t.train_from_iterator(CODE, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=t, eos_token=eos)


def micro_model(vocab: int, *, tied: bool = True) -> object:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=tied,
    )
    return LlamaForCausalLM(config)


@pytest.mark.parametrize("tied", [True, False])
def test_the_sentinels_are_added_and_every_old_id_keeps_its_meaning(tied: bool) -> None:
    tok = micro_tokenizer()
    model = micro_model(len(tok), tied=tied)
    before_ids = [tok.encode(text, add_special_tokens=False) for text in CODE[:3]]
    before_in = model.get_input_embeddings().weight.detach().clone()
    before_out = model.get_output_embeddings().weight.detach().clone()
    old = len(tok)

    ext = extend_tokenizer(model, tok)

    assert set(ext.added) == set(ADDED_TOKENS) and ext.old_vocab == old
    assert sorted(ext.added.values()) == list(range(old, old + len(ADDED_TOKENS)))
    assert [tok.encode(t, add_special_tokens=False) for t in CODE[:3]] == before_ids
    # A sentinel in text is one token, never split into pieces.
    pre = ext.added["<fim_prefix>"]
    assert tok.encode("x<fim_prefix>y", add_special_tokens=False)[1] == pre
    emb_in = model.get_input_embeddings().weight.detach()
    emb_out = model.get_output_embeddings().weight.detach()
    assert emb_in.shape[0] == old + len(ADDED_TOKENS) == model.config.vocab_size
    assert torch.equal(emb_in[:old], before_in) and torch.equal(emb_out[:old], before_out)
    assert (emb_in.data_ptr() == emb_out.data_ptr()) == tied
    # New rows start where the old ones are: near their mean, at their scale.
    new = emb_in[old:]
    assert torch.isfinite(new).all()
    mean, scale = before_in.mean(0), before_in.norm(dim=1).mean()
    assert ((new - mean).norm(dim=1) < 0.5 * scale).all()
    # The model runs with the new ids.
    out = model(input_ids=torch.tensor([[pre, *before_ids[0]]]))
    assert out.logits.shape[-1] == old + len(ADDED_TOKENS)
    # Extending twice adds nothing.
    assert extend_tokenizer(model, tok).added == {}


def test_a_padded_vocabulary_gives_spare_rows_the_mean() -> None:
    tok = micro_tokenizer()
    model = micro_model(len(tok) + 16)  # rows the tokenizer never used
    used = len(tok)
    trained_mean = model.get_input_embeddings().weight[:used].detach().mean(0)
    ext = extend_tokenizer(model, tok)
    assert all(used <= tid < used + 16 for tid in ext.added.values())
    assert model.get_input_embeddings().weight.shape[0] == used + 16  # nothing to grow
    for tid in ext.added.values():
        assert torch.allclose(model.get_input_embeddings().weight[tid], trained_mean)


def test_the_fim_transform_runs_on_the_extended_tokenizer() -> None:
    tok = micro_tokenizer()
    extend_tokenizer(micro_model(len(tok)), tok)
    enc = HFEncoder(tok)
    rng = np.random.default_rng(0)
    split = fim.split_document(CODE[1], rng, fim.FimConfig(fim_rate=1.0, spm_rate=0.0))
    assert split is not None
    pieces = fim.fim_pieces(split)
    ids = fim.encode_pieces(pieces, enc)
    assert ids[0] == enc.token_id("<fim_prefix>")
    assert tok.decode(ids) == fim.render(pieces)


def test_a_left_to_right_tokenizer_without_the_extension_is_a_clear_error() -> None:
    with pytest.raises(RecipeError, match="has no <fim_prefix>"):
        HFEncoder(micro_tokenizer()).token_id("<fim_prefix>")


def test_a_base_loads_from_a_folder_and_bad_bases_say_why(tmp_path: Path) -> None:
    tok = micro_tokenizer()
    model = micro_model(len(tok))
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    base = load_base(tmp_path / "base")
    assert type(base.model).__name__ == "LlamaForCausalLM"
    assert base.tokenizer.encode("def add", add_special_tokens=False) == tok.encode(
        "def add", add_special_tokens=False
    )
    # The bundled model's GGUF is GPTBigCode, which transformers does not read from GGUF.
    gguf = ROOT / "models/starcoder-ls-tiny/starcoder-ls-tiny-Q8_0.gguf"
    with pytest.raises(RecipeError, match="Hugging Face folder instead"):
        load_base(gguf)
    with pytest.raises(RecipeError, match="not a folder, a GGUF file or a model"):
        load_base("no-such-model-anywhere")
    (tmp_path / "broken.gguf").write_bytes(b"GGUF" + b"\0" * 12)
    with pytest.raises(RecipeError):
        load_base(tmp_path / "broken.gguf")


def test_shards_for_an_adapted_model_end_documents_with_its_own_end_token(
    corpus_dir: Path, tmp_path: Path
) -> None:
    """Gemma ends text with ``<eos>``, not StarCoder's ``<|endoftext|>``: the FIM shards keep
    the model's end token (which the server stops on) and add only the sentinels."""
    from starcoder_ls.recipe.data import ShardConfig, build_shards, read_meta

    tok = micro_tokenizer(eos="<eos>")
    ext = extend_tokenizer(micro_model(len(tok)), tok)
    tok.save_pretrained(tmp_path / "tok")
    assert "<|endoftext|>" not in tok.get_vocab()
    cfg = ShardConfig(
        corpus=corpus_dir,
        tokenizer=tmp_path / "tok" / "tokenizer.json",
        output=tmp_path / "shards",
        seq_len=64,
        fim=fim.FimConfig(fim_rate=1.0),
        rows_per_shard=64,
        end_token="<eos>",
    )
    meta = build_shards(cfg, progress=False)
    assert read_meta(tmp_path / "shards")["config"]["end_token"] == "<eos>"
    rows = np.concatenate(
        [
            np.fromfile(tmp_path / "shards" / "train" / s["file"], dtype=meta["dtype"])
            for s in meta["splits"]["train"]["shards"]
        ]
    )
    eos = tok.convert_tokens_to_ids("<eos>")
    assert (rows == eos).sum() > 0
    for token in ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"):
        assert (rows == ext.added[token]).sum() > 0, token
    assert rows.max() < len(tok)
    # A tokenizer without the end token asked for is refused before any work.
    with pytest.raises(RecipeError, match="no token '<\\|endoftext\\|>'"):
        build_shards(
            ShardConfig(corpus=corpus_dir, tokenizer=cfg.tokenizer, output=tmp_path / "x"),
            progress=False,
        )
