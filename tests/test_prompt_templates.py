"""FIM templates: the exact prompt strings of each family, written by hand from the documented
formats (model cards, papers, reference code), and the bundled model's format checked against
the training code that produced its data."""

from __future__ import annotations

import numpy as np
import pytest
from starcoder_ls.models import BUNDLED_HF

from starcoder_ls.prompt import tokens
from starcoder_ls.prompt.templates import FAMILIES, comment_style, render, spm_families
from starcoder_ls.recipe.fim import (
    FimConfig,
    FimSplit,
    document_pieces,
    encode_pieces,
    fim_pieces,
    repo_pieces,
)
from starcoder_ls.recipe.fim import render as render_pieces
from starcoder_ls.types import FimInput, Segment

PRE = "def add(a, b):\n    return "
SUF = "\n\nprint(add(1, 2))\n"
PLAIN = FimInput(PRE, SUF)
UTIL = Segment("definition", "pkg/util.py", 1, 2, "def mul(a, b):\n    return a * b", score=0.5)
WITH_PATH = FimInput(PRE, SUF, path="pkg/main.py", language="python")
REPO = FimInput(PRE, SUF, path="pkg/main.py", language="python", repo_name="demo", extra=(UTIL,))


PLAIN_PSM = {
    "starcoder": f"<fim_prefix>{PRE}<fim_suffix>{SUF}<fim_middle>",
    "starcoder2": f"<fim_prefix>{PRE}<fim_suffix>{SUF}<fim_middle>",
    "santacoder": f"<fim-prefix>{PRE}<fim-suffix>{SUF}<fim-middle>",
    "codellama": f"<PRE> {PRE} <SUF>{SUF} <MID>",
    "deepseek-coder": f"<｜fim▁begin｜>{PRE}<｜fim▁hole｜>{SUF}<｜fim▁end｜>",
    "qwen2.5-coder": f"<|fim_prefix|>{PRE}<|fim_suffix|>{SUF}<|fim_middle|>",
    "codegemma": f"<|fim_prefix|>{PRE}<|fim_suffix|>{SUF}<|fim_middle|>",
    "starcoder-ls": f"<fim_prefix>{PRE}<fim_suffix>{SUF}<fim_middle>",
    # No FIM: the code before the cursor, nothing else (the suffix steers post-processing).
    "left-to-right": PRE,
    "left-to-right-repo": PRE,
}


@pytest.mark.parametrize("family", sorted(PLAIN_PSM))
def test_plain_psm_prompt_is_the_documented_one(family: str) -> None:
    assert render(PLAIN, family) == PLAIN_PSM[family]
    assert render(PLAIN, family, "psm") == PLAIN_PSM[family]


def test_every_family_has_a_plain_psm_expectation() -> None:
    assert set(FAMILIES) == set(PLAIN_PSM)


def test_deepseek_sentinels_use_full_width_bars_and_lower_one_eighth_block() -> None:
    prompt = render(PLAIN, "deepseek-coder")
    assert prompt.startswith("<\uff5cfim\u2581begin\uff5c>")
    assert "<\uff5cfim\u2581hole\uff5c>" in prompt
    assert prompt.endswith("<\uff5cfim\u2581end\uff5c>")


SPM = {
    "starcoder": f"<fim_prefix><fim_suffix>{SUF}<fim_middle>{PRE}",
    "santacoder": f"<fim-prefix><fim-suffix>{SUF}<fim-middle>{PRE}",
    "codellama": f"<PRE> <SUF>{SUF} <MID> {PRE}",
    "starcoder-ls": f"<fim_prefix><fim_suffix>{SUF}<fim_middle>{PRE}",
}


@pytest.mark.parametrize("family", sorted(SPM))
def test_spm_is_bigcodes_variant(family: str) -> None:
    assert render(PLAIN, family, "spm") == SPM[family]


def test_spm_only_where_trained() -> None:
    assert set(spm_families()) == set(SPM)
    for family in set(FAMILIES) - set(SPM):
        with pytest.raises(ValueError, match="not trained with SPM"):
            render(PLAIN, family, "spm")


def test_unknown_family_and_mode_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown prompt family 'gpt-4'"):
        render(PLAIN, "gpt-4")
    with pytest.raises(ValueError, match="FIM mode must be one of psm, spm"):
        render(PLAIN, "starcoder", "pms")


