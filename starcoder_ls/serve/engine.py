"""The team server's generation side: jobs, the bounded queue in front of the model, and the
worker thread that runs them.

HTTP handlers never touch the model. They build a ``Job`` (a prompt, its parameters, a cancel
token and, for streaming, a callback for text as it becomes final) and ``submit`` it; the
engine's single worker thread runs jobs and completes each job's future. Two engines:

* ``QueueEngine`` runs one job at a time on any backend (llama.cpp: a context runs one sequence
  at a time, and keeps its KV cache from one request to the next).
* ``BatchEngine`` (``serve.batch``) decodes the jobs that are waiting together, one token of
  every sequence per model call (transformers).

Both share the rules here: a queue that refuses work beyond ``max_queue`` instead of growing,
cancelled jobs dropped before they cost anything, and a drain that lets running work finish.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from starcoder_ls.types import (
    Backend,
    BackendError,
    CancelToken,
    Generation,
    GenerationParams,
    Prompt,
)

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """Every slot and every queue place is taken: the client should retry later (429)."""


class Draining(Exception):
    """The server is shutting down and takes no new work (503)."""


@dataclass
class Job:
    """One generation a client asked for."""

    prompt: Prompt
    params: GenerationParams
    cancel: CancelToken = field(default_factory=CancelToken)
    on_text: Callable[[str], None] | None = None
    """Called on the worker thread with each piece of text once it is final (streaming)."""
    future: Future[Generation] = field(default_factory=Future)
    queued_at: float = field(default_factory=time.monotonic)
    started_at: float = 0.0
    prompt_ids: Future[list[int]] | None = None
    """The prompt's token ids, for an engine that tokenizes while its model runs."""
    heal: str = ""
    """Text token healing took off the prompt, set with ``prompt_ids`` (``params`` then
    allows for the tokens that write it again)."""

    def finish(self, generation: Generation) -> None:
        if not self.future.done():
            self.future.set_result(generation)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


@dataclass
class EngineStats:
    """Read by ``/metrics`` and ``/health``; written by the worker thread only."""

    batches: collections.Counter[int] = field(default_factory=collections.Counter)
    """How many model calls ran with each batch size."""
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Engine:
    """A bounded queue and one worker thread; subclasses say how waiting jobs are run
    (``_work``)."""

    def __init__(self, backend: Backend, *, max_queue: int, max_batch: int = 1) -> None:
        self.backend = backend
        self.model_id = backend.model_id
        self.context_length = backend.context_length
        self.max_queue = max(0, max_queue)
        self.max_batch = max(1, max_batch)
        self.stats = EngineStats()
        self._waiting: collections.deque[Job] = collections.deque()
        self._running = 0
        self._cond = threading.Condition()
        self._draining = False
        self._stopped = False
        self._job_seconds = 0.5
        """Moving average of how long a job runs, for ``Retry-After``."""
        self._worker = threading.Thread(target=self._loop, name="starcoder-ls-engine", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------ the HTTP side

    def count_tokens(self, text: str) -> int:
        return self.backend.count_tokens(text)

    def submit(self, job: Job) -> None:
        """Queue ``job``; raises ``QueueFull`` or ``Draining`` instead of waiting."""
        with self._cond:
            if self._draining:
                raise Draining("the server is shutting down")
            if self._running + len(self._waiting) >= self.max_batch + self.max_queue:
                raise QueueFull(
                    f"all {self.max_batch} generation slots and {self.max_queue} queue places "
                    "are taken"
                )
            self._waiting.append(job)
            self._cond.notify()

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return self._running

    @property
    def draining(self) -> bool:
        return self._draining

    def retry_after(self) -> int:
        """Seconds a refused client should wait: about how long the work ahead of it takes at
        the recent pace of the worker (1 to 60)."""
        ahead = (self._running + len(self._waiting)) / self.max_batch
        return max(1, min(60, math.ceil(ahead * self._job_seconds)))

    def drain(self, timeout: float) -> bool:
        """Stop taking work and wait up to ``timeout`` seconds for queued and running jobs;
        True when they all finished."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._draining = True
            while self._running or self._waiting:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
        return True

    def close(self) -> None:
        """Cancel whatever is left, stop the worker and free the model."""
        with self._cond:
            self._draining = True
            self._stopped = True
            left = list(self._waiting)
            self._waiting.clear()
            self._cond.notify_all()
        for job in left:
            job.fail(Draining("the server shut down before this request ran"))
        self._cancel_running()
        self._worker.join(timeout=30)
        self.backend.close()

    # ---------------------------------------------------------- the worker side

    def _take(self, limit: int, block: bool) -> list[Job]:
        """Up to ``limit`` waiting jobs, oldest first, skipping cancelled ones; waits for one
        when ``block`` and none is waiting. Counts them as running."""
        with self._cond:
            while block and not self._waiting and not self._stopped:
                self._cond.wait()
            taken: list[Job] = []
            while self._waiting and len(taken) < limit:
                job = self._waiting.popleft()
                if job.cancel.cancelled:
                    job.finish(Generation(text="", finish_reason="cancelled"))
                    continue
                job.started_at = time.monotonic()
                taken.append(job)
            self._running += len(taken)
            self._cond.notify_all()
            return taken

    def _done(self, job: Job, generation: Generation | None, error: BaseException | None) -> None:
        with self._cond:
            self._running -= 1
            if job.started_at:
                took = time.monotonic() - job.started_at
                self._job_seconds += 0.1 * (took - self._job_seconds)
            self.stats.prompt_tokens += generation.prompt_tokens if generation else 0
            self.stats.completion_tokens += generation.completion_tokens if generation else 0
            self._cond.notify_all()
        if error is not None:
            job.fail(error)
        elif generation is not None:
            job.finish(generation)

    def _loop(self) -> None:
        while not self._stopped:
            try:
                self._work()
            except Exception:  # a bug must not kill the worker: log it, keep serving
                log.exception("the generation worker failed; it goes on with the next request")

    def _work(self) -> None:
        raise NotImplementedError

    def _cancel_running(self) -> None:
        """Cancel the jobs the worker is running (on close)."""


class QueueEngine(Engine):
    """One job at a time on any backend, in arrival order."""

    def __init__(self, backend: Backend, *, max_queue: int) -> None:
        from starcoder_ls.backends.base import TokenLoopBackend

        self._current: Job | None = None
        self._streams = isinstance(backend, TokenLoopBackend)
        """The backend hands out text as it generates (``on_text``)."""
        super().__init__(backend, max_queue=max_queue, max_batch=1)

    def _work(self) -> None:
        jobs = self._take(1, block=True)
        if not jobs:
            return
        job = self._current = jobs[0]
        try:
            generation = self._generate(job)
        except BackendError as exc:
            self._done(job, None, exc)
        except Exception as exc:  # a failure of this request only
            log.exception("generation failed")
            self._done(job, None, BackendError(f"generation failed: {exc}"))
        else:
            self.stats.batches[1] += 1
            self._done(job, generation, None)
        finally:
            self._current = None

    def _generate(self, job: Job) -> Generation:
        generate = self.backend.generate
        if job.on_text is not None and self._streams:
            return generate(job.prompt, job.params, job.cancel, on_text=job.on_text)  # type: ignore[call-arg]
        generation = generate(job.prompt, job.params, job.cancel)
        if job.on_text is not None and generation.text:
            job.on_text(generation.text)  # a backend that cannot stream: all at once
        return generation

    def _cancel_running(self) -> None:
        job = self._current
        if job is not None:
            job.cancel.cancel()
