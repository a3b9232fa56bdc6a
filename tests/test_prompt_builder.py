"""Prompt assembly: cross-file context dropped lowest-score-first until the prompt fits, counted
with the bundled model's real tokenizer (special tokens as one token, as backends parse them)."""

from __future__ import annotations

import sysconfig
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from starcoder_ls.models import BUNDLED_HF

from starcoder_ls.prompt import build_prompt, estimate_tokens, render
from starcoder_ls.prompt.templates import FAMILIES
from starcoder_ls.types import CompletionMode, FimInput, Prompt, Segment


@pytest.fixture(scope="module")
def count() -> Callable[[str], int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(BUNDLED_HF / "tokenizer.json"))
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids)


def _snippet(name: str, lines: int) -> str:
    return "".join(f"def {name}_{i}(value):\n    return value + {i}\n" for i in range(lines))


LOW = Segment("similar", "pkg/low.py", 1, 8, _snippet("low", 4), score=0.1)
MID = Segment("definition", "pkg/mid.py", 1, 8, _snippet("mid", 4), score=0.5)
HIGH = Segment("import", "pkg/high.py", 1, 8, _snippet("high", 4), score=0.9)
FIM = FimInput(
    "def main():\n    total = ",
    "\n    return total\n",
    path="pkg/main.py",
    language="python",
    repo_name="demo",
    extra=(LOW, HIGH, MID),
)
IN_FILE = (
    Segment("prefix", "pkg/main.py", 1, 2, FIM.prefix),
    Segment("suffix", "pkg/main.py", 2, 3, FIM.suffix),
)


def _build(count: Callable[[str], int], budget: int, fim: FimInput = FIM, **kw: object) -> Prompt:
    return build_prompt(
        fim,
        "starcoder-ls",
        count_tokens=count,
        budget_tokens=budget,
        mode=CompletionMode.MULTI_LINE,
        segments=IN_FILE,
        **kw,  # type: ignore[arg-type]
    )


def test_everything_fits_in_a_large_budget(count: Callable[[str], int]) -> None:
    prompt = _build(count, 10_000)
    assert prompt.text == render(FIM, "starcoder-ls")
    assert prompt.tokens == count(prompt.text)
    assert prompt.family == "starcoder-ls"
    assert prompt.stop == FAMILIES["starcoder-ls"].stop
    assert prompt.mode is CompletionMode.MULTI_LINE
    assert [s.path for s in prompt.fim.extra] == ["pkg/low.py", "pkg/high.py", "pkg/mid.py"]
    kinds = [s.kind for s in prompt.segments]
    assert kinds == ["similar", "import", "definition", "prefix", "suffix"]
    assert all(s.tokens > 0 for s in prompt.segments)
    assert prompt.segments[3].tokens == count(FIM.prefix)


def _budget_without(count: Callable[[str], int], *dropped: Segment) -> int:
    kept = tuple(s for s in FIM.extra if s not in dropped)
    return count(render(replace(FIM, extra=kept), "starcoder-ls"))


def test_lowest_score_is_dropped_first_and_the_result_fits(count: Callable[[str], int]) -> None:
    budget = _budget_without(count, LOW)
    prompt = _build(count, budget)
    assert prompt.tokens <= budget
    assert [s.path for s in prompt.fim.extra] == ["pkg/high.py", "pkg/mid.py"]
    assert "pkg/low.py" not in prompt.text and "pkg/high.py" in prompt.text
    assert [s.path for s in prompt.segments[:2]] == ["pkg/high.py", "pkg/mid.py"]


def test_two_dropped_when_one_is_not_enough(count: Callable[[str], int]) -> None:
    budget = _budget_without(count, LOW) - 1
    prompt = _build(count, budget)
    assert prompt.tokens <= budget
    assert [s.path for s in prompt.fim.extra] == ["pkg/high.py"]


def test_exact_budget_keeps_everything(count: Callable[[str], int]) -> None:
    budget = count(render(FIM, "starcoder-ls"))
    assert len(_build(count, budget).fim.extra) == 3
    assert len(_build(count, budget - 1).fim.extra) == 2