WITH_PATH_PSM = {
    # StarCoder: the metadata header is the start of the file text, inside the prefix.
    "starcoder": f"<fim_prefix><filename>pkg/main.py\n{PRE}<fim_suffix>{SUF}<fim_middle>",
    # StarCoder2 paper: "<file_sep><fim_prefix>filepath1\ncode1_pre<fim_suffix>...".
    "starcoder2": f"<file_sep><fim_prefix>pkg/main.py\n{PRE}<fim_suffix>{SUF}<fim_middle>",
    "qwen2.5-coder": f"<|file_sep|>pkg/main.py\n<|fim_prefix|>{PRE}<|fim_suffix|>{SUF}<|fim_middle|>",
    "starcoder-ls": f"<file_sep>pkg/main.py\n<fim_prefix>{PRE}<fim_suffix>{SUF}<fim_middle>",
    # No file-header format: the path alone is not worth a comment.
    "santacoder": PLAIN_PSM["santacoder"],
    "codellama": PLAIN_PSM["codellama"],
    "codegemma": PLAIN_PSM["codegemma"],
    "deepseek-coder": PLAIN_PSM["deepseek-coder"],
    "left-to-right": PRE,
    # StarCoder2's repository document, without FIM.
    "left-to-right-repo": f"<file_sep>pkg/main.py\n{PRE}",
}


@pytest.mark.parametrize("family", sorted(WITH_PATH_PSM))
def test_current_file_path(family: str) -> None:
    assert render(WITH_PATH, family) == WITH_PATH_PSM[family]


def test_starcoder_spm_keeps_the_filename_header_at_the_start_of_the_prefix() -> None:
    assert render(WITH_PATH, "starcoder", "spm") == (
        f"<fim_prefix><fim_suffix>{SUF}<fim_middle><filename>pkg/main.py\n{PRE}"
    )


UTIL_CODE = "def mul(a, b):\n    return a * b\n"
UTIL_COMMENTS = "# Path: pkg/util.py\n# def mul(a, b):\n#     return a * b\n"

REPO_PSM = {
    "starcoder2": (
        f"<repo_name>demo<file_sep>pkg/util.py\n{UTIL_CODE}"
        f"<file_sep><fim_prefix>pkg/main.py\n{PRE}<fim_suffix>{SUF}<fim_middle>"
    ),
    "qwen2.5-coder": (
        f"<|repo_name|>demo\n<|file_sep|>pkg/util.py\n{UTIL_CODE}\n"
        f"<|file_sep|>pkg/main.py\n<|fim_prefix|>{PRE}<|fim_suffix|>{SUF}<|fim_middle|>"
    ),
    "starcoder-ls": (
        f"<repo_name>demo<file_sep>pkg/util.py\n{UTIL_CODE}"
        f"<file_sep>pkg/main.py\n<fim_prefix>{PRE}<fim_suffix>{SUF}<fim_middle>"
    ),
    "deepseek-coder": (
        f"<｜fim▁begin｜># pkg/util.py\n{UTIL_CODE}\n# pkg/main.py\n{PRE}"
        f"<｜fim▁hole｜>{SUF}<｜fim▁end｜>"
    ),
    "starcoder": (
        f"<fim_prefix><filename>pkg/main.py\n{UTIL_COMMENTS}{PRE}<fim_suffix>{SUF}<fim_middle>"
    ),
    "santacoder": f"<fim-prefix>{UTIL_COMMENTS}{PRE}<fim-suffix>{SUF}<fim-middle>",
    "codellama": f"<PRE> {UTIL_COMMENTS}{PRE} <SUF>{SUF} <MID>",
    "codegemma": f"<|fim_prefix|>{UTIL_COMMENTS}{PRE}<|fim_suffix|>{SUF}<|fim_middle|>",
    "left-to-right": f"{UTIL_COMMENTS}{PRE}",
    "left-to-right-repo": (
        "<repo_name>demo<file_sep>pkg/util.py\ndef mul(a, b):\n    return a * b\n"
        f"<file_sep>pkg/main.py\n{PRE}"
    ),
}


@pytest.mark.parametrize("family", sorted(REPO_PSM))
def test_cross_file_context(family: str) -> None:
    assert render(REPO, family) == REPO_PSM[family]


