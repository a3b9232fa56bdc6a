"""The model worker: a child process that holds one local model (llama.cpp or transformers).

Started by ``starcoder_ls.backends.worker.WorkerBackend`` as ``python -m
starcoder_ls.backends.worker_main``. It speaks JSON lines on a private pipe (the stdin/stdout it
was started with); its real stdout is pointed at stderr first, so whatever native code prints
can never corrupt the protocol. stderr goes to the parent, which keeps its last lines to explain
a crash.

Messages from the parent: ``{"op": "load", "settings": {...}}`` first, then ``count`` (token
counts of several texts), ``generate`` (streams ``text`` pieces when asked, then a
``generation``), ``cancel`` (noticed between tokens) and ``close``. Generations run one at a
time on one thread, so the model's KV cache carries from one request to the next; counts are
answered on the reading thread meanwhile (the backends' tokenizers may run beside a
generation).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sys
import threading
import time
from dataclasses import asdict
from typing import Any, BinaryIO

from starcoder_ls.types import BackendError, CancelToken, FimInput, GenerationParams, Prompt


def resident_bytes() -> int:
    """This process's resident memory (VmRSS), 0 where /proc is missing."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Channel:
    """JSON lines on the protocol pipe; writes from several threads are serialised."""

    def __init__(self, rfile: BinaryIO, wfile: BinaryIO) -> None:
        self._r = rfile
        self._w = wfile
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, ensure_ascii=False).encode("utf-8") + b"\n"
        with self._lock:
            self._w.write(data)
            self._w.flush()

    def receive(self) -> dict[str, Any] | None:
        line = self._r.readline()
        if not line:
            return None
        message = json.loads(line)
        return message if isinstance(message, dict) else {}


FAULT_ENV = "STARCODER_LS_WORKER_FAULT"
"""Fault injection for tests of the supervisor: ``load:SIGSEGV`` makes the worker die by that
signal while loading, ``generate:SIGKILL`` at its first generation. Never set in normal use."""


def _fault(stage: str) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    where, _, sig = spec.partition(":")
    if where == stage:
        import signal

        sys.stderr.write(f"starcoder-ls worker: injected fault {spec}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), getattr(signal, sig or "SIGSEGV"))


def _load(settings_data: dict[str, Any]) -> Any:
    from starcoder_ls.settings import parse_settings

    _fault("load")
    settings, errors = parse_settings(settings_data)
    if errors:
        raise BackendError("; ".join(errors))
    if settings.backend == "llamacpp":
        # Pick the CPU kernels this machine can run before llama.cpp loads any.
        from starcoder_ls.backends.cpu_select import select_cpu_backend

        try:
            choice = select_cpu_backend()
        except RuntimeError as exc:
            raise BackendError(str(exc)) from exc
        print(f"starcoder-ls worker: {choice.describe()}", file=sys.stderr, flush=True)
    from starcoder_ls.backends import create_local_backend

    return create_local_backend(settings)


def _describe(backend: Any) -> str:
    if backend.name == "llamacpp":
        from starcoder_ls.backends.cpu_select import select_cpu_backend

        return select_cpu_backend().describe()
    kernels: Any = getattr(backend, "kernels", None)
    device = getattr(backend, "device", "")
    describe = getattr(kernels, "summary", None)
    return f"{device} ({describe()})" if callable(describe) else str(device)


def _generate(channel: Channel, backend: Any, job: dict[str, Any], cancel: CancelToken) -> None:
    rid = job["id"]
    p = job["prompt"]
    prompt = Prompt(
        text=p["text"],
        family=p.get("family", ""),
        stop=tuple(p.get("stop", ())),
        fim=FimInput("", ""),
        prefix_end=int(p.get("prefix_end", -1)),
    )
    params = GenerationParams(**{**job["params"], "stop": tuple(job["params"].get("stop", ()))})

    def on_text(piece: str) -> None:
        channel.send({"id": rid, "text": piece})

    _fault("generate")
    try:
        if job.get("stream"):
            gen = backend.generate(prompt, params, cancel, on_text=on_text)
        else:
            gen = backend.generate(prompt, params, cancel)
    except BackendError as exc:
        channel.send({"id": rid, "error": str(exc)})
        return
    except Exception as exc:  # the worker answers every request, whatever happens
        channel.send({"id": rid, "error": f"{type(exc).__name__}: {exc}"})
        return
    channel.send({"id": rid, "generation": asdict(gen)})


def serve(channel: Channel) -> int:
    first = channel.receive()
    if first is None or first.get("op") != "load":
        return 2
    started = time.perf_counter()
    try:
        backend = _load(first.get("settings") or {})
    except BackendError as exc:
        channel.send({"op": "error", "message": str(exc)})
        return 0
    except Exception as exc:
        channel.send(
            {"op": "error", "message": f"cannot load the model: {type(exc).__name__}: {exc}"}
        )
        return 0
    channel.send(
        {
            "op": "ready",
            "pid": os.getpid(),
            "name": backend.name,
            "model_id": backend.model_id,
            "context_length": backend.context_length,
            "load_ms": round((time.perf_counter() - started) * 1000, 1),
            "rss_bytes": resident_bytes(),
            "runs_on": _describe(backend),
        }
    )
    jobs: queue.Queue[dict[str, Any] | None] = queue.Queue()
    cancels: dict[int, CancelToken] = {}
    lock = threading.Lock()

    def run_jobs() -> None:
        while (job := jobs.get()) is not None:
            with lock:
                cancel = cancels.setdefault(job["id"], CancelToken())
            try:
                _generate(channel, backend, job, cancel)
            finally:
                with lock:
                    cancels.pop(job["id"], None)

    runner = threading.Thread(target=run_jobs, name="starcoder-worker-generate", daemon=True)
    runner.start()
    while (message := channel.receive()) is not None:
        op = message.get("op")
        if op == "generate":
            with lock:
                cancels[message["id"]] = CancelToken()
            jobs.put(message)
        elif op == "cancel":
            with lock:
                token = cancels.get(message.get("id", -1))
            if token is not None:
                token.cancel()
        elif op == "count":
            rid = message.get("id")
            try:
                counts = [backend.count_tokens(t) for t in message.get("texts", [])]
            except Exception as exc:
                channel.send({"id": rid, "error": f"{type(exc).__name__}: {exc}"})
            else:
                channel.send({"id": rid, "counts": counts})
        elif op == "stats":
            channel.send({"id": message.get("id"), "rss_bytes": resident_bytes()})
        elif op == "close":
            break
    # The parent is gone or asked us to stop: cancel what runs, free the model, leave.
    with lock:
        for token in cancels.values():
            token.cancel()
    jobs.put(None)
    runner.join(timeout=5)
    with contextlib.suppress(Exception):  # exiting anyway
        backend.close()
    return 0


def main() -> int:
    # The protocol keeps the original stdout; fd 1 becomes stderr for everything else.
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    channel = Channel(sys.stdin.buffer, proto_out)
    code = serve(channel)
    sys.stderr.flush()
    # Skip interpreter teardown: native libraries' destructors at exit have crashed before,
    # and there is nothing left to flush.
    os._exit(code)


if __name__ == "__main__":
    main()