def test_equal_scores_drop_the_earliest_least_relevant_first(count: Callable[[str], int]) -> None:
    a = Segment("similar", "a.py", 1, 8, _snippet("a", 4), score=0.3)
    b = Segment("similar", "b.py", 1, 8, _snippet("b", 4), score=0.3)
    fim = FimInput("x = ", "\n", path="main.py", extra=(a, b))
    budget = count(render(FimInput("x = ", "\n", path="main.py", extra=(b,)), "starcoder-ls"))
    prompt = _build(count, budget, fim)
    assert [s.path for s in prompt.fim.extra] == ["b.py"]


def test_window_over_budget_drops_all_extras_and_reports_the_truth(
    count: Callable[[str], int],
) -> None:
    prompt = _build(count, 5)
    assert prompt.fim.extra == ()
    assert prompt.text == render(replace(FIM, extra=()), "starcoder-ls")
    assert prompt.tokens == count(prompt.text) > 5


def test_spm_and_other_families(count: Callable[[str], int]) -> None:
    prompt = _build(count, 10_000, fim_mode="spm")
    assert prompt.text == render(FIM, "starcoder-ls", "spm")
    qwen = build_prompt(
        FIM,
        "qwen2.5-coder",
        count_tokens=estimate_tokens,
        budget_tokens=10_000,
        mode=CompletionMode.SINGLE_LINE,
    )
    assert qwen.text == render(FIM, "qwen2.5-coder")
    assert qwen.mode is CompletionMode.SINGLE_LINE
    assert "<|file_sep|>" in qwen.stop
    with pytest.raises(ValueError, match="not trained with SPM"):
        build_prompt(
            FIM,
            "qwen2.5-coder",
            count_tokens=estimate_tokens,
            budget_tokens=10_000,
            mode=CompletionMode.SINGLE_LINE,
            fim_mode="spm",
        )


def test_comment_layout_trims_the_same_way(count: Callable[[str], int]) -> None:
    full = count(render(FIM, "codellama"))
    prompt = build_prompt(
        FIM,
        "codellama",
        count_tokens=count,
        budget_tokens=full - 1,
        mode=CompletionMode.MULTI_LINE,
    )
    assert prompt.tokens <= full - 1
    assert [s.path for s in prompt.fim.extra] == ["pkg/high.py", "pkg/mid.py"]
    assert prompt.text.startswith("<PRE> # Path: pkg/high.py\n")


def test_segments_with_tokens_keep_them_and_empty_extras_are_skipped(
    count: Callable[[str], int],
) -> None:
    given = Segment("prefix", "a.py", 1, 1, "x = ", tokens=42)
    blank = Segment("similar", "b.py", 1, 1, "\n\n", score=1.0)
    prompt = build_prompt(
        FimInput("x = ", "\n", extra=(blank,)),
        "starcoder",
        count_tokens=count,
        budget_tokens=100,
        mode=CompletionMode.SINGLE_LINE,
        segments=(given,),
    )
    assert prompt.segments == (given,)
    assert prompt.fim.extra == ()


def test_estimate_counts_special_tokens_as_one() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("<fim_prefix>") == 1
    assert estimate_tokens("<｜fim▁begin｜><｜fim▁hole｜><｜fim▁end｜>") == 3
    assert estimate_tokens("<|fim_prefix|>abcdefg<|fim_suffix|><|fim_middle|>") == 3 + 2
    assert estimate_tokens("a" * 35) == 10
    # bytes, not characters: CJK is about one token per character in byte-level BPE
    assert estimate_tokens("漢字" * 7) == 12
    assert estimate_tokens("<not_special>") == 4


def test_estimate_is_close_to_a_real_tokenizer_on_real_code(count: Callable[[str], int]) -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in ("textwrap.py", "shlex.py", "bisect.py"):
        text = (stdlib / name).read_text(encoding="utf-8")
        ratio = estimate_tokens(text) / count(text)
        assert 0.6 < ratio < 1.6, (name, ratio)


def test_exact_count_decides_when_block_counts_do_not_add_up() -> None:
    """A tokenizer may merge across block boundaries; the builder must trust the exact count
    of the whole prompt over the sum of its blocks."""

    def merging(text: str) -> int:
        # three <file_sep> in one text cost 1000 more than their blocks alone
        return len(text) + (1000 if text.count("<file_sep>") == 3 else 0)

    budget = len(render(replace(FIM, extra=(HIGH, MID)), "starcoder-ls"))
    prompt = _build(merging, budget)
    assert prompt.tokens <= budget
    assert [s.path for s in prompt.fim.extra] == ["pkg/high.py"]
