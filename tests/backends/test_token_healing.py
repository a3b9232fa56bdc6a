"""Token healing: the prompt ends before the last token(s) before the cursor, the first generated
tokens are held to their text, and that text is not part of the answer. On the bundled model
(byte-level BPE) and the default model (Gemma's SentencePiece vocabulary), through the backends'
``generate``, the team server's batched engines, and the remote backend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from starcoder_ls.models import BUNDLED_GGUF

from starcoder_ls.backends.base import TokenIndex, heal_prompt
from starcoder_ls.types import CancelToken, FimInput, GenerationParams, Prompt

STOPS = ("<|endoftext|>", "<fim_pad>", "<file_sep>")
CODE = 'def add(a, b):\n    """Add two numbers."""\n'


def ltr(text: str, family: str = "starcoder") -> Prompt:
    return Prompt(text, family, STOPS, FimInput(text, ""), prefix_end=len(text))


def psm(prefix: str, suffix: str) -> Prompt:
    text = f"<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>"
    return Prompt(text, "starcoder", STOPS, FimInput(prefix, suffix), prefix_end=12 + len(prefix))


def params(heal: bool, **kw: Any) -> GenerationParams:
    return GenerationParams(**{"max_tokens": 12, "token_healing": heal, **kw})


@pytest.fixture(scope="module")
def tiny() -> Iterator[Any]:
    from starcoder_ls.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(BUNDLED_GGUF, n_ctx=512, n_threads=1)
    yield backend
    backend.close()


def test_the_index_finds_tokens_that_agree_with_owed_text() -> None:
    index = TokenIndex(["", "re", "ret", "return", "urn", "r", "x", "retry", "\n", "\n    "])
    assert sorted(index.allowed("ret").tolist()) == [1, 2, 3, 5, 7]  # re, ret, return, r, retry
    assert sorted(index.allowed("\n").tolist()) == [8, 9]
    assert index.allowed("zz").size == 0


def test_the_last_token_is_taken_off_and_whitespace_runs_together(tiny: Any) -> None:
    index = tiny.token_index()
    text, healed, taken = heal_prompt("x = os.pa", 9, tiny.tokenize, index)
    assert (text + healed, taken) == ("x = os.pa", 1) and healed and "pa".endswith(healed)
    # A newline and the indentation after it go together (up to four whitespace tokens).
    text, healed, taken = heal_prompt(CODE + "    ", len(CODE) + 4, tiny.tokenize, index)
    assert healed.isspace() and healed.endswith("    ") and text + healed == CODE + "    "
    # Inside a PSM prompt the prefix loses its end; the suffix and sentinels stay.
    prompt = psm("    ret", "\n")
    text, healed, _ = heal_prompt(prompt.text, prompt.prefix_end, tiny.tokenize, index)
    assert healed and "    ret".endswith(healed)
    assert text == f"<fim_prefix>{'    ret'[: 7 - len(healed)]}<fim_suffix>\n<fim_middle>"
    # Nothing to heal: no code before the cursor, or a special token there.
    assert heal_prompt("<fim_prefix>", 12, tiny.tokenize, index) == ("<fim_prefix>", "", 0)
    assert heal_prompt("abc", 0, tiny.tokenize, index) == ("abc", "", 0)


def test_a_partial_word_is_completed_not_followed(tiny: Any) -> None:
    """Off, the model reads ``ret`` as a finished word and continues after it; on, it writes
    ``return`` and the answer is what follows ``ret``."""
    prompt = ltr("<fim_prefix>" + CODE + "    ret")
    off = tiny.generate(prompt, params(False), CancelToken())
    on = tiny.generate(prompt, params(True), CancelToken())
    assert not off.text.startswith("urn")
    assert on.text.startswith("urn ")
    assert on.prompt_tokens < off.prompt_tokens  # the prompt ended before "ret"
    # The model wrote the healed text again: the answer's tokens include it.
    assert on.completion_tokens >= 2


def test_healing_keeps_the_kv_cache_across_keystrokes(tiny: Any) -> None:
    """Only the tokens taken off (and what was typed) are evaluated again."""
    first = ltr("<fim_prefix>" + CODE + "    resu")
    second = ltr("<fim_prefix>" + CODE + "    resul")
    tiny.generate(first, params(True, max_tokens=1), CancelToken())
    again = tiny.generate(second, params(True), CancelToken())
    assert 1 <= again.evaluated_tokens <= 3, again


def test_streamed_text_never_shows_the_healed_part(tiny: Any) -> None:
    pieces: list[str] = []
    prompt = ltr("<fim_prefix>" + CODE + "    ret")
    done = tiny.generate(prompt, params(True), CancelToken(), on_text=pieces.append)
    assert "".join(pieces) == done.text and done.text.startswith("urn")


def test_a_single_line_request_on_a_blank_line_is_not_ended_by_the_healed_newline(
    tiny: Any,
) -> None:
    """The healed text is a line break; the single-line stop applies to the answer only."""
    prompt = ltr("<fim_prefix>" + CODE)
    done = tiny.generate(prompt, params(True, stop=("\n",)), CancelToken())
    assert done.text.strip() and "\n" not in done.text


def test_sampling_is_held_to_the_healed_text_too(tiny: Any) -> None:
    prompt = ltr("<fim_prefix>" + CODE + "    ret")
    for seed in range(4):
        done = tiny.generate(prompt, params(True, temperature=1.0, seed=seed), CancelToken())
        # Whatever was drawn, it started with "ret": the answer continues the word.
        assert done.finish_reason in ("stop", "length")
        assert not done.text.startswith("ret")


def test_gemma_sentencepiece_words_heal_with_their_leading_space() -> None:
    """Gemma's pieces carry their word-start space; the healed text includes it."""
    from starcoder_ls.models.packaged import DEFAULT, path_if_ready

    from starcoder_ls.backends.llamacpp import LlamaCppBackend

    path = path_if_ready(DEFAULT)
    if path is None:
        pytest.skip("the default model is not installed (scripts/setup.sh installs it)")
    gemma = LlamaCppBackend(path, n_ctx=1024, n_threads=1)
    try:
        text = "import os\nx = os.pa"
        prompt = Prompt(text, "left-to-right", (), FimInput(text, ""), prefix_end=len(text))
        _, healed, _ = heal_prompt(text, len(text), gemma.tokenize, gemma.token_index())
        assert healed and text.endswith(healed)
        on = gemma.generate(prompt, params(True, stop=("\n",)), CancelToken())
        assert on.text.startswith("th"), on.text  # os.path...
    finally:
        gemma.close()


