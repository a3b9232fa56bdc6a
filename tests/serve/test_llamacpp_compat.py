"""``starcoder-ls serve``'s ``/infill`` as llama.cpp's llama-server answers it, over real HTTP
with the bundled model: the requests llama.vim sends (cache warm-up with ``n_predict`` 0,
``response_fields``, ``n_indent``, ``t_max_predict_ms``, ``model``) and the answer's fields and
their meaning (``stop_type``/``stopping_word``, ``tokens_predicted`` counting the end token,
``truncated``, ``tokens_cached`` and the timings)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from remote_fixtures import LlamaServer
from serve_helpers import ServeProcess, free_port
from starcoder_ls.models import BUNDLED_GGUF

from starcoder_ls.backends.base import TokenStream, short_line_at
from starcoder_ls.backends.llamacpp import LlamaCppBackend
from starcoder_ls.prompt.templates import get_template, render
from starcoder_ls.serve.replies import pick
from starcoder_ls.serve.schema import ApiError, Limits, Served, infill_request, openai_request
from starcoder_ls.types import CancelToken, FimInput, GenerationParams, Prompt

PREFIX = "import os\n\n\nclass Config:\n    def __init__(self, path):\n        "
SUFFIX = "\n\n    def save(self):\n        pass\n"
# What llama.vim asks for with each completion (autoload/llama.vim, fim request).
LLAMA_VIM_FIELDS = [
    "content",
    "timings/prompt_n",
    "timings/prompt_ms",
    "timings/prompt_per_token_ms",
    "timings/prompt_per_second",
    "timings/predicted_n",
    "timings/predicted_ms",
    "timings/predicted_per_token_ms",
    "timings/predicted_per_second",
    "truncated",
    "tokens_cached",
]
# Every field of llama-server's final /infill answer (server-task.cpp, to_json_non_oaicompat).
LLAMA_SERVER_FIELDS = {
    "index",
    "content",
    "tokens",
    "id_slot",
    "stop",
    "model",
    "tokens_predicted",
    "tokens_evaluated",
    "generation_settings",
    "prompt",
    "has_new_line",
    "truncated",
    "stop_type",
    "stopping_word",
    "tokens_cached",
    "timings",
}
TIMINGS = {
    "cache_n",
    "prompt_n",
    "prompt_ms",
    "prompt_per_token_ms",
    "prompt_per_second",
    "predicted_n",
    "predicted_ms",
    "predicted_per_token_ms",
    "predicted_per_second",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc = ServeProcess(["--backend", "llamacpp"], log=log)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama.cpp's own server on the same model; -b 256 leaves room for other files' context."""
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    proc = LlamaServer(BUNDLED_GGUF, port=free_port(), log=log, flags=("-b", "256"))
    yield proc.wait_ready()
    proc.stop()


