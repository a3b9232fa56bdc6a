"""Continuous batching (``BatchEngine``) on the bundled transformers model, on CPU.

Batching must change how fast completions come, never what they say: every test compares the
batched result with ``TransformersBackend.generate`` running the same request alone. Timing is
never relied on: where a job must join a batch mid-flight, or a cancel must land at a precise
point, it is triggered from a streaming callback, which runs on the engine's worker between
two decode steps.
"""

from __future__ import annotations

import sysconfig
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starcoder_ls.models import BUNDLED_HF

from starcoder_ls.serve.batch import BatchEngine
from starcoder_ls.serve.engine import Job, QueueFull
from starcoder_ls.types import (
    BackendError,
    CancelToken,
    FimInput,
    Generation,
    GenerationParams,
    Prompt,
)

STOPS = ("<|endoftext|>", "<fim_pad>", "<file_sep>")
GREEDY = GenerationParams(max_tokens=40)
WAIT = 60.0
"""Seconds a test waits for a result: far beyond what any job here takes, short of hanging."""

_SOURCE = (Path(sysconfig.get_paths()["stdlib"]) / "json" / "decoder.py").read_text()


def prompt(text: str) -> Prompt:
    return Prompt(text=text, family="starcoder", stop=STOPS, fim=FimInput(prefix=text, suffix=""))


def fim(prefix: str, suffix: str) -> Prompt:
    return prompt(f"<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>")


PROMPTS = (
    fim("def add(a, b):\n    ", "\n"),
    prompt("import"),
    prompt("def f(x):\n"),  # the model ends it at once (an end token)
    prompt("<repo_name>demo<file_sep>a.py\nimport os\n\n\ndef main():\n"),
    fim("class Point:\n    def __init__(self, x, y):\n        ", "\n"),
    prompt(_SOURCE[:600]),
    prompt(f"<repo_name>x<file_sep>util.py\n{_SOURCE[2000:3000]}<file_sep>b.py\nfrom util import"),
    prompt(_SOURCE[3000:4500]),
    fim(_SOURCE[:1500], _SOURCE[1500:1700]),  # longer than the context: cut by fit_prompt
    fim("import os\n\n\ndef read_file(path):\n    with open(path) as f:\n", ""),
)
"""From one token to more than the context, FIM and repository format alike."""


@pytest.fixture(scope="module")
def backend() -> Iterator[Any]:
    from starcoder_ls.backends.hf import TransformersBackend

    hf = TransformersBackend(str(BUNDLED_HF), device="cpu", n_threads=1)
    yield hf
    hf.close()


@pytest.fixture
def make_engine(backend: Any) -> Iterator[Callable[..., BatchEngine]]:
    engines: list[BatchEngine] = []

    def make(max_batch: int = 8, max_queue: int = 16) -> BatchEngine:
        engine = BatchEngine(backend, max_queue=max_queue, max_batch=max_batch)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture(scope="module")
def alone(backend: Any) -> Callable[[Prompt, GenerationParams], Generation]:
    """What the backend generates for a request on its own (memoised)."""
    seen: dict[tuple[Prompt, GenerationParams], Generation] = {}

    def generate(p: Prompt, params: GenerationParams = GREEDY) -> Generation:
        if (p, params) not in seen:
            seen[p, params] = backend.generate(p, params, CancelToken())
        return seen[p, params]

    return generate


def same(batched: Generation, single: Generation) -> None:
    assert (batched.text, batched.completion_tokens, batched.finish_reason) == (
        single.text,
        single.completion_tokens,
        single.finish_reason,
    )
    assert batched.prompt_tokens == single.prompt_tokens


def results(jobs: list[Job]) -> list[Generation]:
    return [job.future.result(timeout=WAIT) for job in jobs]


def test_the_prompts_cover_short_long_and_cut(
    backend: Any, alone: Callable[..., Generation]
) -> None:
    lengths = [len(backend.tokenize(p.text)) for p in PROMPTS]
    assert min(lengths) <= 2 and max(lengths) > backend.context_length
    assert any(400 <= n <= backend.context_length for n in lengths)
    finished = {alone(p).finish_reason for p in PROMPTS}
    assert finished == {"stop", "length"}  # some stop on their own, some run to max_tokens