def test_mask_leaves_only_agreeing_tokens(tiny: Any) -> None:
    """The stream's mask: every other token is impossible while text is owed."""
    from starcoder_ls.backends.base import TokenStream

    index = tiny.token_index()
    stream = TokenStream(
        tiny._text_of,
        stop_ids=frozenset(),
        stops=(),
        params=params(True),
        room=100,
        heal="ret",
        index=index,
    )
    logits = np.zeros(len(index.texts), dtype=np.float32)
    logits[tiny.tokenize("x")[0]] = 100.0  # the model's favourite disagrees
    assert not stream.greedy  # a batch must not pick for it
    token = stream.push(logits)
    assert token is not None
    piece = index.texts[token]
    assert "ret".startswith(piece) or piece.startswith("ret")


def test_auto_heals_left_to_right_prompts_and_not_fim_ones() -> None:
    """``tokenHealing: auto`` follows the prompt's family: FIM models were trained on prefixes
    cut at any character, tokenized on their own, so only left-to-right prompts are healed."""
    from starcoder_ls.engine import CompletionEngine
    from starcoder_ls.settings import Settings
    from starcoder_ls.types import CompletionMode

    def heals(setting: str, family: str) -> bool:
        engine = CompletionEngine(Settings(backend="test", token_healing=setting))
        return engine.params(CompletionMode.SINGLE_LINE, family=family).token_healing

    assert heals("auto", "left-to-right") and heals("auto", "left-to-right-repo")
    assert not heals("auto", "starcoder-ls") and not heals("auto", "starcoder2")
    assert heals("on", "starcoder-ls") and not heals("off", "left-to-right")


def test_the_engine_completes_a_partial_word_with_healing_on() -> None:
    """Through ``CompletionEngine.complete`` (the worker process, the prompt builder), a
    left-to-right prompt of the bundled model: healed, the completion continues ``ret``."""
    from starcoder_ls.documents import Snapshot
    from starcoder_ls.engine import CompletionEngine
    from starcoder_ls.settings import CacheSettings, Settings

    text = CODE + "    ret\n"
    doc = Snapshot.from_text(text, uri="file:///w/m.py", path="/w/m.py", language_id="python")
    answers = {}
    for setting in ("auto", "off"):
        engine = CompletionEngine(
            Settings(
                model=str(BUNDLED_GGUF),
                family="left-to-right",
                token_healing=setting,
                n_threads=1,
                cache=CacheSettings(enabled=False),
            )
        )
        try:
            done = engine.complete(doc, 2, 7, invoked=True)
            answers[setting] = done.text if done is not None else ""
        finally:
            engine.close()
    assert answers["auto"].startswith("urn"), answers
    assert not answers["off"].startswith("urn"), answers
