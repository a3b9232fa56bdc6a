from __future__ import annotations

import copy
import json

from starcoder_ls.models import BUNDLED_DIR

from starcoder_ls.recipe.card import render_card


def _bundled() -> tuple[dict, list[dict]]:
    report = json.loads((BUNDLED_DIR / "report.json").read_text())
    metrics = [json.loads(x) for x in (BUNDLED_DIR / "metrics.jsonl").read_text().splitlines() if x]
    return report, metrics


def test_committed_card_is_the_rendering_of_the_committed_report() -> None:
    report, metrics = _bundled()
    assert (BUNDLED_DIR / "MODEL_CARD.md").read_text() == render_card(report, metrics)


def test_card_says_whether_the_model_beats_the_baselines() -> None:
    report, metrics = _bundled()
    better = copy.deepcopy(report)
    better["evaluation"]["transformers_fp32"]["fim_line"].update(
        exact_match=0.5, edit_similarity=0.9
    )
    text = render_card(better, metrics)
    assert "It beats both baselines" in text and "does not beat" not in text
    worse = copy.deepcopy(report)
    worse["evaluation"]["transformers_fp32"]["fim_line"].update(
        exact_match=0.0, edit_similarity=0.0
    )
    assert "**It does not beat the trivial baselines**" in render_card(worse, metrics)
