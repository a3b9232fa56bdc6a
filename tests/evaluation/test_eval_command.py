"""How ``starcoder-ls eval`` reads its command line: models and servers, the old form."""

from __future__ import annotations

import pytest

from starcoder_ls.evaluation.command import legacy_argv, model_overrides, parse_vary
from starcoder_ls.types import UserError


def test_a_model_is_a_model_and_a_url_is_a_server() -> None:
    assert model_overrides("gemma-3-270m") == {"model": "gemma-3-270m"}
    assert model_overrides("/models/x.gguf") == {"model": "/models/x.gguf"}
    assert model_overrides("http://gpu-box:8000") == {
        "backend": "starcoder-ls",
        "url": "http://gpu-box:8000",
    }
    assert model_overrides("llamacpp-server+http://127.0.0.1:8080") == {
        "backend": "llamacpp-server",
        "url": "http://127.0.0.1:8080",
    }
    assert model_overrides("ollama+http://localhost:11434#starcoder2:3b") == {
        "backend": "ollama",
        "url": "http://localhost:11434",
        "model": "starcoder2:3b",
    }
    # A "+" in the path or the model is not a backend.
    assert model_overrides("https://h/v1+x")["backend"] == "starcoder-ls"


def test_eval_without_a_suite_is_recall() -> None:
    assert legacy_argv(["eval", "--workspace", "."]) == ["eval", "recall", "--workspace", "."]
    assert legacy_argv(["--log-level", "DEBUG", "eval", "--workspace", "."])[2:4] == [
        "eval",
        "recall",
    ]
    assert legacy_argv(["eval", "lines", "--workspace", "."])[1] == "lines"
    assert legacy_argv(["eval", "--help"]) == ["eval", "--help"]
    assert legacy_argv(["complete", "eval"]) == ["complete", "eval"]


def test_vary_values_are_json_where_they_are_json() -> None:
    assert parse_vary("contextTokens=512,2048") == ("contextTokens", [512, 2048])
    assert parse_vary("crossFile=true,false") == ("crossFile", [True, False])
    assert parse_vary("family=starcoder,left-to-right") == (
        "family",
        ["starcoder", "left-to-right"],
    )
    with pytest.raises(UserError):
        parse_vary("contextTokens")