def test_greedy_batch_equals_each_request_alone(
    make_engine: Callable[..., BatchEngine], alone: Callable[..., Generation]
) -> None:
    engine = make_engine()
    jobs = [Job(p, GREEDY) for p in PROMPTS]
    for job in jobs:
        engine.submit(job)
    for p, got in zip(PROMPTS, results(jobs), strict=True):
        same(got, alone(p))
    assert max(engine.stats.batches) == 8  # really batched, and never beyond max_batch
    assert engine.cache_size == (0, 0)


def test_jobs_joining_mid_flight_equal_each_request_alone(
    make_engine: Callable[..., BatchEngine], alone: Callable[..., Generation]
) -> None:
    """Each time the first job streams a piece, the next request arrives: they join a batch
    that is decoding, one or two steps apart, while earlier ones finish and leave."""
    engine = make_engine(max_batch=4)
    carrier = PROMPTS[9]
    assert alone(carrier).finish_reason == "length"
    later = [Job(p, GREEDY) for p in PROMPTS[:9]]
    pending = list(later)

    def submit_next(piece: str) -> None:
        if pending:
            engine.submit(pending.pop(0))

    first = Job(carrier, GREEDY, on_text=submit_next)
    engine.submit(first)
    same(first.future.result(timeout=WAIT), alone(carrier))
    for job in pending:  # if the carrier streamed fewer pieces than there are prompts
        engine.submit(job)
    for p, got in zip(PROMPTS[:9], results(later), strict=True):
        same(got, alone(p))
    assert len(engine.stats.batches) >= 3  # the batch grew and shrank as jobs came and went
    assert engine.cache_size == (0, 0)


def test_each_sequence_stops_on_its_own_terms(
    make_engine: Callable[..., BatchEngine], alone: Callable[..., Generation]
) -> None:
    p = PROMPTS[9]
    variants = [
        GenerationParams(max_tokens=3),
        GenerationParams(max_tokens=11),
        GenerationParams(max_tokens=40, stop=("(",)),
        GenerationParams(max_tokens=40, stop=(" or ",)),
        GenerationParams(max_tokens=40),
        GenerationParams(max_tokens=30, temperature=0.8, seed=7),
        GenerationParams(max_tokens=30, temperature=0.8, top_p=0.9, seed=8),
    ]
    engine = make_engine()
    jobs = [Job(p, params) for params in variants]
    for job in jobs:
        engine.submit(job)
    got = results(jobs)
    for params, batched in zip(variants, got, strict=True):
        same(batched, alone(p, params))
    assert [g.completion_tokens for g in got[:2]] == [3, 11]
    assert got[2].finish_reason == got[3].finish_reason == "stop"
    assert "(" not in got[2].text and " or " not in got[3].text
    assert len(got[2].text) < len(got[3].text) < len(got[4].text)
    assert len({g.text for g in got}) == len(got)  # each one stopped somewhere else


def test_streamed_pieces_add_up_to_the_text(
    make_engine: Callable[..., BatchEngine], alone: Callable[..., Generation]
) -> None:
    engine = make_engine()
    pieces: list[list[str]] = [[] for _ in PROMPTS]
    jobs = [Job(p, GREEDY, on_text=got.append) for p, got in zip(PROMPTS, pieces, strict=True)]
    for job in jobs:
        engine.submit(job)
    for p, got, streamed in zip(PROMPTS, results(jobs), pieces, strict=True):
        same(got, alone(p))
        assert "".join(streamed) == got.text
    assert max(len(streamed) for streamed in pieces) > 5  # piece by piece, not all at the end


def test_a_cancelled_job_leaves_the_batch_and_the_others_go_on(
    make_engine: Callable[..., BatchEngine], alone: Callable[..., Generation]
) -> None:
    engine = make_engine()
    cancel = CancelToken()
    victim = Job(PROMPTS[9], GREEDY, cancel=cancel, on_text=lambda piece: cancel.cancel())
    others = [Job(p, GREEDY) for p in PROMPTS[3:8]]
    for job in [victim, *others]:
        engine.submit(job)
    cancelled = victim.future.result(timeout=WAIT)
    assert cancelled.finish_reason == "cancelled"
    assert 0 < cancelled.completion_tokens <= 2  # left at the step after its first piece
    assert alone(PROMPTS[9]).text.startswith(cancelled.text)
    for p, got in zip(PROMPTS[3:8], results(others), strict=True):
        same(got, alone(p))
    assert engine.cache_size == (0, 0)