def infill(server: ServeProcess, **body: Any) -> dict[str, Any]:
    body.setdefault("temperature", 0)
    answer = httpx.post(f"{server.url}/infill", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def greedy(reference: LlamaCppBackend, prefix: str, suffix: str, n: int) -> str:
    template = get_template("starcoder-ls")
    fim = FimInput(prefix=prefix, suffix=suffix)
    prompt = Prompt(
        text=render(fim, "starcoder-ls"), family="starcoder-ls", stop=template.stop, fim=fim
    )
    return reference.generate(prompt, GenerationParams(max_tokens=n), CancelToken()).text


def test_the_answer_has_llama_servers_fields_and_meanings(server: ServeProcess) -> None:
    data = infill(server, input_prefix=PREFIX, input_suffix=SUFFIX, n_predict=24)
    assert set(data) == LLAMA_SERVER_FIELDS
    assert set(data["timings"]) == TIMINGS
    t = data["timings"]
    assert data["stop"] is True and data["truncated"] is False
    assert data["stop_type"] in ("eos", "limit")
    assert data["tokens_predicted"] == t["predicted_n"] > 0
    assert t["prompt_n"] + t["cache_n"] == data["tokens_evaluated"]
    assert t["prompt_ms"] > 0 and t["predicted_ms"] > 0
    # Per-token and per-second figures follow from the counts and times, as llama-server's do.
    assert t["prompt_per_second"] == pytest.approx(1000 * t["prompt_n"] / t["prompt_ms"], rel=0.01)
    assert t["predicted_per_token_ms"] == pytest.approx(
        t["predicted_ms"] / t["predicted_n"], rel=0.01
    )
    assert data["generation_settings"]["n_predict"] == 24
    assert data["generation_settings"]["n_ctx"] == 512
    assert data["prompt"].startswith("<fim_prefix>") or "<fim_prefix>" in data["prompt"]


def test_the_answer_is_llama_servers_for_the_same_request(
    server: ServeProcess, llama_server: LlamaServer
) -> None:
    body = {
        "input_prefix": PREFIX,
        "input_suffix": SUFFIX,
        "input_extra": [
            {
                "filename": "config/paths.py",
                "text": "def expand(path):\n    return os.path.expanduser(path)\n",
            },
            {
                "filename": "config/io.py",
                "text": "def read_text(path):\n    with open(path) as f:\n        return f.read()\n",
            },
        ],
        "n_predict": 16,
        "temperature": 0,
        "cache_prompt": True,
    }
    ours = infill(server, **body)
    status, theirs = llama_server.infill(body)
    assert status == 200, theirs
    assert set(ours) == set(theirs) == LLAMA_SERVER_FIELDS
    assert set(ours["timings"]) == set(theirs["timings"]) == TIMINGS
    # The same prompt, token for token, but for the two names llama-server makes up for the
    # repository and the current file: this model was trained on StarCoder2's layout, which
    # has neither when they are unknown (llama-server's detokenizer also tidies some spaces,
    # so the texts are compared without them).
    made_up = ("<repo_name>myproject\n", "<file_sep>filename\n")
    assert all(part in theirs["prompt"] for part in made_up)
    tidied = theirs["prompt"].replace(made_up[0], "<repo_name>").replace(made_up[1], "<file_sep>\n")
    assert "".join(ours["prompt"].split()) == "".join(tidied.split())
    extra_tokens = sum(
        len(httpx.post(f"{llama_server.url}/tokenize", json={"content": name}).json()["tokens"])
        for name in ("myproject\n", "filename")
    )
    assert theirs["tokens_evaluated"] - ours["tokens_evaluated"] == extra_tokens
    # The same meanings: what ended it, what was counted.
    for data in (ours, theirs):
        assert data["stop"] is True and data["truncated"] is False
        assert data["tokens_predicted"] == data["timings"]["predicted_n"] <= 16
        assert data["stop_type"] == ("limit" if data["tokens_predicted"] == 16 else "eos")
        assert data["timings"]["prompt_n"] + data["timings"]["cache_n"] == data["tokens_evaluated"]


def test_props_and_models_say_the_context_where_llama_cpp_clients_look(
    server: ServeProcess, llama_server: LlamaServer
) -> None:
    ours = httpx.get(f"{server.url}/props", timeout=10).json()
    theirs = httpx.get(f"{llama_server.url}/props", timeout=10).json()
    for data in (ours, theirs):
        assert data["default_generation_settings"]["n_ctx"] == 512
        assert data["total_slots"] >= 1 and data["model_path"]
    for url in (server.url, llama_server.url):
        entry = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]
        assert entry["meta"]["n_ctx"] == 512


def test_response_fields_keep_only_what_llama_vim_asks_for(server: ServeProcess) -> None:
    data = infill(
        server,
        input_prefix=PREFIX,
        input_suffix=SUFFIX,
        n_predict=8,
        response_fields=LLAMA_VIM_FIELDS,
    )
    assert set(data) == set(LLAMA_VIM_FIELDS)
    assert data["timings/predicted_n"] > 0 and data["timings/prompt_ms"] > 0
    assert isinstance(data["content"], str) and data["truncated"] is False
    # llama.vim's warm-up asks for [""]: an empty object, as from llama-server.
    assert infill(server, input_prefix="x", n_predict=1, response_fields=[""]) == {}