def test_extras_keep_their_order_most_relevant_last() -> None:
    other = Segment("similar", "pkg/io.py", 3, 3, "def read(): ...\n", score=0.9)
    fim = FimInput(PRE, SUF, path="pkg/main.py", repo_name="demo", extra=(UTIL, other))
    assert render(fim, "starcoder2") == (
        f"<repo_name>demo<file_sep>pkg/util.py\n{UTIL_CODE}<file_sep>pkg/io.py\ndef read(): ...\n"
        f"<file_sep><fim_prefix>pkg/main.py\n{PRE}<fim_suffix>{SUF}<fim_middle>"
    )


def test_comments_follow_the_current_files_language() -> None:
    js = FimInput("const x = ", ";\n", path="src/app.ts", extra=(UTIL,))
    assert render(js, "codegemma") == (
        "<|fim_prefix|>// Path: pkg/util.py\n// def mul(a, b):\n//     return a * b\n"
        "const x = <|fim_suffix|>;\n<|fim_middle|>"
    )
    blank = Segment("similar", "a.lua", 1, 3, "local a = 1\n\nreturn a", score=0.1)
    lua = FimInput("x = ", "\n", language="lua", extra=(blank,))
    assert render(lua, "santacoder") == (
        "<fim-prefix>-- Path: a.lua\n-- local a = 1\n--\n-- return a\nx = <fim-suffix>\n<fim-middle>"
    )
    assert comment_style("html") == ("<!--", "-->")
    assert comment_style(None, "Makefile") == ("#", "")
    assert comment_style(None, "weird.unknown") == ("#", "")


def test_block_comment_languages_cannot_be_closed_early_by_the_snippet() -> None:
    css = Segment("similar", "a.css", 1, 1, "a { } /* x */ b { }", score=0.1)
    fim = FimInput("p { ", " }\n", language="css", extra=(css,))
    assert render(fim, "codegemma") == (
        "<|fim_prefix|>/* Path: a.css\na { } /* x * / b { }\n*/\np { <|fim_suffix|> }\n<|fim_middle|>"
    )


def test_empty_extra_segments_are_left_out() -> None:
    empty = Segment("similar", "x.py", 1, 1, "  \n")
    fim = FimInput(PRE, SUF, path="pkg/main.py", extra=(empty,))
    assert render(fim, "starcoder-ls") == WITH_PATH_PSM["starcoder-ls"]
    assert render(fim, "codellama") == PLAIN_PSM["codellama"]


STOPS = {
    "starcoder": {"<|endoftext|>", "<fim_pad>"},
    "starcoder2": {"<|endoftext|>", "<fim_pad>", "<file_sep>"},
    "santacoder": {"<|endoftext|>", "<fim-pad>"},
    "codellama": {"<EOT>"},
    "deepseek-coder": {"<｜end▁of▁sentence｜>"},
    "qwen2.5-coder": {"<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>"},
    "codegemma": {"<|file_separator|>"},
    "starcoder-ls": set(tokens.STOP_TOKENS),
}


@pytest.mark.parametrize("family", sorted(STOPS))
def test_stop_strings(family: str) -> None:
    assert STOPS[family] <= set(FAMILIES[family].stop)


def test_left_to_right_has_no_sentinels_and_no_spm() -> None:
    template = FAMILIES["left-to-right"]
    assert template.special_tokens == ()
    assert "left-to-right" not in spm_families()
    with pytest.raises(ValueError, match="SPM"):
        render(PLAIN, "left-to-right", "spm")
    assert SUF not in render(REPO, "left-to-right")


def test_repo_format_flags() -> None:
    repo = {name for name, t in FAMILIES.items() if t.repo_format}
    assert repo == {
        "starcoder2",
        "qwen2.5-coder",
        "starcoder-ls",
        "deepseek-coder",
        "left-to-right-repo",
    }
    headers = {name for name, t in FAMILIES.items() if t.file_header}
    assert headers == repo | {"starcoder"}


# --- the bundled model: the prompt must be a prefix of a training document ------------------


def _split_from(pieces: list[tuple[str, bool]]) -> tuple[int, str, str]:
    """(index of <fim_middle>, prefix, suffix) of a FIM document made by the training code."""
    texts = [t for t, _ in pieces]
    start = texts.index(tokens.FIM_PREFIX)
    mid = texts.index(tokens.FIM_MIDDLE)
    if texts[start + 1] == tokens.FIM_SUFFIX:  # SPM: P S suffix M prefix middle
        return mid, texts[mid + 1], texts[start + 2]
    return mid, texts[start + 1], texts[start + 3]


