"""Each remote dialect against a local server that checks the request body field by field
against the server's documented API and answers in its documented shape.

The field lists below are transcribed from each project's API reference (OpenAI completions,
TGI ``GenerateParameters``, Ollama ``/api/generate``, llama.cpp server ``/infill`` and
``/completion``); a body with a field outside them, a missing required one or a value the real
server rejects (TGI: ``temperature`` 0, ``top_p`` 1, more than 4 stop sequences) fails here.
"""

from __future__ import annotations

from typing import Any

import pytest
from wire_formats import OLLAMA_FIELDS, OLLAMA_OPTIONS

from starcoder_ls.backends.http import HttpBackend
from starcoder_ls.types import (
    CancelToken,
    FimInput,
    Generation,
    GenerationParams,
    Prompt,
    Segment,
)

OPENAI_FIELDS = {
    "model", "prompt", "suffix", "max_tokens", "temperature", "top_p", "n", "stream",
    "logprobs", "echo", "stop", "presence_penalty", "frequency_penalty", "best_of",
    "logit_bias", "user", "seed",
}  # fmt: skip
TGI_PARAMETERS = {
    "best_of", "decoder_input_details", "details", "do_sample", "max_new_tokens",
    "repetition_penalty", "frequency_penalty", "return_full_text", "seed", "stop",
    "temperature", "top_k", "top_n_tokens", "top_p", "truncate", "typical_p", "watermark",
    "grammar", "adapter_id",
}  # fmt: skip
INFILL_FIELDS = {
    "input_prefix", "input_suffix", "input_extra", "prompt", "n_predict", "temperature",
    "top_k", "top_p", "min_p", "stop", "stream", "cache_prompt", "seed", "n_keep",
    "repeat_penalty", "samplers", "id_slot", "t_max_predict_ms",
}  # fmt: skip

PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\nprint(add(1, 2))\n"
PROMPT = Prompt(
    text=f"<fim_prefix>{PREFIX}<fim_suffix>{SUFFIX}<fim_middle>",
    family="starcoder",
    stop=("<|endoftext|>", "<fim_pad>", "<file_sep>", "<fim_prefix>"),
    fim=FimInput(
        prefix=PREFIX,
        suffix=SUFFIX,
        path="calc.py",
        extra=(Segment("similar", "ops.py", 1, 2, "def sub(a, b):\n    return a - b\n"),),
    ),
)


def keys_within(body: dict[str, Any], allowed: set[str], required: set[str]) -> None:
    assert isinstance(body, dict)
    assert set(body) <= allowed, f"undocumented fields: {set(body) - allowed}"
    assert required <= set(body), f"missing fields: {required - set(body)}"


def check_openai(body: dict[str, Any], params: GenerationParams) -> None:
    keys_within(body, OPENAI_FIELDS, {"model", "prompt", "max_tokens"})
    assert body["model"] == "bigcode/starcoder2-3b"
    assert body["prompt"] == PROMPT.text
    assert body["max_tokens"] == params.max_tokens
    assert body["temperature"] == params.temperature
    assert body["stream"] is False
    assert isinstance(body["stop"], list) and all(isinstance(s, str) for s in body["stop"])
    assert body["stop"][: len(params.stop)] == list(params.stop)
    assert "<file_sep>" in body["stop"]


def check_tgi(body: dict[str, Any], params: GenerationParams) -> None:
    keys_within(body, {"inputs", "parameters", "stream"}, {"inputs", "parameters"})
    assert body["inputs"] == PROMPT.text
    p = body["parameters"]
    keys_within(p, TGI_PARAMETERS, {"max_new_tokens"})
    assert p["max_new_tokens"] == params.max_tokens
    assert p["return_full_text"] is False
    assert p["do_sample"] is (params.temperature > 0)
    # TGI's validation: temperature and top_p strictly inside their ranges, <= 4 stops.
    assert "temperature" not in p or p["temperature"] > 0
    assert "top_p" not in p or 0 < p["top_p"] < 1
    assert len(p["stop"]) <= 4
    assert p["stop"][: len(params.stop)] == list(params.stop)


def check_ollama(body: dict[str, Any], params: GenerationParams) -> None:
    keys_within(body, OLLAMA_FIELDS, {"model", "prompt"})
    assert (body["model"], body["prompt"]) == ("starcoder2:3b", PROMPT.text)
    assert body["raw"] is True and body["stream"] is False
    keys_within(body["options"], OLLAMA_OPTIONS, {"num_predict"})
    assert body["options"]["num_predict"] == params.max_tokens
    assert body["options"]["temperature"] == params.temperature
    assert body["options"]["stop"][: len(params.stop)] == list(params.stop)
    assert "<file_sep>" in body["options"]["stop"]


def check_infill(body: dict[str, Any], params: GenerationParams) -> None:
    keys_within(body, INFILL_FIELDS, {"input_prefix", "input_suffix"})
    assert (body["input_prefix"], body["input_suffix"]) == (PREFIX, SUFFIX)
    assert body["input_extra"] == [
        {"filename": "ops.py", "text": "def sub(a, b):\n    return a - b\n"}
    ]
    assert body["n_predict"] == params.max_tokens
    assert body["stream"] is False
    assert "<fim_prefix>" not in body["input_prefix"]  # the server adds the FIM tokens