def test_n_predict_0_fills_the_cache_for_the_next_request(server: ServeProcess) -> None:
    extra = [
        {"filename": f"pkg/mod{i}.py", "text": f"def helper_{i}(value):\n    return value * {i}\n"}
        for i in range(6)
    ]
    warm = infill(
        server,
        input_prefix="",
        input_suffix="",
        input_extra=extra,
        prompt="",
        n_predict=0,
        t_max_prompt_ms=1,
        t_max_predict_ms=1,
    )
    assert warm["content"] == "" and warm["tokens_predicted"] == 0
    assert warm["stop_type"] == "limit"
    # t_max_prompt_ms is not applied to a warm-up: its whole prompt was evaluated.
    assert warm["timings"]["prompt_n"] + warm["tokens_cached"] == warm["tokens_evaluated"]
    real = infill(server, input_prefix=PREFIX, input_suffix=SUFFIX, input_extra=extra, n_predict=4)
    # The other files come first in the prompt, so the warm-up's tokens are reused.
    assert real["tokens_cached"] >= warm["tokens_evaluated"] - 4
    assert real["timings"]["prompt_n"] < real["tokens_evaluated"] - real["tokens_cached"] + 8


def test_stop_words_and_end_tokens_are_told_apart(
    server: ServeProcess, reference: LlamaCppBackend
) -> None:
    text = greedy(reference, PREFIX, SUFFIX, 32)
    words = [w for w in text.split() if len(w) >= 3]
    assert words, text
    word = words[0]
    data = infill(server, input_prefix=PREFIX, input_suffix=SUFFIX, n_predict=32, stop=[word])
    assert data["stop_type"] == "word" and data["stopping_word"] == word
    assert data["content"] == text[: text.index(word)]
    # An end token is sampled and counted by llama-server, though not shown.
    short = greedy(reference, "x = 1\n", "", 64)
    plain = infill(server, input_prefix="x = 1\n", input_suffix="", n_predict=64)
    assert plain["content"] == short
    if plain["stop_type"] == "eos":
        ids = reference.tokenize(short) if short else []
        assert plain["tokens_predicted"] >= len(ids) + 1


def test_n_indent_ends_at_the_first_line_left_of_it(
    server: ServeProcess, reference: LlamaCppBackend
) -> None:
    free = infill(server, input_prefix=PREFIX, input_suffix="", n_predict=64)["content"]
    lines = free.split("\n")
    assert len(lines) > 2, free
    # One column deeper than the second line: the completion must end where that line's code
    # would start.
    second = lines[1]
    n_indent = len(second) - len(second.lstrip(" \t")) + 1
    data = infill(server, input_prefix=PREFIX, input_suffix="", n_predict=64, n_indent=n_indent)
    cut = short_line_at(free, 0, n_indent)
    assert cut == len(lines[0]) + 1 + n_indent - 1
    assert data["content"] == free[:cut]
    assert data["stop_type"] == "limit"


def test_t_max_predict_ms_stops_at_a_line_break_once_time_is_up(server: ServeProcess) -> None:
    free = infill(server, input_prefix=PREFIX, input_suffix="", n_predict=64)
    timed = infill(server, input_prefix=PREFIX, input_suffix="", n_predict=64, t_max_predict_ms=1)
    assert free["content"].startswith(timed["content"])
    if "\n" in free["content"]:
        first = free["content"].index("\n") + 1
        # It ends with the token that wrote the first line break (which may carry indentation).
        assert timed["content"].startswith(free["content"][:first])
        assert "\n" not in timed["content"][first:]
        assert timed["stop_type"] == "limit"
        assert timed["tokens_predicted"] < free["tokens_predicted"]


def test_truncated_when_the_prompt_or_other_files_do_not_fit(server: ServeProcess) -> None:
    long_prefix = "".join(f"value_{i} = compute({i}, {i + 1})\n" for i in range(400))
    data = infill(server, input_prefix=long_prefix, input_suffix="", n_predict=8)
    assert data["truncated"] is True
    assert data["tokens_evaluated"] <= 512
    extra = [
        {
            "filename": f"lib/chunk{i}.py",
            "text": "".join(f"name_{i}_{k} = {k}\n" for k in range(30)),
        }
        for i in range(12)
    ]
    data = infill(server, input_prefix="x = ", input_suffix="", input_extra=extra, n_predict=8)
    assert data["truncated"] is True
    # The last chunks stay (llama-server keeps the end of the extra context), the prefix whole.
    assert "lib/chunk11.py" in data["prompt"] and "lib/chunk0.py" not in data["prompt"]
    assert "x = <fim_suffix>" in data["prompt"] or data["prompt"].rstrip().endswith("<fim_middle>")


