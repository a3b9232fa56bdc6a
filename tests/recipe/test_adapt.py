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


def test_bad_fim_rates_are_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from starcoder_ls.cli import main

    out = tmp_path / "run"
    common = ["recipe", "adapt", "--base", "default", "--data", str(tmp_path), "-o", str(out)]
    assert main([*common, "--fim", "--span-rate", "0.7", "--line-rate", "0.5"]) == 1
    assert "--line-rate + --span-rate must not exceed 1" in capsys.readouterr().err
    assert main([*common, "--fim", "--fim-rate", "1.5"]) == 1
    assert "--fim-rate must be between 0 and 1" in capsys.readouterr().err
    assert not out.exists()


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


def _batch(tok: object) -> object:
    ids = [tok.encode(t, add_special_tokens=False) for t in CODE[:3]]
    width = min(len(i) for i in ids)
    return torch.tensor([i[:width] for i in ids])


def test_lora_trains_only_the_adapters_and_merges_to_the_same_model(tmp_path: Path) -> None:
    from starcoder_ls.recipe.adapt import (
        LoraSettings,
        attach_lora,
        load_adapter,
        merge_lora,
        trainable_parameters,
    )

    tok = micro_tokenizer()
    base_weights = micro_model(len(tok)).state_dict()
    model = micro_model(len(tok))
    model.load_state_dict(base_weights)
    lora = attach_lora(model, LoraSettings(r=4, alpha=8, dropout=0.0))
    trainable, total = trainable_parameters(lora)
    assert 0 < trainable < 0.2 * total
    x = _batch(tok)
    opt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=3e-2)
    losses = []
    for _ in range(30):
        loss = lora(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    assert sum(losses[-3:]) / 3 < losses[0] - 0.2, losses
    lora.eval()
    with torch.no_grad():
        adapted = lora(input_ids=x).logits
    # The adapter alone is small, and on a fresh copy of the base it is the same model.
    lora.save_pretrained(tmp_path / "adapter")
    size = sum(f.stat().st_size for f in (tmp_path / "adapter").iterdir())
    assert size < 0.5 * sum(v.numel() * 4 for v in base_weights.values())
    fresh = micro_model(len(tok))
    fresh.load_state_dict(base_weights)
    served = load_adapter(fresh, tmp_path / "adapter").eval()
    with torch.no_grad():
        assert torch.allclose(served(input_ids=x).logits, adapted, atol=1e-5)
    # Merged into the weights: a plain model again, with the same outputs.
    merged = merge_lora(lora)
    assert type(merged).__name__ == "LlamaForCausalLM" and not hasattr(merged, "peft_config")
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=x).logits, adapted, atol=1e-4)
    with pytest.raises(RecipeError, match="no LoRA adapter"):
        load_adapter(micro_model(len(tok)), tmp_path)
    with pytest.raises(RecipeError, match="rank must be at least 1"):
        LoraSettings(r=0)


def test_lora_with_new_fim_tokens_trains_their_embeddings_too() -> None:
    from starcoder_ls.recipe.adapt import LoraSettings, attach_lora

    tok = micro_tokenizer()
    model = micro_model(len(tok), tied=False)
    ext = extend_tokenizer(model, tok)
    lora = attach_lora(model, LoraSettings(r=4, dropout=0.0), train_embeddings=True)
    names = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert any("embed_tokens" in n for n in names) and any("lm_head" in n for n in names)
    pre = ext.added["<fim_prefix>"]
    x = torch.tensor([[pre, *tok.encode("def add", add_special_tokens=False)]])
    lora(input_ids=x, labels=x).loss.backward()
    grad = next(
        p.grad for n, p in lora.named_parameters() if p.requires_grad and "embed_tokens" in n
    )
    assert grad[pre].abs().sum() > 0  # the new token's row learns