def test_a_job_cancelled_while_waiting_never_runs(make_engine: Callable[..., BatchEngine]) -> None:
    engine = make_engine(max_batch=1)
    waiting = Job(PROMPTS[0], GREEDY)
    running = Job(PROMPTS[9], GREEDY, on_text=lambda piece: waiting.cancel.cancel())
    engine.submit(running)
    engine.submit(waiting)  # the only slot is taken: it waits
    assert running.future.result(timeout=WAIT).finish_reason == "length"
    got = waiting.future.result(timeout=WAIT)
    assert (got.text, got.completion_tokens, got.finish_reason) == ("", 0, "cancelled")
    assert waiting.started_at == 0.0
    assert engine.stats.prompt_tokens == running.future.result().prompt_tokens


def test_the_cache_follows_the_live_sequences(
    make_engine: Callable[..., BatchEngine], backend: Any
) -> None:
    """A long prompt that ends after two tokens must not leave its width behind: the short
    sequence still decoding sees a cache as wide as itself. And after many rounds of jobs
    coming and going, an idle engine holds nothing."""
    engine = make_engine()
    seen: list[tuple[int, int]] = []
    short = Job(
        PROMPTS[0],
        GenerationParams(max_tokens=30),
        on_text=lambda _: seen.append(engine.cache_size),
    )
    long = Job(PROMPTS[7], GenerationParams(max_tokens=2))
    engine.submit(long)
    engine.submit(short)
    assert long.future.result(timeout=WAIT).completion_tokens == 2
    done = short.future.result(timeout=WAIT)
    short_tokens = len(backend.tokenize(PROMPTS[0].text))
    assert len(backend.tokenize(PROMPTS[7].text)) > 300
    assert done.completion_tokens == 30 and len(seen) > 10
    for rows, width in seen[3:]:  # once the long one has left: only the short one's columns
        assert rows == 1 and width < short_tokens + 30

    for round_ in range(4):
        jobs = [
            Job(p, GenerationParams(max_tokens=3 + (i * 7 + round_) % 13))
            for i, p in enumerate(PROMPTS)
        ]
        for job in jobs:
            engine.submit(job)
        assert all(g.finish_reason in ("stop", "length") for g in results(jobs))
        assert engine.cache_size == (0, 0) and engine._cache is None
    assert engine.running == 0 and engine.queue_depth == 0