def test_model_is_ignored_like_a_single_model_llama_server(server: ServeProcess) -> None:
    for model in ("", "qwen3-coder-30b", "anything"):
        data = infill(server, input_prefix="x = ", n_predict=2, model=model)
        assert "content" in data


def test_qwen_prompts_match_llama_servers_repository_layout() -> None:
    template = get_template("qwen2.5-coder")
    served = Served("q", frozenset(), "qwen2.5-coder", template.stop)
    body = {
        "input_prefix": "def f():\n    ",
        "input_suffix": "\n",
        "input_extra": [{"filename": "a.py", "text": "X = 1\n"}],
        "prompt": "ret",
    }
    text = infill_request(body, served, Limits()).prompt.text
    # format_prompt_infill: <|repo_name|>myproject\n, each chunk under <|file_sep|>, then the
    # current file as "filename", then prefix, suffix, middle and the request's prompt.
    assert text.startswith("<|repo_name|>myproject\n<|file_sep|>a.py\nX = 1\n")
    assert text.endswith(
        "<|file_sep|>filename\n<|fim_prefix|>def f():\n    <|fim_suffix|>\n<|fim_middle|>ret"
    )


def test_stop_after_text_is_this_servers_own_completions_field() -> None:
    served = Served("m", frozenset(), "starcoder-ls", ("<|endoftext|>",))
    body = {"prompt": "def f():\n", "stop": ["\n"], "stop_after_text": True}
    params = openai_request(body, served, Limits()).params
    assert params.stop == ("\n",) and params.stop_after_text
    assert not openai_request({"prompt": "x"}, served, Limits()).params.stop_after_text
    with pytest.raises(ApiError, match="stop_after_text must be true or false"):
        openai_request({"prompt": "x", "stop_after_text": "yes"}, served, Limits())


def test_pick_follows_llama_servers_paths() -> None:
    body = {"content": "x", "timings": {"prompt_n": 3}, "generation_settings": {"n_predict": 4}}
    assert pick(body, ()) == body
    assert pick(body, ("content", "timings/prompt_n", "generation_settings/n_predict")) == {
        "content": "x",
        "timings/prompt_n": 3,
        "generation_settings/n_predict": 4,
    }
    assert pick(body, ("", "missing", "timings/none", "content/deeper")) == {}


def test_short_line_at_matches_llama_servers_rule() -> None:
    # The first line is never judged; later ones once their first non-blank character came.
    assert short_line_at("x = 1", 0, 4) == -1
    assert short_line_at("a\n    b\n  ", 0, 4) == -1
    assert short_line_at("a\n    b\n  c", 0, 4) == len("a\n    b\n  ")
    # A blank line's code is its line break: it ends the completion there too.
    assert short_line_at("a\n\n    b", 0, 4) == len("a\n")
    assert short_line_at("a\n\tb", 0, 2) == len("a\n\t")


def test_token_stream_reports_how_it_ended() -> None:
    import numpy as np

    vocab = ["a", "b", "\n", "STOP", "<eos>"]

    def text_of(ids: list[int]) -> str:
        return "".join(vocab[i] for i in ids)

    def run(seq: list[int], **kw: Any) -> TokenStream:
        stream = TokenStream(
            text_of,
            stop_ids=frozenset({4}),
            stops=("STOP",),
            params=GenerationParams(**kw),
            room=100,
        )
        for token in seq:
            logits = np.full(len(vocab), -1e9, dtype=np.float32)
            logits[token] = 0
            if stream.push(logits) is None:
                break
        return stream

    assert run([0, 4], max_tokens=8).stop_type == "eos"
    word = run([0, 3, 1], max_tokens=8)
    assert (word.stop_type, word.stopping_word, word.text) == ("word", "STOP", "a")
    assert run([0, 1, 0], max_tokens=2).stop_type == "limit"
    indent = run([0, 2, 1], max_tokens=8, min_indent=2)
    assert (indent.stop_type, indent.text) == ("limit", "a\n")