OPENAI_ANSWER = {
    "id": "cmpl-1",
    "object": "text_completion",
    "created": 1,
    "model": "bigcode/starcoder2-3b",
    "choices": [{"index": 0, "text": "return a + b", "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 21, "completion_tokens": 5, "total_tokens": 26},
}
CASES: list[tuple[str, dict[str, Any], str, Any, Any, tuple[int, int, int, str]]] = [
    # kind, backend options, path, body check, answer, (prompt, evaluated, completion, finish)
    (
        "openai",
        {"model": "bigcode/starcoder2-3b"},
        "/v1/completions",
        check_openai,
        OPENAI_ANSWER,
        (21, 21, 5, "stop"),
    ),
    (
        "starcoder-ls",
        {"model": "bigcode/starcoder2-3b", "url_suffix": "/v1"},
        "/v1/completions",
        check_openai,
        {
            **OPENAI_ANSWER,
            "usage": {
                "prompt_tokens": 21,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 18},
            },
        },
        (21, 3, 5, "stop"),
    ),
    (
        "tgi",
        {},
        "/generate",
        check_tgi,
        {  # TGI keeps the stop sequence it matched in the text
            "generated_text": "return a + b<file_sep>",
            "details": {"finish_reason": "stop_sequence", "generated_tokens": 6, "seed": None},
        },
        (0, 0, 6, "stop"),
    ),
    (
        "ollama",
        {"model": "starcoder2:3b"},
        "/api/generate",
        check_ollama,
        {
            "model": "starcoder2:3b",
            "created_at": "2025-01-01T00:00:00Z",
            "response": "return a + b",
            "done": True,
            "done_reason": "length",
            "context": [1, 2, 3],
            "total_duration": 10,
            "prompt_eval_count": 7,
            "eval_count": 5,
        },
        (7, 7, 5, "length"),
    ),
    (
        "llamacpp-server",
        {},
        "/infill",
        check_infill,
        {
            "content": "return a + b",
            "stop": True,
            "stop_type": "eos",
            "stopping_word": "",
            "tokens_predicted": 5,
            "tokens_evaluated": 40,
            "tokens_cached": 44,
            "truncated": False,
            "timings": {"prompt_n": 4, "prompt_ms": 1.5, "predicted_n": 5, "predicted_ms": 3.0},
        },
        (40, 4, 5, "stop"),
    ),
    (
        "huggingface",
        {"model": "bigcode/starcoder"},
        "/models/bigcode/starcoder",
        check_tgi,
        [{"generated_text": "return a + b", "details": {"finish_reason": "length"}}],
        (0, 0, 0, "length"),
    ),
]


@pytest.mark.parametrize("kind, options, path, check, answer, expected", CASES)
@pytest.mark.parametrize(
    "params",
    [
        GenerationParams(max_tokens=48, stop=("\n",)),
        GenerationParams(max_tokens=16, temperature=0.7, top_p=0.9),
    ],
)
def test_dialect_speaks_the_documented_format(
    fake_server: Any,
    kind: str,
    options: dict[str, Any],
    path: str,
    check: Any,
    answer: Any,
    expected: tuple[int, int, int, str],
    params: GenerationParams,
) -> None:
    fake_server.handler = lambda seen, conn: (200, answer)
    url = fake_server.url + options.get("url_suffix", "")
    if kind == "huggingface":
        url += "/models/bigcode/starcoder"  # a dedicated endpoint; the default is the hosted API
    backend = HttpBackend(kind, url=url, model=options.get("model", ""), timeout_ms=5000)
    try:
        out = backend.generate(PROMPT, params, CancelToken())
    finally:
        backend.close()
    (seen,) = fake_server.seen
    assert (seen.method, seen.path) == ("POST", path)
    assert seen.headers["content-type"] == "application/json"
    check(seen.body, params)
    assert out == Generation(
        text="return a + b",
        prompt_tokens=expected[0],
        evaluated_tokens=expected[1],
        completion_tokens=expected[2],
        latency_ms=out.latency_ms,
        finish_reason=expected[3],
    )


def test_hosted_huggingface_url_and_key_variable() -> None:
    backend = HttpBackend("huggingface", model="bigcode/starcoder")
    try:
        assert backend.url == "https://api-inference.huggingface.co/models/bigcode/starcoder"
        assert backend.api_key_env == "HF_TOKEN"
    finally:
        backend.close()


@pytest.mark.parametrize(
    "url",
    ["http://gpu:8000", "http://gpu:8000/", "http://gpu:8000/v1", "http://gpu:8000/v1/completions"],
)
def test_openai_url_may_be_given_with_or_without_the_route(url: str) -> None:
    backend = HttpBackend("openai", url=url)
    try:
        assert backend.url == "http://gpu:8000/v1/completions"
    finally:
        backend.close()


def test_remote_context_comes_from_n_ctx_or_the_model_registry() -> None:
    known = HttpBackend("ollama", url="http://gpu:11434", model="starcoder2:3b")
    forced = HttpBackend("ollama", url="http://gpu:11434", model="starcoder2:3b", n_ctx=4096)
    unknown = HttpBackend("openai", url="http://gpu:8000", model="my-finetune")
    try:
        assert known.context_length == 16384  # StarCoder2's, from the registry
        assert forced.context_length == 4096
        assert unknown.context_length == 8192
    finally:
        for backend in (known, forced, unknown):
            backend.close()