TARGET = "import os\n\n\ndef home():\n    return os.path.expanduser('~')\n\n\nprint(home())\n"
SIBLINGS = [("pkg/util.py", UTIL_CODE), ("pkg/io.py", "def read(path):\n    return open(path)\n")]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("spm", [False, True])
def test_bundled_repo_prompt_is_a_training_document_prefix(seed: int, spm: bool) -> None:
    rng = np.random.default_rng(seed)
    config = FimConfig(fim_rate=1.0, spm_rate=1.0 if spm else 0.0)
    pieces = repo_pieces("demo", SIBLINGS, "pkg/main.py", TARGET, rng, config)
    mid, pre, suf = _split_from(pieces)
    extra = tuple(Segment("similar", p, 1, 2, code) for p, code in SIBLINGS)
    fim = FimInput(pre, suf, path="pkg/main.py", repo_name="demo", extra=extra)
    upto = pieces[: mid + 2] if spm else pieces[: mid + 1]
    assert render(fim, "starcoder-ls", "spm" if spm else "psm") == render_pieces(upto)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("header", [None, "pkg/main.py"])
def test_bundled_single_file_prompt_is_a_training_document_prefix(
    seed: int, header: str | None
) -> None:
    rng = np.random.default_rng(seed)
    pieces = document_pieces(TARGET, rng, FimConfig(fim_rate=1.0, spm_rate=0.0), header=header)
    mid, pre, suf = _split_from(pieces)
    fim = FimInput(pre, suf, path=header, repo_name="ignored without other files")
    assert render(fim, "starcoder-ls") == render_pieces(pieces[: mid + 1])


class _Encoder:
    def __init__(self) -> None:
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(BUNDLED_HF / "tokenizer.json"))

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False).ids)

    def token_id(self, token: str) -> int:
        tid = self.tok.token_to_id(token)
        assert tid is not None
        return int(tid)


@pytest.fixture(scope="module")
def bundled() -> _Encoder:
    return _Encoder()


def test_bundled_tokenizer_reads_the_sentinels_as_single_special_ids(bundled: _Encoder) -> None:
    ids = bundled.encode(render(FimInput("x = ", "\n"), "starcoder-ls"))
    assert [i for i in ids if i < 21] == [1, 3, 2]
    assert ids[0] == 1 and ids[-1] == 2
    fim = FimInput("def f(", "):\n    pass\n", path="a.py", repo_name="r", extra=(UTIL,))
    ids = bundled.encode(render(fim, "starcoder-ls"))
    sep, repo = tokens.SPECIAL_IDS[tokens.FILE_SEP], tokens.SPECIAL_IDS[tokens.REPO_NAME]
    assert [i for i in ids if i < 21] == [repo, sep, sep, 1, 3, 2]
    spm = bundled.encode(render(FimInput("x = ", "\n"), "starcoder-ls", "spm"))
    assert [i for i in spm if i < 21] == [1, 3, 2]


@pytest.mark.parametrize("spm", [False, True])
def test_bundled_prompt_tokenizes_exactly_like_training(bundled: _Encoder, spm: bool) -> None:
    """Training encodes each piece on its own; the whole prompt, tokenized as a backend does
    (special spellings parsed), must give the very same ids."""
    rng = np.random.default_rng(7)
    config = FimConfig(fim_rate=1.0, spm_rate=1.0 if spm else 0.0)
    pieces = repo_pieces("demo", SIBLINGS, "pkg/main.py", TARGET, rng, config)
    mid, pre, suf = _split_from(pieces)
    upto = pieces[: mid + 2] if spm else pieces[: mid + 1]
    extra = tuple(Segment("similar", p, 1, 2, code) for p, code in SIBLINGS)
    fim = FimInput(pre, suf, path="pkg/main.py", repo_name="demo", extra=extra)
    text = render(fim, "starcoder-ls", "spm" if spm else "psm")
    assert bundled.encode(text) == encode_pieces(upto, bundled)


def test_psm_split_pieces_match_render_directly() -> None:
    for spm in (False, True):
        pieces = fim_pieces(FimSplit(PRE, "", SUF, spm))
        assert render(PLAIN, "starcoder-ls", "spm" if spm else "psm") == render_pieces(pieces)
