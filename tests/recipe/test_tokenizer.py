from __future__ import annotations

import json
from pathlib import Path

import pytest

from starcoder_ls.prompt.tokens import SPECIAL_TOKENS
from starcoder_ls.recipe.errors import RecipeError
from starcoder_ls.recipe.tokenizer import CodeTokenizer, train_tokenizer

TRICKY = [
    "def foo(x):\n    return x + 12345\n",
    "\tif (a === b) { return `${a}`; }\r\n",
    "naïve café 日本語 🙂 ошибка",
    "    \n\n\n        trailing   ",
    "x=1;y=22;z=333 # 3.14159e-10",
    "",
]


def test_special_tokens_have_starcoder_ids(corpus_tokenizer_file: Path) -> None:
    tok = CodeTokenizer.load(corpus_tokenizer_file)
    assert [tok.token_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert SPECIAL_TOKENS[:4] == ("<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>")
    assert SPECIAL_TOKENS[-2:] == ("<repo_name>", "<file_sep>")
    assert tok.eos_id == 0
    assert tok.vocab_size == 768


@pytest.mark.parametrize("text", TRICKY)
def test_round_trip(corpus_tokenizer_file: Path, text: str) -> None:
    tok = CodeTokenizer.load(corpus_tokenizer_file)
    assert tok.decode(tok.encode(text)) == text


def test_digits_are_split_one_by_one(corpus_tokenizer_file: Path) -> None:
    tok = CodeTokenizer.load(corpus_tokenizer_file)
    ids = tok.encode("9876543210")
    assert len(ids) == 10
    assert [tok.decode([i]) for i in ids] == list("9876543210")


def test_special_token_spellings_in_text_become_single_ids(corpus_tokenizer_file: Path) -> None:
    tok = CodeTokenizer.load(corpus_tokenizer_file)
    ids = tok.encode("<fim_prefix>a = 1<fim_suffix>\n<fim_middle>")
    assert ids[0] == 1 and 3 in ids and ids[-1] == 2
    assert tok.decode(ids, skip_special=True) == "a = 1\n"


def test_tokenizer_json_uses_starcoder_pretokenizer(corpus_tokenizer_file: Path) -> None:
    spec = json.loads(corpus_tokenizer_file.read_text())
    pre = spec["pre_tokenizer"]["pretokenizers"]
    assert pre[0] == {"type": "Digits", "individual_digits": True}
    assert pre[1]["type"] == "ByteLevel" and pre[1]["use_regex"] and not pre[1]["add_prefix_space"]
    assert spec["model"]["type"] == "BPE"


def test_bad_inputs_are_clear(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="tokenizer not found"):
        CodeTokenizer.load(tmp_path / "missing.json")
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(RecipeError, match="cannot read tokenizer"):
        CodeTokenizer.load(tmp_path)
    with pytest.raises(RecipeError, match="too small"):
        train_tokenizer(["abc"], 100)