def test_a_failing_model_call_fails_the_batch_and_the_engine_goes_on(
    make_engine: Callable[..., BatchEngine],
    backend: Any,
    alone: Callable[..., Generation],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    forward = backend.model.forward
    failed: list[int] = []

    def failing_once(*args: Any, **kwargs: Any) -> Any:
        if kwargs["input_ids"].shape == (3, 1) and not failed:  # a step of all three
            failed.append(1)
            raise RuntimeError("out of memory (simulated)")
        return forward(*args, **kwargs)

    monkeypatch.setattr(backend.model, "forward", failing_once)
    engine = make_engine()
    jobs = [Job(p, GREEDY) for p in PROMPTS[3:6]]
    for job in jobs:
        engine.submit(job)
    for job in jobs:
        with pytest.raises(BackendError, match="the transformers model failed to generate: out of"):
            job.future.result(timeout=WAIT)
    assert engine.cache_size == (0, 0)
    after = Job(PROMPTS[4], GREEDY)
    engine.submit(after)
    same(after.future.result(timeout=WAIT), alone(PROMPTS[4]))


def test_a_failing_stream_callback_fails_its_own_job_only(
    make_engine: Callable[..., BatchEngine], alone: Callable[..., Generation]
) -> None:
    def broken(piece: str) -> None:
        raise ConnectionResetError("the client went away")

    engine = make_engine()
    doomed = Job(PROMPTS[9], GREEDY, on_text=broken)
    others = [Job(p, GREEDY) for p in PROMPTS[3:6]]
    for job in [doomed, *others]:
        engine.submit(job)
    with pytest.raises(BackendError, match="the client went away"):
        doomed.future.result(timeout=WAIT)
    for p, got in zip(PROMPTS[3:6], results(others), strict=True):
        same(got, alone(p))
    assert engine.cache_size == (0, 0)


def test_submit_refuses_work_beyond_the_slots_and_the_queue(
    make_engine: Callable[..., BatchEngine],
) -> None:
    engine = make_engine(max_batch=2, max_queue=1)
    inside, release = threading.Event(), threading.Event()

    def block(piece: str) -> None:  # holds the worker between two steps
        inside.set()
        release.wait(WAIT)

    blocker = Job(PROMPTS[9], GREEDY, on_text=block)
    engine.submit(blocker)
    assert inside.wait(WAIT)
    queued = [Job(p, GenerationParams(max_tokens=3)) for p in PROMPTS[:2]]
    for job in queued:
        engine.submit(job)
    with pytest.raises(QueueFull):
        engine.submit(Job(PROMPTS[2], GREEDY))
    release.set()
    assert all(g.finish_reason in ("stop", "length") for g in results([blocker, *queued]))


def test_an_empty_prompt_ends_at_once(make_engine: Callable[..., BatchEngine]) -> None:
    engine = make_engine()
    job = Job(prompt(""), GREEDY)
    engine.submit(job)
    got = job.future.result(timeout=WAIT)
    assert (got.text, got.finish_reason, got.completion_tokens) == ("", "stop", 0)


def test_close_answers_the_running_jobs(make_engine: Callable[..., BatchEngine]) -> None:
    engine = make_engine()
    started = threading.Event()
    jobs = [Job(p, GREEDY, on_text=lambda _: started.set()) for p in PROMPTS[3:6]]
    for job in jobs:
        engine.submit(job)
    assert started.wait(WAIT)
    engine.close()
    assert {g.finish_reason for g in results(jobs)} <= {"cancelled", "stop", "length"}
    assert "cancelled" in {g.finish_reason for g in results(jobs)}


def test_a_prompt_that_goes_on_from_a_finished_one_starts_from_its_keys_and_values(
    make_engine: Callable[..., BatchEngine], backend: Any, alone: Callable[..., Generation]
) -> None:
    """The next keystroke of an editor: the same long prompt with a few more characters. The
    engine keeps the finished sequence's keys and values, and the model evaluates only the
    new tokens, with the completion the request would get alone."""
    engine = make_engine()
    first = prompt(_SOURCE[:1000])
    typed = prompt(_SOURCE[:1000] + "    def decode_all(self")
    job = Job(first, GREEDY)
    engine.submit(job)
    same(job.future.result(timeout=WAIT), alone(first))
    assert engine.reused_tokens == 0
    later = Job(typed, GREEDY)
    engine.submit(later)
    got = later.future.result(timeout=WAIT)
    same(got, alone(typed))
    whole = len(backend.tokenize(typed.text))
    assert whole > 200
    assert got.prompt_tokens == whole and 0 < got.evaluated_tokens <= 12
    assert engine.reused_tokens == whole - got.evaluated_tokens
    # A prompt sharing less than half of what is kept starts from nothing.
    other = Job(prompt(_SOURCE[:300] + "\n# elsewhere\n" + _SOURCE[3000:3900]), GREEDY)
    engine.submit(other)
    assert other.future.result(timeout=WAIT).evaluated_tokens == other.future.result().prompt_tokens


def test_a_long_prompt_joins_in_chunks_while_the_batch_decodes(
    make_engine: Callable[..., BatchEngine], backend: Any, alone: Callable[..., Generation]
) -> None:
    """A prompt longer than a prefill chunk is taken a chunk at a time, with decoding steps of
    the running sequences between the chunks, instead of holding them up until it is all in."""
    engine = make_engine(max_batch=2)
    long = PROMPTS[7]
    assert len(backend.tokenize(long.text)) > 300  # more than one chunk
    seen: list[list[tuple[int, int]]] = []
    joiner = Job(long, GREEDY)

    def watch(piece: str) -> None:
        if not seen:
            engine.submit(joiner)
        seen.append(engine.prefilling)

    carrier = Job(PROMPTS[9], GREEDY, on_text=watch)
    engine.submit(carrier)
    same(carrier.future.result(timeout=WAIT), alone(PROMPTS[9]))
    same(joiner.future.result(timeout=WAIT), alone(long))
    partly = [groups[0] for groups in seen if groups and 0 < groups[0][0] < groups[0][1]]
    assert partly  # the carrier produced text while the long prompt was half in
