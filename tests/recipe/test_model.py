from __future__ import annotations

import pytest

from starcoder_ls.recipe.errors import RecipeError
from starcoder_ls.recipe.model import (
    PRESETS,
    build_config,
    build_model,
    count_parameters,
    get_preset,
)

# Parameter counts the presets must keep (StarCoderBase-1B and StarCoder-15B's published sizes).
EXPECTED_MILLIONS = {
    "micro": 0.14,
    "tiny": 2.56,
    "small": 31.0,
    "125m": 111.4,
    "1b": 1137.2,
    "3b": 3043.3,
    "15b": 15517.5,
}


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds(name: str) -> None:
    model = build_model(name, device="meta")
    cfg = model.config
    assert cfg.model_type == "gpt_bigcode" and cfg.multi_query
    assert count_parameters(model) / 1e6 == pytest.approx(EXPECTED_MILLIONS[name], abs=0.1)
    # Multi-query attention: one key/value head, so c_attn projects to n_embd + 2 * head_dim.
    attn = model.transformer.h[0].attn.c_attn
    assert attn.out_features == cfg.n_embd + 2 * (cfg.n_embd // cfg.n_head)
    assert model.transformer.wpe.num_embeddings == cfg.n_positions  # learned absolute positions


def test_tiny_fits_k_quants_and_really_builds() -> None:
    tiny = get_preset("tiny")
    assert tiny.n_embd % 256 == 0 and (4 * tiny.n_embd) % 256 == 0
    model = build_model("tiny")
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()  # tied


def test_seed_makes_init_deterministic() -> None:
    a, b = build_model("micro", seed=3), build_model("micro", seed=3)
    assert all((p == q).all() for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_unknown_preset() -> None:
    with pytest.raises(RecipeError, match=r"unknown model preset 'huge'.*tiny"):
        build_config("huge")
