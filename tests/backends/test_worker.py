"""The supervised model worker: same answers as in process, cancellation and KV reuse across the
pipe, and what happens when the worker process dies (a real process, killed by a real signal).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import fim_prompt
from starcoder_ls.models import BUNDLED_GGUF

from starcoder_ls.backends.llamacpp import LlamaCppBackend
from starcoder_ls.backends.worker import WorkerBackend, WorkerCrashed, describe_exit
from starcoder_ls.settings import Settings
from starcoder_ls.types import BackendError, CancelToken, GenerationParams

pytest.importorskip("llama_cpp")

SETTINGS = Settings(model=str(BUNDLED_GGUF), n_threads=1)
PREFIX = "import os\n\n\ndef read_config(path):\n    "
SUFFIX = "\n    return config\n"


@pytest.fixture(scope="module")
def worker() -> Iterator[WorkerBackend]:
    backend = WorkerBackend(SETTINGS)
    yield backend
    backend.close()


def test_worker_answers_like_the_in_process_backend(worker: WorkerBackend) -> None:
    import dataclasses

    params = GenerationParams(max_tokens=24)
    healing = dataclasses.replace(params, token_healing=True)
    prompt = fim_prompt(PREFIX, SUFFIX)
    # Token healing needs to know where the code before the cursor ends: it crosses the pipe.
    partial = fim_prompt(PREFIX + "with op", SUFFIX)
    partial = dataclasses.replace(partial, prefix_end=partial.text.index("<fim_suffix>"))
    local = LlamaCppBackend(BUNDLED_GGUF, n_threads=1)
    try:
        want = local.generate(prompt, params, CancelToken())
        healed = local.generate(partial, healing, CancelToken())
        assert healed.text != local.generate(partial, params, CancelToken()).text
        assert local.count_tokens(PREFIX) == worker.count_tokens(PREFIX)
    finally:
        local.close()
    got = worker.generate(prompt, params, CancelToken())
    assert got.text == want.text
    assert got.completion_tokens == want.completion_tokens
    assert worker.generate(partial, healing, CancelToken()).text == healed.text
    assert worker.name == "llamacpp"
    assert worker.context_length == local.context_length
    assert worker.info is not None and worker.info.pid != os.getpid()
    assert worker.info.rss_bytes > 0 and worker.info.load_ms > 0


def test_counts_in_one_round_trip(worker: WorkerBackend) -> None:
    texts = ["def f(x):\n", "    return x\n", "", "<fim_prefix>"]
    assert worker.count_tokens_many(texts) == [worker.count_tokens(t) for t in texts]


def test_kv_cache_is_reused_across_requests(worker: WorkerBackend) -> None:
    params = GenerationParams(max_tokens=4)
    worker.generate(fim_prompt(PREFIX, SUFFIX), params, CancelToken())
    again = worker.generate(fim_prompt(PREFIX + "c", SUFFIX), params, CancelToken())
    # Only what follows the shared prefix is evaluated again (the suffix and one more).
    assert 0 < again.evaluated_tokens < again.prompt_tokens // 2


def test_cancellation_stops_generation_between_tokens(worker: WorkerBackend) -> None:
    params = GenerationParams(max_tokens=200)
    free = worker.generate(fim_prompt("", ""), params, CancelToken())
    cancel = CancelToken()
    pieces: list[str] = []

    def on_text(piece: str) -> None:
        pieces.append(piece)
        cancel.cancel()  # as soon as the first text arrives

    stopped = worker.generate(fim_prompt("", ""), params, cancel, on_text=on_text)
    assert stopped.finish_reason == "cancelled"
    assert pieces
    assert stopped.completion_tokens < max(free.completion_tokens, 8)


def test_streamed_pieces_make_the_whole_text(worker: WorkerBackend) -> None:
    pieces: list[str] = []
    gen = worker.generate(
        fim_prompt(PREFIX, SUFFIX), GenerationParams(max_tokens=24), CancelToken(), pieces.append
    )
    assert "".join(pieces) == gen.text


def test_sigkill_mid_generation_fails_the_request_and_the_worker_comes_back() -> None:
    backend = WorkerBackend(SETTINGS)
    try:
        first_pid = backend.pid
        killed = threading.Event()

        def kill_now(piece: str) -> None:
            if not killed.is_set():
                killed.set()
                os.kill(first_pid, signal.SIGKILL)

        with pytest.raises(WorkerCrashed) as err:
            backend.generate(
                fim_prompt("", ""), GenerationParams(max_tokens=200), CancelToken(), kill_now
            )
        assert "SIGKILL" in str(err.value)
        assert killed.is_set()
        t0 = time.monotonic()
        gen = backend.generate(
            fim_prompt(PREFIX, SUFFIX), GenerationParams(max_tokens=8), CancelToken()
        )
        assert time.monotonic() - t0 < 10
        assert gen.completion_tokens > 0
        assert backend.pid != first_pid
        assert backend.restarts == 1
        assert len(backend.crashes) == 1
    finally:
        backend.close()


def test_repeated_crashes_back_off(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = WorkerBackend(SETTINGS)
    try:
        gaps = []
        for _ in range(3):
            pid = backend.pid
            os.kill(pid, signal.SIGKILL)
            t0 = time.monotonic()
            deadline = t0 + 20
            while backend.pid == pid and time.monotonic() < deadline:
                time.sleep(0.01)
            assert backend.generate(
                fim_prompt(PREFIX, SUFFIX), GenerationParams(max_tokens=2), CancelToken()
            ).completion_tokens
            gaps.append(time.monotonic() - t0)
        # The first restart is immediate; quick crashes after it wait 0.25 s, then 0.5 s.
        assert backend.restarts == 3
        assert gaps[2] >= 0.5
    finally:
        backend.close()


def test_a_crash_while_loading_is_reported_and_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARCODER_LS_WORKER_FAULT", "load:SIGSEGV")
    with pytest.raises(WorkerCrashed) as err:
        WorkerBackend(SETTINGS)
    assert err.value.at_load
    message = str(err.value)
    assert "while loading the model" in message and "SIGSEGV" in message
    assert "injected fault" in message  # the last lines of its stderr


def test_a_load_error_is_a_plain_backend_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(BackendError) as err:
        WorkerBackend(Settings(model=str(bad)))
    assert not isinstance(err.value, WorkerCrashed)
    assert "broken.gguf" in str(err.value)


def test_a_closed_worker_backend_says_so(worker: WorkerBackend) -> None:
    backend = WorkerBackend(SETTINGS)
    pid = backend.pid
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.generate(fim_prompt(PREFIX), GenerationParams(max_tokens=2), CancelToken())
    # The process is gone, not orphaned.
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (-signal.SIGILL, "SIGILL (an instruction this CPU cannot run)"),
        (-9, "SIGKILL"),
        (3, "status 3"),
    ],
)
def test_exit_descriptions(code: int, words: str) -> None:
    assert words in describe_exit(code)


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("load:SIGILL", "died while loading the model: it was killed by SIGILL"),
        ("generate:SIGKILL", "died: it was killed by SIGKILL"),
    ],
)
def test_complete_prints_the_crash_instead_of_dying(fault: str, words: str) -> None:
    import subprocess
    import sys

    demo = Path(__file__).resolve().parents[2] / "examples" / "demo.py"
    done = subprocess.run(
        [sys.executable, "-m", "starcoder_ls", "complete", f"{demo}:8:5"],
        capture_output=True,
        text=True,
        env={**os.environ, "STARCODER_LS_WORKER_FAULT": fault},
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("starcoder-ls: error: the model worker"), done.stderr
    assert words in done.stderr
    assert "Traceback" not in done.stderr


def test_the_worker_does_not_outlive_a_killed_server() -> None:
    """The editor's server killed outright (no shutdown): its worker sees its pipe close and
    exits instead of holding the model's memory."""
    import subprocess
    import sys

    code = (
        "import sys, time\n"
        "from starcoder_ls.backends.worker import WorkerBackend\n"
        "from starcoder_ls.settings import Settings\n"
        f"b = WorkerBackend(Settings(model={str(BUNDLED_GGUF)!r}, n_threads=1))\n"
        "print(b.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        worker_pid = int(parent.stdout.readline())
        os.kill(worker_pid, 0)  # alive
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:  # gone, or a zombie waiting for init to reap it
                stat = Path(f"/proc/{worker_pid}/stat").read_text()
                state = stat.rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError):
                break
            if state == "Z":
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the worker outlived its server")
    finally:
        parent.kill()
