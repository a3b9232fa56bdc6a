"""The batched llama.cpp engine of ``serve --backend llamacpp`` with the bundled GGUF: parallel
sequences give each request exactly what the model gives it alone, decode in real batches,
reuse a slot's cache, stop one sequence without touching the others, and fill the cache for
``n_predict`` 0."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from starcoder_ls.models import BUNDLED_GGUF

from starcoder_ls.backends.llamacpp import LlamaCppBackend
from starcoder_ls.prompt.templates import get_template, render
from starcoder_ls.serve.engine import Job
from starcoder_ls.serve.llama_batch import LlamaBatchEngine
from starcoder_ls.types import BackendError, CancelToken, FimInput, GenerationParams, Prompt

TEMPLATE = get_template("starcoder-ls")


def prompt(prefix: str, suffix: str = "\n") -> Prompt:
    fim = FimInput(prefix=prefix, suffix=suffix)
    return Prompt(text=render(fim, "starcoder-ls"), family="starcoder-ls", stop=TEMPLATE.stop,
                  fim=fim)  # fmt: skip


PROMPTS = [prompt(f"def scale_{i}(values):\n    return [v * {i} for v in ") for i in range(6)] + [
    prompt("import os\n\n\ndef read_config(path):\n    "),
    prompt("class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push("),
]


@pytest.fixture
def engine() -> Iterator[LlamaBatchEngine]:
    gguf = LlamaCppBackend(BUNDLED_GGUF, n_threads=1)
    eng = LlamaBatchEngine(gguf, max_queue=32, max_batch=4)
    yield eng
    eng.close()


def run(eng: LlamaBatchEngine, jobs: list[Job]) -> list[object]:
    for job in jobs:
        eng.submit(job)
    return [job.future.result(120) for job in jobs]


def test_parallel_sequences_compute_what_the_model_computes_for_each_alone(
    engine: LlamaBatchEngine, reference: LlamaCppBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every logits vector a sequence sampled from in the batch, beside the one-at-a-time
    # backend's for the same tokens (the prompt, then what the batch generated): the same up
    # to float rounding, which differs with the batch's shape as in llama-server. (Greedy
    # text can still part ways at a near tie, so it is not compared.)
    import numpy as np

    seen: dict[int, list[tuple[object, np.ndarray]]] = {}
    advance = engine._advance

    def spy(seq: object, logits: np.ndarray, best: int) -> bool:
        assert best == int(np.argmax(logits))  # the batch's pick of the most likely token
        seen.setdefault(id(seq.job), []).append((seq, logits.copy()))  # type: ignore[attr-defined]
        return advance(seq, logits, best)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "_advance", spy)
    params = GenerationParams(max_tokens=12)
    jobs = [Job(p, params) for p in PROMPTS]
    run(engine, jobs)
    worst = 0.0
    for job in jobs:
        steps = seen[id(job)]
        seq = steps[0][0]
        generated = seq.stream.tokens  # type: ignore[attr-defined]
        ids = reference.tokenize(job.prompt.text)
        for k, (_, logits) in enumerate(steps):
            _, alone = reference._evaluate_prompt(ids + generated[:k], CancelToken())
            assert alone is not None
            worst = max(worst, float(np.max(np.abs(alone - logits))))
            assert int(np.argmax(alone)) == int(np.argmax(logits)) or (
                np.sort(alone)[-1] - np.sort(alone)[-2] < 0.05
            )
    assert worst < 0.05, worst
    # Four slots: steps with several sequences at once, and the other four joined later.
    assert max(engine.stats.batches) == 4


def test_a_slot_keeps_its_cache_for_the_next_request_that_starts_the_same(
    engine: LlamaBatchEngine,
) -> None:
    base = "import os\n\n\ndef read_config(path):\n    with open(path) as f:\n        "
    first = run(engine, [Job(prompt(base), GenerationParams(max_tokens=4))])[0]
    run(engine, [Job(prompt("x = 1\n" * 20), GenerationParams(max_tokens=4))])  # another slot
    again = run(engine, [Job(prompt(base + "d"), GenerationParams(max_tokens=4))])[0]
    assert first.evaluated_tokens == first.prompt_tokens  # type: ignore[attr-defined]
    assert again.evaluated_tokens <= 5, again  # type: ignore[attr-defined]
    # n_predict 0 fills a slot's cache: the same prompt next evaluates its last token only.
    warm = run(engine, [Job(prompt("def area(r):\n    "), GenerationParams(max_tokens=0))])[0]
    assert warm.text == "" and warm.stop_type == "limit"  # type: ignore[attr-defined]
    hot = run(engine, [Job(prompt("def area(r):\n    "), GenerationParams(max_tokens=4))])[0]
    assert hot.evaluated_tokens == 1  # type: ignore[attr-defined]


def test_cancelling_one_sequence_leaves_the_others_alone(
    engine: LlamaBatchEngine, reference: LlamaCppBackend
) -> None:
    params = GenerationParams(max_tokens=60)
    jobs = [Job(p, params) for p in PROMPTS[:3]]
    seen = threading.Event()
    jobs[1].on_text = lambda piece: seen.set()
    for job in jobs:
        engine.submit(job)
    assert seen.wait(60)
    jobs[1].cancel.cancel()
    results = [job.future.result(120) for job in jobs]
    assert results[1].finish_reason == "cancelled"
    for i in (0, 2):
        assert results[i].text == reference.generate(PROMPTS[i], params, CancelToken()).text
    assert [busy for _, busy in engine.slots] == [False] * 4


def test_rows_go_to_llama_cpp_in_sequence_id_order_when_slots_turn_over(
    engine: LlamaBatchEngine,
) -> None:
    # With a KV cache per sequence, llama.cpp splits a batch into runs of consecutive sequence
    # ids: rows in admission order (slot 2, then 0 once its first request ended) were decoded
    # one sequence per pass, slower and slower as slots turned over. Requests of different
    # lengths make the slots turn over out of order; every batch must still be in id order.
    real = engine._cpp
    batches: list[list[int]] = []
    admitted: list[list[int]] = []

    class Recorder:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def llama_decode(self, ctx: object, batch: object) -> int:
            b = engine._rows.batch  # what llama.cpp reads: the struct's pointers
            batches.append([b.seq_id[i][0] for i in range(b.n_tokens)])
            admitted.append([seq.slot.seq_id for seq in engine._seqs])
            return real.llama_decode(ctx, batch)

    engine._cpp = Recorder()  # type: ignore[assignment]
    jobs = [Job(p, GenerationParams(max_tokens=3 + 7 * (i % 3))) for i, p in enumerate(PROMPTS)]
    run(engine, jobs)
    assert any(order != sorted(order) for order in admitted), "slots never turned over"
    for rows in batches:
        assert rows == sorted(rows), rows


def test_the_backend_hands_its_own_context_to_the_engine(engine: LlamaBatchEngine) -> None:
    # The batch decodes in a context of its own: the backend's would hold a KV cache and
    # compute buffers for nothing. Tokenizing still works; generating there is a clear error.
    gguf = engine._gguf
    assert gguf._llm._ctx.ctx is None
    assert gguf.tokenize("def f(x):") == gguf.tokenize("def f(x):")
    with pytest.raises(BackendError, match="handed its context"):
        gguf.generate(PROMPTS[0], GenerationParams(max_tokens=2), CancelToken())
    result = run(engine, [Job(PROMPTS[0], GenerationParams(max_tokens=4))])[0]
    assert result.completion_tokens > 0  # type: ignore[attr-defined]


def test_prompts_are_tokenized_beside_the_step_loop_not_in_it(
    engine: LlamaBatchEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tokenizing a 400-token prompt took about 0.8 ms, time every running sequence waited
    # when the step loop did it; it runs on its own thread while the model steps.
    gguf = engine._gguf
    tokenize = gguf.tokenize
    threads: list[str] = []
    prompts = {p.text for p in PROMPTS}

    def spy(text: str) -> list[int]:
        if text in prompts:  # (not the stop strings, tokenized once per family)
            threads.append(threading.current_thread().name)
        return tokenize(text)

    monkeypatch.setattr(gguf, "tokenize", spy)
    results = run(engine, [Job(p, GenerationParams(max_tokens=6)) for p in PROMPTS[:3]])
    for p, result in zip(PROMPTS[:3], results, strict=True):
        assert result.prompt_tokens == len(tokenize(p.text))  # type: ignore[attr-defined]
    assert len(threads) == 3, threads
    assert all(name.startswith("starcoder-ls-tokenize") for name in threads), threads
