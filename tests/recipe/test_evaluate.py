from __future__ import annotations

from dataclasses import dataclass

import pytest

from starcoder_ls.evaluation.heldout import baselines, edit_similarity, sample_lines


@dataclass
class F:
    path: str
    text: str


FILES = [
    F("b.py", "import os\n\n\ndef f(x):\n    return x\n\n\ndef g(x):\n    return x\n"),
    F("a.py", "A = 1\nB = 2\n\nC = A + B\n"),
]


def test_samples_are_deterministic_non_blank_and_rebuild_the_file() -> None:
    one = sample_lines(FILES, 6, seed=4)
    assert one == sample_lines(list(reversed(FILES)), 6, seed=4)
    assert one != sample_lines(FILES, 6, seed=5)
    texts = {f.path: f.text for f in FILES}
    for s in one:
        assert s.target.strip()
        assert s.prefix + s.target + "\n" + s.suffix == texts[s.path]
        assert s.prefix.count("\n") == s.line


def test_previous_line_baseline_and_empty_baseline() -> None:
    samples = sample_lines(FILES, 100, seed=0)  # all 8 non-blank lines
    assert len(samples) == 8
    b = baselines(samples)
    assert b["empty_line"] == {"exact_match": 0.0, "edit_similarity": 0.0}
    # "    return x" repeats nothing above it; only the second "def ..." is not a repeat either.
    g = next(s for s in samples if s.path == "b.py" and s.target.startswith("def g"))
    assert g.previous == "    return x"
    second_return = [s for s in samples if s.target == "    return x"][1]
    assert second_return.previous == "def g(x):"
    assert 0 < b["repeat_previous_line"]["edit_similarity"] < 1


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("abc", "abc", 1.0),
        ("", "abc", 0.0),
        ("abcd", "abce", 0.75),
        ("return x", "return y", 0.875),
    ],
)
def test_edit_similarity(a: str, b: str, expected: float) -> None:
    assert edit_similarity(a, b) == pytest.approx(expected)