def _micro_base(folder: Path, corpus_dir: Path) -> Path:
    """A left-to-right base model as a Hugging Face folder, its tokenizer trained on the
    corpus so that code is a few tokens per line."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from starcoder_ls.recipe.corpus import read_corpus

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    t.train_from_iterator((f.text for f in read_corpus(corpus_dir / "train.jsonl")), trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<eos>")
    micro_model(len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _adapt(base: Path, corpus: Path, out: Path, *extra: str) -> dict:
    import json

    from starcoder_ls.cli import main

    args = [
        "recipe", "adapt", "--base", str(base), "--data", str(corpus), "--output", str(out),
        "--fim", "--steps", "12", "--seq-len", "64", "--micro-batch", "4", "--lr", "0.003",
        "--warmup-steps", "2", "--eval-samples", "8", "--eval-every", "6", "--save-every", "6",
        "--no-progress", *extra,
    ]  # fmt: skip
    assert main(args) == 0
    return json.loads((out / "adapt_report.json").read_text())


def test_adapt_teaches_a_left_to_right_model_fim_with_lora(
    corpus_dir: Path, tmp_path: Path
) -> None:
    import json

    base = _micro_base(tmp_path / "base", corpus_dir)
    report = _adapt(base, corpus_dir, tmp_path / "run", "--lora", "4")
    # Before: no FIM tokens, so only left to right; after: both, measured on the same lines.
    assert "fim" not in report["before"] and report["before"]["left_to_right"]["samples"] == 8
    assert report["after"]["fim"]["samples"] == 8
    rows = [json.loads(x) for x in (tmp_path / "run/run/metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) >= 3 and losses[-1] < losses[0]
    # The merged model is a plain transformers model with the sentinels in its tokenizer.
    merged = load_base(tmp_path / "run/hf")
    vocab = merged.tokenizer.get_vocab()
    assert all(t in vocab for t in ADDED_TOKENS)
    assert merged.model.get_input_embeddings().weight.shape[0] == len(merged.tokenizer)
    head, emb = merged.model.get_output_embeddings(), merged.model.get_input_embeddings()
    assert head.weight.data_ptr() == emb.weight.data_ptr()  # a tied base stays tied
    # The adapter serves as it is: the transformers backend loads its base (named in the
    # adapter), grows the embeddings and applies it, and completes exactly as the merged model.
    _serves_like_the_merged_model(tmp_path / "run/adapter", tmp_path / "run/hf")
    # The shards end documents with the base's own end token.
    meta = json.loads((tmp_path / "run/shards/meta.json").read_text())
    assert meta["config"]["end_token"] == "<eos>"


def _serves_like_the_merged_model(adapter: Path, merged: Path) -> None:
    import json

    from starcoder_ls.backends import create_local_backend
    from starcoder_ls.settings import Settings
    from starcoder_ls.types import CancelToken, FimInput, GenerationParams, Prompt

    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert not (adapter / "config.json").exists()
    from starcoder_ls.models.registry import family_for

    assert family_for(str(adapter)) == family_for(str(merged)) == "starcoder2"
    served, reference = (
        create_local_backend(Settings(backend="transformers", model=str(m), device="cpu"))
        for m in (adapter, merged)
    )
    prefix, suffix = "def add(a, b):\n    ", "\n\nprint(add(1, 2))\n"
    prompt = Prompt(
        text=f"<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>",
        family="starcoder2",
        stop=("<eos>",),
        fim=FimInput(prefix, suffix),
    )
    ids = served.tokenize(prompt.text)
    assert ids == reference.tokenize(prompt.text)
    assert ids[0] == served.tokenizer.convert_tokens_to_ids("<fim_prefix>")
    with torch.no_grad():
        x = torch.tensor([ids])
        torch.testing.assert_close(
            served.model(input_ids=x).logits, reference.model(input_ids=x).logits
        )
    params = GenerationParams(max_tokens=12)
    a = served.generate(prompt, params, CancelToken())
    b = reference.generate(prompt, params, CancelToken())
    assert a.text == b.text and a.completion_tokens == b.completion_tokens > 0
    served.close()
    reference.close()


def test_adapt_resumes_exactly(corpus_dir: Path, tmp_path: Path) -> None:
    from starcoder_ls.recipe.train import load_checkpoint

    base = _micro_base(tmp_path / "base", corpus_dir)
    _adapt(base, corpus_dir, tmp_path / "straight", "--lora", "4", "--eval-samples", "0")
    _adapt(base, corpus_dir, tmp_path / "stopped", "--lora", "4", "--eval-samples", "0",
           "--stop-after", "6")  # fmt: skip
    assert load_checkpoint(tmp_path / "stopped/run")["step"] == 6
    _adapt(base, corpus_dir, tmp_path / "stopped", "--lora", "4", "--eval-samples", "0")
    a = load_checkpoint(tmp_path / "straight/run")
    b = load_checkpoint(tmp_path / "stopped/run")
    assert a["step"] == b["step"] == 12 and a["partial"] and set(a["model"]) == set(b["model"])
    for key, value in a["model"].items():
        assert torch.equal(b["model"][key], value), key


def test_adapt_without_lora_trains_every_weight_and_the_loss_falls(
    corpus_dir: Path, tmp_path: Path
) -> None:
    import json

    base = _micro_base(tmp_path / "base", corpus_dir)
    report = _adapt(base, corpus_dir, tmp_path / "run", "--lr", "0.01", "--eval-samples", "0")
    assert "adapter" not in report["outputs"] and (tmp_path / "run/hf/config.json").is_file()
    rows = [json.loads(x) for x in (tmp_path / "run/run/metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3, losses


def test_adapt_under_torchrun_matches_one_process(corpus_dir: Path, tmp_path: Path) -> None:
    """Two gloo processes with half the micro-batch each train the same adapters as one
    (without dropout, whose masks each process draws for its own half)."""
    import os
    import subprocess
    import sys

    from starcoder_ls.recipe.train import load_checkpoint

    base = _micro_base(tmp_path / "base", corpus_dir)
    common = ["--lora", "4", "--lora-dropout", "0", "--eval-samples", "0", "--steps", "4",
              "--save-every", "4"]  # fmt: skip
    _adapt(base, corpus_dir, tmp_path / "one", *common)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "starcoder_ls", "recipe", "adapt", "--base", str(base), "--data", str(corpus_dir),
        "--output", str(tmp_path / "two"), "--fim", "--seq-len", "64", "--micro-batch", "2",
        "--lr", "0.003", "--warmup-steps", "2", "--no-progress", *common,
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_checkpoint(tmp_path / "one/run"), load_checkpoint(tmp_path / "two/run")
    assert b["loader"]["world_size"] == 2 and set(a["model"]) == set(b["model"])
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=5e-5, msg=key)
    assert (tmp_path / "two/adapter/adapter_config.json").is_file()


def test_an_adapted_llama_model_exports_to_gguf_and_llama_cpp_computes_the_same(
    corpus_dir: Path, tmp_path: Path
) -> None:
    """LoRA, merged, exported: llama.cpp's logits for a FIM prompt equal transformers'."""
    from starcoder_ls.backends.gguf import load_gguf

    base = _micro_base(tmp_path / "base", corpus_dir)
    _adapt(base, corpus_dir, tmp_path / "run", "--lora", "4", "--eval-samples", "0",
           "--steps", "4", "--lr", "0.01")  # fmt: skip
    from starcoder_ls.cli import main

    gguf_file = tmp_path / "adapted-f32.gguf"
    assert main(["recipe", "export", str(tmp_path / "run/hf"), "--gguf-out", str(gguf_file)]) == 0
    adapted = load_base(tmp_path / "run/hf")
    tok = adapted.tokenizer
    ids = [
        tok.convert_tokens_to_ids("<fim_prefix>"),
        *tok.encode("def add(a, b):\n    ", add_special_tokens=False),
        tok.convert_tokens_to_ids("<fim_suffix>"),
        *tok.encode("\n\nprint(add(1, 2))\n", add_special_tokens=False),
        tok.convert_tokens_to_ids("<fim_middle>"),
    ]
    with torch.no_grad():
        expected = adapted.model.eval()(input_ids=torch.tensor([ids])).logits[0].numpy()
    llm = load_gguf(gguf_file, n_ctx=128, logits_all=True)
    assert llm.tokenize(b"<fim_prefix>", add_bos=False, special=True) == [ids[0]]
    llm.eval(ids)
    got = np.asarray(llm.scores[: len(ids)])
    assert np.abs(got - expected).max() < 1e-3 * max(1.0, float(np.abs(expected).max()))
    assert llm.metadata.get("tokenizer.ggml.fim_pre_token_id") == str(ids[0])
    # The server recognises it as a FIM model with repository tokens, and stops where the
    # training documents ended.
    from starcoder_ls.models.registry import family_for

    assert family_for(str(gguf_file)) == "starcoder2"
    assert llm.metadata.get("tokenizer.ggml.eos_token_id") == str(
        tok.convert_tokens_to_ids("<eos>")
    )
    # It quantizes through the recipe's quantize stage, and the quantized file computes
    # nearly the same logits (Q8_0: within a few hundredths here).
    assert main(["recipe", "quantize", str(gguf_file), "--type", "Q8_0"]) == 0
    q8 = load_gguf(tmp_path / "adapted-Q8_0.gguf", n_ctx=128, logits_all=True)
    assert q8.metadata.get("tokenizer.ggml.fim_pre_token_id") == str(ids[0])
    q8.eval(ids)
    q8_logits = np.asarray(q8.scores[: len(ids)])
    assert np.abs(q8_logits - expected).max() < 0.05 * max(1.0, float(np.abs(expected).max()))
    assert (q8_logits[-1].argmax(), got[-1].argmax()) == (expected[-1].argmax(),) * 2


def test_a_gguf_base_is_dequantized_into_a_trainable_savable_model(
    corpus_dir: Path, tmp_path: Path
) -> None:
    """A Llama GGUF file as the base: transformers reads it back into the same model, which
    trains and saves like any other (no GGUF mark left on it)."""
    from starcoder_ls.recipe.export import export_gguf

    folder = _micro_base(tmp_path / "base", corpus_dir)
    gguf_file = export_gguf(folder, tmp_path / "base-f32.gguf")
    original, loaded = load_base(folder), load_base(gguf_file)
    x = torch.tensor([original.tokenizer.encode("def add(a, b):", add_special_tokens=False)])
    assert loaded.tokenizer.encode("def add(a, b):", add_special_tokens=False) == x[0].tolist()
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.model(input_ids=x).logits, original.model(input_ids=x).logits, atol=1e-4, rtol=0
        )
    ext = extend_tokenizer(loaded.model, loaded.tokenizer)
    assert set(ext.added) == set(ADDED_TOKENS)
    loaded.model.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "model.safetensors").is_file()
