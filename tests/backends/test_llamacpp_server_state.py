"""What the client learns from a llama.cpp server and how it fits requests to it, on the
answers llama-server gives (shapes from its server source). The same behaviour against the real
program: ``tests/serve/test_lsp_remote_e2e.py``."""

from __future__ import annotations

from starcoder_ls.backends.llamacpp_server import LlamaServer
from starcoder_ls.types import FimInput, Prompt, Segment

PROPS = {"default_generation_settings": {"n_ctx": 512}, "model_path": "/srv/models/sc2-3b.gguf"}


def segment(i: int, lines: int = 6) -> Segment:
    text = "".join(f"def helper_{i}_{j}(x):\n    return x * {j}\n" for j in range(lines))
    return Segment("definition", f"lib/m{i}.py", 1, 2 * lines, text)


def prompt(prefix_lines: int, suffix_lines: int, extra: int) -> Prompt:
    prefix = "".join(f"value_{i} = compute({i})\n" for i in range(prefix_lines)) + "result = "
    suffix = "\n" + "".join(f"print(value_{i})\n" for i in range(suffix_lines))
    fim = FimInput(prefix, suffix, path="main.py", extra=tuple(segment(i) for i in range(extra)))
    return Prompt(text="", family="starcoder2", stop=(), fim=fim)


def test_context_and_model_come_from_props_or_models() -> None:
    state = LlamaServer("http://gpu:8080/infill")
    assert not state.describe(None, {"data": []})
    assert state.describe(PROPS)
    assert (state.n_ctx, state.model) == (512, "sc2-3b.gguf")
    # /props turned off: /v1/models has the context under meta.
    other = LlamaServer("http://gpu:8080/infill")
    models = {"data": [{"id": "coder", "meta": {"n_ctx": 4096, "n_ctx_train": 16384}}]}
    assert other.describe(None, models)
    assert (other.n_ctx, other.model) == (4096, "coder")


def test_the_budget_context_shrinks_by_the_learned_token_rate() -> None:
    state = LlamaServer("u")
    state.describe(PROPS)
    assert state.context_for_budget(0) == 512
    assert state.context_for_budget(256) == 256  # the setting, when smaller
    state.learn_rate(600, 400)
    state.learn_rate(300, 400)  # the highest recent rate counts
    assert state.context_for_budget(0) == 341
    state.learn_rate(100_000, 10)  # implausible: ignored
    assert state.rate == 1.5


def test_fit_drops_the_least_relevant_files_first_then_the_far_ends() -> None:
    state = LlamaServer("u")
    state.describe(PROPS)
    small = prompt(5, 2, 1)
    assert state.fit(small, 64) is small  # fits: unchanged

    big = prompt(60, 20, 4)
    fitted = state.fit(big, 64)
    assert state.estimate(fitted.fim) <= state.room(512, 64)
    # The cut starts with the first files (the least relevant) and may leave the last.
    names = [seg.path for seg in fitted.fim.extra]
    assert names == [seg.path for seg in big.fim.extra[-len(names) :]] if names else True
    # The prefix keeps its end (the cursor), the suffix its start; both cut at line breaks.
    assert big.fim.prefix.endswith(fitted.fim.prefix) and fitted.fim.prefix.endswith("result = ")
    assert big.fim.suffix.startswith(fitted.fim.suffix)
    assert fitted.fim.prefix == "result = " or fitted.fim.prefix[0] != "\n"
    assert len(fitted.fim.prefix) < len(big.fim.prefix)


def test_fit_by_the_servers_own_count_cuts_deeper() -> None:
    state = LlamaServer("u")
    state.describe(PROPS)
    big = prompt(30, 10, 0)
    estimated = state.estimate(big.fim)
    assert state.fit(big, 64) is big  # the estimate says it fits
    refit = state.fit(big, 64, real_tokens=estimated * 3)  # the server counted three times more
    assert state.estimate(refit.fim) * 3 <= state.room(512, 64)
    assert refit.fim.prefix.endswith("result = ")


def test_other_files_missing_from_the_servers_prompt_are_learned_and_told_once() -> None:
    state = LlamaServer("http://gpu:8080/infill")
    state.describe(PROPS)
    sent = tuple(segment(i, 2) for i in range(3))
    # llama-server's detokenizer may tidy spaces; all three arrived.
    echo = "<repo_name>myproject\n" + "".join(
        f"<file_sep>{s.path}\n{s.text.replace('    ', '   ')}" for s in sent
    )
    assert state.check_extra(sent, echo) == 3
    assert state.extra_room is None and state.notice == ""
    # The server kept the end of the extras: the last one only.
    assert state.check_extra(sent, echo[echo.index("lib/m2.py") :]) == 1
    room = state.extra_room
    assert room is not None and 0 < room < state.estimate(FimInput("", "", extra=sent))
    assert "left out 2 of 3" in state.notice and "-b 256" in state.notice
    first = state.notice
    assert state.check_extra(sent, "") == 0
    assert state.extra_room == 0 and state.notice == first  # told once
    # A server restarted with another context is learned afresh.
    state.describe({"default_generation_settings": {"n_ctx": 4096}})
    assert state.extra_room is None
