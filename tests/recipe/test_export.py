"""HF and GGUF export, llama.cpp loading and quantization, checked against the real libraries.

Measured on the micro model (2 layers, n_embd 64, briefly trained), six prompts of up to 200
tokens, |logit| up to ~4: llama.cpp's logits differ from transformers' float32 logits by at most
2.5e-4 (mean 4e-5) for an f32 GGUF and 8.5e-4 (mean 1.3e-4) for an f16 GGUF; greedy tokens agree
everywhere. Most of the f32 difference is llama.cpp's GELU, which rounds its input to f16 and
reads a lookup table: giving the torch model the same f16-rounded GELU brings it down to 8e-5
(summation order). On the n_embd 256 model the f32 difference is 3.7e-4 and f16 5e-3, so the f16
bound depends on the model; the bounds below hold for the micro model with ~4x headroom.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from starcoder_ls.backends.gguf import GGUFError
from starcoder_ls.prompt.tokens import (
    FILE_SEP,
    FIM_MIDDLE,
    FIM_PAD,
    FIM_PREFIX,
    FIM_SUFFIX,
    REPO_NAME,
    SPECIAL_TOKENS,
)
from starcoder_ls.recipe.errors import RecipeError

F32_TOLERANCE = 1e-3
F16_TOLERANCE = 5e-3

TRICKY = [
    "",
    "12345",
    "x = 3.14159e-10 + 0x1F",
    "héllo wörld 日本語 🙂 ошибка naïve",
    "a  b   c\t\t\td\n\n\n  \n",
    "    indented\n        more\n\tTab\r\nwindows\r\n",
    "trailing spaces   ",
    "DON'T it's we'll they've I'M",
    f"{FIM_PREFIX}def f(x):\n    return 42{FIM_SUFFIX}\n{FIM_MIDDLE}",
    f"<|endoftext|>{REPO_NAME}org/repo{FILE_SEP}src/a.py\nimport os<|endoftext|>",
    "<fim_prefix <|endoftext| </fim_suffix> <fim_pad>x",
    "function f() { return `${a}`; } // ünïcödé",
    "00000000001234567890 ١٢٣ 3rd 4th",
    "👩‍💻 e\u0301 \x00\x1b[0m \u00a0nbsp\u3000ideographic",
    "x\n\n\n\n    \n\ty = 1  \n",
]


def _torch_logits(model: Any, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def _llama_logits(llm: Any, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)])


@pytest.fixture(scope="module")
def hf_dir(
    micro_model: Any, micro_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    from starcoder_ls.recipe.export import export_hf

    return export_hf(
        micro_model, micro_tokenizer, tmp_path_factory.mktemp("hf") / "micro", dtype="float32"
    )


@pytest.fixture(scope="module")
def gguf_files(hf_dir: Path) -> dict[str, Path]:
    from starcoder_ls.recipe.export import export_gguf

    return {
        t: export_gguf(hf_dir, hf_dir.parent / f"micro-{t}.gguf", outtype=t) for t in ("f32", "f16")
    }


# --------------------------------------------------------------------------- HF folder


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_hf_export_round_trips_logits(micro_model: Any, micro_tokenizer: Any, micro_texts: list[str], tmp_path: Path, dtype: str) -> None:  # fmt: skip
    import copy

    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from starcoder_ls.recipe.export import export_hf

    out = export_hf(micro_model, micro_tokenizer, tmp_path / "hf", dtype=dtype)
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {getattr(torch, dtype)}  # noqa: SIM118
        assert "lm_head.weight" not in f.keys()  # tied to wte  # noqa: SIM118
    loaded = AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True).float().eval()
    expected_model = copy.deepcopy(micro_model).to(getattr(torch, dtype)).float()  # same rounding
    ids = micro_tokenizer.encode(micro_texts[0])
    diff = np.abs(_torch_logits(loaded, ids) - _torch_logits(expected_model, ids)).max()
    assert diff < 1e-5, diff
    assert np.abs(_torch_logits(micro_model, ids)).max() > 1.0  # the logits are not trivial


def test_hf_tokenizer_config_names_special_and_fim_tokens(hf_dir: Path) -> None:
    config = json.loads((hf_dir / "tokenizer_config.json").read_text())
    assert config["fim_prefix_token"] == FIM_PREFIX
    assert config["fim_middle_token"] == FIM_MIDDLE
    assert config["fim_suffix_token"] == FIM_SUFFIX
    assert config["fim_pad_token"] == FIM_PAD
    assert config["repo_name_token"] == REPO_NAME
    assert config["file_sep_token"] == FILE_SEP
    assert config["bos_token"] == config["eos_token"] == config["unk_token"] == "<|endoftext|>"
    assert config["additional_special_tokens"] == list(SPECIAL_TOKENS)
    specials = json.loads((hf_dir / "special_tokens_map.json").read_text())
    assert specials["eos_token"] == "<|endoftext|>"
    generation = json.loads((hf_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == generation["pad_token_id"] == 0
    model_config = json.loads((hf_dir / "config.json").read_text())
    assert model_config["model_type"] == "gpt_bigcode"
    assert model_config["architectures"] == ["GPTBigCodeForCausalLM"]


def test_auto_tokenizer_encodes_like_code_tokenizer(hf_dir: Path, micro_tokenizer: Any, micro_texts: list[str]) -> None:  # fmt: skip
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(str(hf_dir), local_files_only=True)
    assert auto.eos_token_id == micro_tokenizer.eos_id
    assert auto.convert_tokens_to_ids(FIM_MIDDLE) == micro_tokenizer.token_id(FIM_MIDDLE)
    for text in [*TRICKY, *micro_texts[:20]]:
        assert auto(text)["input_ids"] == micro_tokenizer.encode(text), text
        assert auto.decode(micro_tokenizer.encode(text)) == text


def test_load_hf_returns_model_and_code_tokenizer(hf_dir: Path, micro_model: Any, micro_tokenizer: Any) -> None:  # fmt: skip
    from starcoder_ls.recipe.export import load_hf

    model, tokenizer = load_hf(hf_dir)
    assert not model.training
    assert tokenizer.vocab_size == micro_tokenizer.vocab_size
    ids = tokenizer.encode(TRICKY[8])
    assert ids == micro_tokenizer.encode(TRICKY[8])
    assert np.abs(_torch_logits(model, ids) - _torch_logits(micro_model, ids)).max() < 1e-5


def test_load_hf_errors_are_clear(hf_dir: Path, tmp_path: Path) -> None:
    import shutil

    from starcoder_ls.recipe.export import load_hf

    with pytest.raises(RecipeError, match="model folder not found"):
        load_hf(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecipeError, match=r"no config\.json"):
        load_hf(tmp_path / "empty")
    mamba = tmp_path / "mamba"
    mamba.mkdir()
    (mamba / "config.json").write_text('{"model_type": "mamba"}')
    with pytest.raises(RecipeError, match="'mamba' model; GGUF export takes GPTBigCode"):
        load_hf(mamba)
    partial = tmp_path / "partial"
    shutil.copytree(hf_dir, partial)
    (partial / "model.safetensors").unlink()
    with pytest.raises(RecipeError, match="has no weights"):
        load_hf(partial)


def test_failing_hf_export_leaves_previous_output(micro_model: Any, micro_tokenizer: Any, hf_dir: Path, tmp_path: Path) -> None:  # fmt: skip
    import shutil

    from starcoder_ls.recipe.export import export_hf

    out = tmp_path / "hf"
    shutil.copytree(hf_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    micro_model.config.not_json = object()  # a real config that cannot be serialised
    try:
        with pytest.raises(TypeError):
            export_hf(micro_model, micro_tokenizer, out, dtype="float16")
    finally:
        del micro_model.config.not_json
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]  # no temp folder left behind


# --------------------------------------------------------------------------- GGUF


def test_gguf_metadata(gguf_files: dict[str, Path], micro_tokenizer: Any, micro_model: Any) -> None:
    import gguf

    cfg = micro_model.config
    for outtype, path in gguf_files.items():
        reader = gguf.GGUFReader(str(path))
        field = {name: f.contents() for name, f in reader.fields.items()}
        assert field["general.architecture"] == "starcoder"
        assert field["general.file_type"] == (0 if outtype == "f32" else 1)
        assert field["starcoder.context_length"] == cfg.n_positions
        assert field["starcoder.embedding_length"] == cfg.n_embd
        assert field["starcoder.feed_forward_length"] == 4 * cfg.n_embd
        assert field["starcoder.block_count"] == cfg.n_layer
        assert field["starcoder.attention.head_count"] == cfg.n_head
        assert field["starcoder.attention.head_count_kv"] == 1
        assert field["tokenizer.ggml.model"] == "gpt2"
        assert field["tokenizer.ggml.pre"] == "starcoder"
        assert field["tokenizer.ggml.add_bos_token"] is False
        tokens = field["tokenizer.ggml.tokens"]
        assert len(tokens) == micro_tokenizer.vocab_size
        assert tokens[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
        types = field["tokenizer.ggml.token_type"]
        assert set(types[: len(SPECIAL_TOKENS)]) == {gguf.TokenType.CONTROL}
        assert set(types[len(SPECIAL_TOKENS) :]) == {gguf.TokenType.NORMAL}
        assert len(field["tokenizer.ggml.merges"]) == micro_tokenizer.vocab_size - len(SPECIAL_TOKENS) - 256  # fmt: skip
        for key, tok in (("pre", FIM_PREFIX), ("suf", FIM_SUFFIX), ("mid", FIM_MIDDLE), ("pad", FIM_PAD), ("rep", REPO_NAME), ("sep", FILE_SEP)):  # fmt: skip
            assert field[f"tokenizer.ggml.fim_{key}_token_id"] == micro_tokenizer.token_id(tok)
        for key in ("bos", "eos", "eot"):
            assert field[f"tokenizer.ggml.{key}_token_id"] == micro_tokenizer.eos_id
        kinds = {t.name: t.tensor_type.name for t in reader.tensors}
        assert "output.weight" not in kinds  # tied: llama.cpp reuses token_embd
        assert len(kinds) == 4 + 12 * cfg.n_layer
        matrix = "F32" if outtype == "f32" else "F16"
        assert kinds["token_embd.weight"] == kinds["blk.1.attn_qkv.weight"] == matrix
        assert kinds["position_embd.weight"] == kinds["blk.0.ffn_up.bias"] == "F32"
        assert kinds["output_norm.weight"] == "F32"


@pytest.mark.parametrize(("outtype", "tolerance"), [("f32", F32_TOLERANCE), ("f16", F16_TOLERANCE)])
def test_llama_cpp_logits_match_transformers(gguf_files: dict[str, Path], micro_model: Any, micro_tokenizer: Any, micro_texts: list[str], outtype: str, tolerance: float) -> None:  # fmt: skip
    from starcoder_ls.backends.gguf import load_gguf

    llm = load_gguf(
        gguf_files[outtype], n_ctx=256, logits_all=True, type_k=0, type_v=0, n_threads=1
    )
    worst = 0.0
    for text in micro_texts[3:6]:
        ids = micro_tokenizer.encode(text)[:200]
        expected = _torch_logits(micro_model, ids)
        got = _llama_logits(llm, ids)
        worst = max(worst, float(np.abs(got - expected).max()))
        assert (got.argmax(-1) == expected.argmax(-1)).mean() > 0.95
    assert worst < tolerance, f"{outtype}: max |llama.cpp - transformers| = {worst:.2e}"


def test_llama_cpp_tokenizes_like_hf(gguf_files: dict[str, Path], micro_tokenizer: Any, micro_texts: list[str]) -> None:  # fmt: skip
    from starcoder_ls.backends.gguf import load_gguf

    llm = load_gguf(gguf_files["f32"], n_ctx=64, vocab_only=True)
    for text in [*TRICKY, *micro_texts[:30]]:
        got = llm.tokenize(text.encode(), add_bos=False, special=True)
        assert got == micro_tokenizer.encode(text), repr(text)


def test_gguf_without_multi_query_and_with_sharded_string_merges(micro_tokenizer: Any, micro_texts: list[str], tmp_path: Path) -> None:  # fmt: skip
    """Real StarCoder-style folders: sharded weights, "a b" merges, an untied lm_head, and
    SantaCoder-era full multi-head attention (whose q/k/v rows HF interleaves per head)."""
    import torch
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    from starcoder_ls.backends.gguf import load_gguf
    from starcoder_ls.recipe.export import export_gguf

    config = GPTBigCodeConfig(vocab_size=micro_tokenizer.vocab_size, n_positions=128, n_embd=64, n_layer=2, n_head=4, multi_query=False, tie_word_embeddings=False)  # fmt: skip
    torch.manual_seed(1)
    model = GPTBigCodeForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf = tmp_path / "mha"
    model.save_pretrained(hf, max_shard_size="100KB")
    assert len(list(hf.glob("*.safetensors"))) > 1
    data = json.loads(micro_tokenizer.backend.to_str())
    data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]
    (hf / "tokenizer.json").write_text(json.dumps(data))

    path = export_gguf(hf, tmp_path / "mha.gguf")
    llm = load_gguf(path, n_ctx=128, logits_all=True, type_k=0, type_v=0, n_threads=1)
    ids = micro_tokenizer.encode(micro_texts[9])[:100]
    assert np.abs(_llama_logits(llm, ids) - _torch_logits(model, ids)).max() < F32_TOLERANCE
    assert llm.tokenize(TRICKY[3].encode(), add_bos=False, special=True) == micro_tokenizer.encode(TRICKY[3])  # fmt: skip


def test_gguf_export_errors(hf_dir: Path, tmp_path: Path) -> None:
    import shutil

    from starcoder_ls.recipe.export import export_gguf

    out = tmp_path / "model.gguf"
    out.write_bytes(b"previous good file")
    with pytest.raises(RecipeError, match="model folder not found"):
        export_gguf(tmp_path / "missing", out)
    with pytest.raises(RecipeError, match="unknown GGUF type 'q4'"):
        export_gguf(hf_dir, out, outtype="q4")
    broken = tmp_path / "broken"
    shutil.copytree(hf_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["n_inner"] = 128
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        RecipeError, match=r"do not fit its config.json \(wrong shape: h.0.mlp.c_fc.weight"
    ):
        export_gguf(broken, out)
    config["activation_function"] = "relu"
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(RecipeError, match="activation 'relu' is not GELU"):
        export_gguf(broken, out)
    assert out.read_bytes() == b"previous good file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "model.gguf"]


def test_load_gguf_errors_are_clear(
    gguf_files: dict[str, Path], hf_dir: Path, tmp_path: Path
) -> None:
    from starcoder_ls.backends.gguf import load_gguf

    with pytest.raises(GGUFError, match="GGUF file not found"):
        load_gguf(tmp_path / "missing.gguf")
    with pytest.raises(GGUFError, match="is not a GGUF file"):
        load_gguf(hf_dir / "model.safetensors")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(gguf_files["f32"].read_bytes()[:4096])
    with pytest.raises(GGUFError, match=r"llama.cpp cannot load .*truncated.gguf: .*failed to"):
        load_gguf(truncated)


# --------------------------------------------------------------------------- quantization


@pytest.fixture(scope="module")
def quant_source(micro_tokenizer: Any, micro_texts: list[str], fit_model: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # fmt: skip
    """n_embd 256 (rows fit k-quant blocks), 2 layers: the smallest shape where Q4_K_M is real."""
    from starcoder_ls.recipe.export import export_gguf, export_hf
    from starcoder_ls.recipe.model import Preset, build_model

    preset = Preset("quant-test", 256, 2, 4, 256, micro_tokenizer.vocab_size, "")
    model = build_model(preset, vocab_size=micro_tokenizer.vocab_size, seed=0)
    fit_model(model, micro_tokenizer, micro_texts, steps=20)
    root = tmp_path_factory.mktemp("quant")
    hf = export_hf(model, micro_tokenizer, root / "hf", dtype="float32")
    return {
        "f32": export_gguf(hf, root / "model-f32.gguf", outtype="f32"),
        "f16": export_gguf(hf, root / "model-f16.gguf", outtype="f16"),
        "root": root,
    }


def _greedy(path: Path, prompts: list[list[int]]) -> np.ndarray:
    """The greedy next token after every prefix of every prompt (one eval per prompt)."""
    from starcoder_ls.backends.gguf import load_gguf

    llm = load_gguf(path, n_ctx=256, n_threads=1, logits_all=True)
    return np.concatenate([_llama_logits(llm, p).argmax(-1) for p in prompts])


@pytest.mark.slow
def test_quantized_models_load_shrink_and_agree(quant_source: dict[str, Any], micro_tokenizer: Any, micro_texts: list[str]) -> None:  # fmt: skip
    """Measured: Q8_0 agrees with f32 on 100% of 264 next-token choices, Q4_0 ~98%, Q4_K_M ~99%."""
    import gguf

    from starcoder_ls.recipe.quantize import quantize_gguf

    prompts = [micro_tokenizer.encode(t)[:120] for t in micro_texts[100:104]]
    reference = _greedy(quant_source["f32"], prompts)
    f16_size = quant_source["f16"].stat().st_size
    sizes = {}
    for qtype, qkv_type, minimum in (("Q8_0", "Q8_0", 0.95), ("Q4_0", "Q4_0", 0.9), ("Q4_K_M", "Q4_K", 0.9)):  # fmt: skip
        out = quantize_gguf(
            quant_source["f32"], quant_source["root"] / f"model-{qtype}.gguf", qtype
        )
        sizes[qtype] = out.stat().st_size
        assert sizes[qtype] < f16_size < quant_source["f32"].stat().st_size
        kinds = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(out)).tensors}
        assert kinds["blk.0.attn_qkv.weight"] == qkv_type
        assert kinds["blk.0.attn_norm.weight"] == "F32"
        agree = float(np.mean(_greedy(out, prompts) == reference))
        assert agree >= minimum, (qtype, agree)
    assert sizes["Q4_0"] < sizes["Q8_0"] and sizes["Q4_K_M"] < sizes["Q8_0"]


def test_quantize_f16_and_errors(gguf_files: dict[str, Path], tmp_path: Path) -> None:  # fmt: skip
    from starcoder_ls.recipe.quantize import quantize_gguf

    f16 = quantize_gguf(gguf_files["f32"], tmp_path / "x-F16.gguf", "f16")
    assert f16.stat().st_size < gguf_files["f32"].stat().st_size
    with pytest.raises(RecipeError, match="unknown quantization type 'Q3_K'; choose one of: F16, Q8_0, Q4_0, Q4_K_M"):  # fmt: skip
        quantize_gguf(gguf_files["f32"], tmp_path / "y.gguf", "Q3_K")
    not_gguf = tmp_path / "model.json"
    not_gguf.write_text("{}")
    with pytest.raises(GGUFError, match=r"model\.json is not a GGUF file"):
        quantize_gguf(not_gguf, tmp_path / "y.gguf", "Q8_0")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(gguf_files["f32"].read_bytes()[:4096])
    previous = tmp_path / "out.gguf"
    previous.write_bytes(b"previous good file")
    with pytest.raises(RecipeError, match=r"llama.cpp failed to quantize .*truncated.gguf to Q8_0 .*failed to"):  # fmt: skip
        quantize_gguf(truncated, previous, "Q8_0")
    assert previous.read_bytes() == b"previous good file"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- CLI


def test_cli_export_and_quantize(hf_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """Through the real ``starcoder-ls recipe ...`` entry point."""
    import gguf

    from starcoder_ls.cli import main

    gguf_out = tmp_path / "m-f32.gguf"
    argv = ["recipe", "export", str(hf_dir), "--hf-out", str(tmp_path / "hf"), "--gguf-out", str(gguf_out)]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["gguf_bytes"] == gguf_out.stat().st_size
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["dtype"] == "float16"
    reader = gguf.GGUFReader(str(gguf_out))
    assert reader.fields["general.name"].contents() == "hf"
    # the GGUF was made from full-precision weights, not the float16 HF folder
    wte = {t.name: np.array(t.data) for t in reader.tensors}["token_embd.weight"]
    assert not np.array_equal(wte, wte.astype(np.float16).astype(np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "m-f32.gguf"]

    argv = ["recipe", "quantize", str(gguf_out), "--type", "Q8_0", "--type", "q4_0", "--out-dir", str(tmp_path / "q")]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert [o["type"] for o in report["outputs"]] == ["Q8_0", "Q4_0"]
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["m-Q4_0.gguf", "m-Q8_0.gguf"]

    assert main(["recipe", "quantize", str(gguf_out), "--type", "Q9"]) == 1
    assert "unknown quantization type 'Q9'" in capsys.readouterr().err
    assert main(["recipe", "export", str(tmp_path / "nope"), "--hf-out", str(tmp_path / "x")]) == 1
    assert "not found" in capsys.readouterr().err
