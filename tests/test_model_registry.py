"""Model registry: names, paths and tags to prompt families; the family of a renamed file from
its own vocabulary; the GGUF header reader on the real bundled model file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from starcoder_ls.models import BUNDLED_GGUF, BUNDLED_HF, BUNDLED_NAME
from starcoder_ls.models.registry import (
    family_for,
    guess_family_from_vocab,
    known_models,
    lookup,
    read_gguf_metadata,
    read_vocab,
)

from starcoder_ls.prompt.templates import FAMILIES


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bigcode/starcoder2-3b", "bigcode/starcoder2-3b"),
        ("BigCode/StarCoder2-3B", "bigcode/starcoder2-3b"),
        ("starcoder2-15b", "bigcode/starcoder2-15b"),
        ("starcoder2:7b", "bigcode/starcoder2-7b"),
        ("~/models/starcoder2-3b-Q4_K_M.gguf", "bigcode/starcoder2-3b"),
        ("starcoderbase-1b.Q8_0.gguf", "bigcode/starcoderbase-1b"),
        ("/srv/models/starcoderbase-7b.IQ4_XS.gguf", "bigcode/starcoderbase-7b"),
        ("C:\\models\\starcoder-Q5_K_S.gguf", "bigcode/starcoder"),
        ("starcoderbase", "bigcode/starcoderbase"),
        ("tiny_starcoder", "bigcode/tiny_starcoder_py"),
        ("bigcode/santacoder", "bigcode/santacoder"),
        ("codellama:7b-code", "codellama/CodeLlama-7b-hf"),
        ("codellama-13b.Q4_K_M.gguf", "codellama/CodeLlama-13b-hf"),
        ("TheBloke/deepseek-coder-6.7B-base-GGUF", "deepseek-ai/deepseek-coder-6.7b-base"),
        ("deepseek-coder:1.3b-base", "deepseek-ai/deepseek-coder-1.3b-base"),
        ("qwen2.5-coder-1.5b-q8_0.gguf", "Qwen/Qwen2.5-Coder-1.5B"),
        ("qwen2.5-coder:7b-base", "Qwen/Qwen2.5-Coder-7B"),
        ("google/codegemma-2b", "google/codegemma-2b"),
        ("codegemma:7b-code", "google/codegemma-7b"),
        ("codegemma-1.1-2b-f16.gguf", "google/codegemma-1.1-2b"),
        ("/cache/hub/models--bigcode--starcoder2-7b/snapshots/0123abcd/", "bigcode/starcoder2-7b"),
        ("~/models/starcoder2-3b/ggml-model-Q4_0.gguf", "bigcode/starcoder2-3b"),
        ("~/models/deepseek-coder-33b-base/", "deepseek-ai/deepseek-coder-33b-base"),
        (BUNDLED_NAME, BUNDLED_NAME),
        (str(BUNDLED_GGUF), BUNDLED_NAME),
        (str(BUNDLED_HF.parent), BUNDLED_NAME),
        (str(BUNDLED_HF), BUNDLED_NAME),
    ],
)
def test_lookup(name: str, expected: str) -> None:
    info = lookup(name)
    assert info is not None, name
    assert info.id == expected


@pytest.mark.parametrize(
    "name", ["", "   ", "gpt2", "codegemma-7b-it", "my-model.gguf", "starcoder2-3b-instruct"]
)
def test_lookup_unknown(name: str) -> None:
    assert lookup(name) is None


def test_registry_entries() -> None:
    models = known_models()
    assert models[0].id == BUNDLED_NAME
    bundled = models[0]
    assert bundled.family == "starcoder-ls"
    assert bundled.context_length == 512
    assert bundled.gguf_path == str(BUNDLED_GGUF)
    assert bundled.hf_path == str(BUNDLED_HF)
    assert {m.family for m in models} == set(FAMILIES)
    by_id = {m.id: m for m in models}
    assert by_id["bigcode/starcoder2-15b"].context_length == 16384
    assert by_id["bigcode/santacoder"].context_length == 2048
    assert by_id["bigcode/starcoderbase-3b"].family == "starcoder"
    assert by_id["Qwen/Qwen2.5-Coder-32B"].family == "qwen2.5-coder"
    assert len(by_id) == len(models)


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("", "starcoder-ls"),
        ("starcoder2:3b", "starcoder2"),
        ("codegemma-7b-it", "codegemma"),
        ("qwen2.5-coder-1.5b-instruct-q8_0.gguf", "qwen2.5-coder"),
        ("Qwen/Qwen3-Coder-30B-A3B", "qwen2.5-coder"),
        ("deepseek-coder-v2-lite-base.Q4_K_M.gguf", "deepseek-coder"),
        ("CodeLlama-34b-Instruct-hf", "codellama"),
        ("starcoderbase-15b-finetuned", "starcoder"),
        ("starcoder-ls-small", "starcoder-ls"),
        ("santacoder-fim.gguf", "santacoder"),
    ],
)
def test_family_for_names(name: str, family: str) -> None:
    assert family_for(name) == family


def test_family_for_unknown_uses_the_default(tmp_path: Path) -> None:
    assert family_for("gpt2") == "starcoder"
    assert family_for("gpt2", default="qwen2.5-coder") == "qwen2.5-coder"
    garbage = tmp_path / "mystery.gguf"
    garbage.write_bytes(b"not a gguf at all" * 10)
    assert family_for(str(garbage), default="codellama") == "codellama"
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(BUNDLED_GGUF.read_bytes()[:2000])
    assert family_for(str(truncated)) == "starcoder"
    assert family_for(str(tmp_path / "missing.gguf")) == "starcoder"


def test_renamed_gguf_file_is_recognised_by_its_vocabulary(tmp_path: Path) -> None:
    renamed = tmp_path / "my-favourite-model.gguf"
    shutil.copyfile(BUNDLED_GGUF, renamed)
    assert lookup(str(renamed)) is None
    assert family_for(str(renamed)) == "starcoder-ls"


def test_renamed_hf_folder_is_recognised_by_its_tokenizer(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint-final"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(BUNDLED_HF / name, folder / name)
    assert family_for(str(folder)) == "starcoder-ls"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no tokenizer"):
        read_vocab(empty)
    assert family_for(str(empty)) == "starcoder"


def test_gguf_header_reader_on_the_bundled_model() -> None:
    meta = read_gguf_metadata(
        BUNDLED_GGUF,
        {"general.architecture", "starcoder.context_length", "tokenizer.ggml.tokens"},
    )
    assert meta["general.architecture"] == "starcoder"
    assert meta["starcoder.context_length"] == 512
    tokens = meta["tokenizer.ggml.tokens"]
    config = json.loads((BUNDLED_GGUF.parent / "hf" / "config.json").read_text())
    assert len(tokens) == config["vocab_size"]
    assert tokens[:4] == ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>"]


def test_gguf_header_reader_agrees_with_the_gguf_library() -> None:
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(str(BUNDLED_GGUF))
    field = reader.fields["tokenizer.ggml.tokens"]
    theirs = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
    ours = read_gguf_metadata(BUNDLED_GGUF, {"tokenizer.ggml.tokens"})["tokenizer.ggml.tokens"]
    assert ours == theirs
    assert read_gguf_metadata(BUNDLED_GGUF, {"no.such.key"}) == {}


def test_not_a_gguf_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"GGML" + b"\0" * 100)
    with pytest.raises(ValueError, match="not a GGUF file"):
        read_gguf_metadata(bad, {"general.name"})


# Special tokens as the models' tokenizers list them (tokenizer_config.json / model cards).
VOCABS = {
    "starcoder": {"<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>",
                  "<filename>", "<gh_stars>", "<reponame>"},
    "starcoder2": {"<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>",
                   "<repo_name>", "<file_sep>", "<issue_start>", "<jupyter_script>", "<pr>"},
    "santacoder": {"<|endoftext|>", "<fim-prefix>", "<fim-middle>", "<fim-suffix>", "<fim-pad>"},
    "codellama": {"<s>", "</s>", "▁<PRE>", "▁<MID>", "▁<SUF>", "▁<EOT>"},
    "deepseek-coder": {"<｜begin▁of▁sentence｜>", "<｜fim▁hole｜>", "<｜fim▁begin｜>",
                       "<｜fim▁end｜>", "<|EOT|>"},
    "qwen2.5-coder": {"<|endoftext|>", "<|im_start|>", "<|fim_prefix|>", "<|fim_middle|>",
                      "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"},
    "codegemma": {"<bos>", "<eos>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                  "<|file_separator|>"},
    "starcoder-ls": {"<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>",
                     "<fim_pad>", "<filename>", "<gh_stars>", "<reponame>", "<repo_name>",
                     "<file_sep>"},
}  # fmt: skip


@pytest.mark.parametrize("family", sorted(VOCABS))
def test_guess_family_from_vocab(family: str) -> None:
    assert guess_family_from_vocab(VOCABS[family]) == family
    assert guess_family_from_vocab(list(VOCABS[family])) == family


def test_guess_family_from_vocab_without_fim_tokens() -> None:
    assert guess_family_from_vocab(set()) is None
    assert guess_family_from_vocab({"<|endoftext|>", "<repo_name>", "<file_sep>"}) is None


def test_every_download_belongs_to_a_registry_model() -> None:
    from starcoder_ls.models.registry import HUB_FILES, lookup

    for model_id, hub in HUB_FILES.items():
        assert lookup(model_id) is not None, model_id
        assert hub.default in hub.quants
        assert hub.file(hub.default).endswith(".gguf") and hub.default in hub.file(hub.default)
        assert hub.match_quant(hub.default.lower()) == hub.default
    for name in ("starcoder2-3b", "bigcode/starcoder2-7b", "qwen2.5-coder-1.5b-base"):
        info = lookup(name)
        assert info is not None and info.hub is not None, name


def test_model_setting_resolution_for_the_llamacpp_backend(tmp_path: Path) -> None:
    from starcoder_ls.models.hub import resolve_gguf

    file = tmp_path / "starcoder2-3b-Q4_K_M.gguf"
    file.write_bytes(b"GGUF")
    assert resolve_gguf(str(file)) == str(file)  # an existing path is a path
    missing = str(tmp_path / "nowhere.gguf")
    assert resolve_gguf(missing) == missing  # the loader reports a missing file
    assert resolve_gguf("starcoder-ls-tiny") == str(BUNDLED_GGUF)
    assert resolve_gguf("some-org/unknown-model") == "some-org/unknown-model"


def test_vocabularies_without_fim_tokens_are_left_to_right() -> None:
    from starcoder_ls.models.registry import left_to_right_family

    assert left_to_right_family({"<bos>", "<eos>", "def"}) == "left-to-right"
    assert left_to_right_family({"<repo_name>", "<file_sep>", "<|endoftext|>"}) == (
        "left-to-right-repo"
    )
