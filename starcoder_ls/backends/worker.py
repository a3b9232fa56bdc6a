"""Local models in a supervised child process, so a native crash never takes the server down.

llama.cpp and torch are native code: an instruction the CPU cannot run (SIGILL), a bad memory
access in a kernel (SIGSEGV) or the kernel's OOM killer (SIGKILL) ends the whole process they
run in. ``WorkerBackend`` runs the model in ``starcoder_ls.backends.worker_main`` and talks to
it over a pipe, so such an end costs the request in flight and nothing else:

- the request in flight fails with a ``WorkerCrashed`` error that names the cause (the signal,
  the last lines the worker wrote to stderr); the server shows it once and answers empty;
- the worker is started again in the background, at once after the first crash and with a
  doubling delay (up to ``MAX_BACKOFF_S``) when it keeps crashing; a worker that stayed up for
  ``STABLE_S`` resets the delay;
- a model that crashes (or fails) while loading is not retried: the same error is raised for
  every request until the settings change (which builds a new backend).

Cancellation crosses the pipe (the worker stops between tokens), and the worker keeps its model
and KV cache from one request to the next, as the in-process backends do.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from starcoder_ls.settings import Settings
from starcoder_ls.types import BackendError, CancelToken, Generation, GenerationParams, Prompt

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.25
MAX_BACKOFF_S = 30.0
STABLE_S = 60.0
"""A worker that served this long before crashing restarts without delay again."""
STDERR_LINES = 40
LOAD_TIMEOUT_S = 900.0
"""Loading a big model from a slow disk can take minutes; past this the worker is abandoned."""
_POLL_S = 0.01
"""How often a waiting request looks at its CancelToken."""


class WorkerCrashed(BackendError):
    """The worker process ended unexpectedly. ``at_load`` when it never became ready."""

    def __init__(self, message: str, *, at_load: bool = False) -> None:
        super().__init__(message)
        self.at_load = at_load


def describe_exit(code: int | None) -> str:
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = {
            "SIGILL": "an instruction this CPU cannot run",
            "SIGKILL": "killed, often by the out-of-memory killer",
            "SIGSEGV": "a memory fault in native code",
            "SIGABRT": "native code aborted",
            "SIGBUS": "a bus error, often a model file changed while mapped",
        }.get(name)
        return f"it was killed by {name}" + (f" ({hint})" if hint else "")
    return f"it exited with status {code}"


@dataclass
class WorkerInfo:
    """What the running worker reported when it became ready."""

    pid: int = 0
    name: str = ""
    model_id: str = ""
    context_length: int = 0
    load_ms: float = 0.0
    rss_bytes: int = 0
    runs_on: str = ""
    started: float = field(default_factory=time.monotonic)


class _Pending:
    def __init__(self, on_text: Callable[[str], None] | None = None) -> None:
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.on_text = on_text


class _Worker:
    """One child process and the thread that reads its replies."""

    def __init__(self, settings: Settings, on_exit: Callable[[_Worker], None]) -> None:
        self._on_exit = on_exit
        self.stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()
        self._next_id = 0
        self.ready = threading.Event()
        self.info: WorkerInfo | None = None
        self.load_error: str | None = None
        self.exit_code: int | None = None
        self.dead = threading.Event()
        self.closing = False
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "starcoder_ls.backends.worker_main"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # a Ctrl-C in the editor's terminal is the server's to handle
        )
        self._write_lock = threading.Lock()
        self._send({"op": "load", "settings": settings.to_json()})
        threading.Thread(
            target=self._read_stderr, name="starcoder-worker-stderr", daemon=True
        ).start()
        threading.Thread(target=self._read, name="starcoder-worker-reader", daemon=True).start()

    # -- plumbing --------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> bool:
        data = json.dumps(message, ensure_ascii=False).encode("utf-8") + b"\n"
        try:
            with self._write_lock:
                assert self.proc.stdin is not None
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            return False
        return True

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line:
                self.stderr.append(line)
                log.debug("worker: %s", line)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                message = json.loads(raw)
            except json.JSONDecodeError:
                log.warning("worker sent a malformed line: %r", raw[:200])
                continue
            op = message.get("op")
            if op == "ready":
                fields = {k: message[k] for k in WorkerInfo.__dataclass_fields__ if k in message}
                self.info = WorkerInfo(**{**fields, "started": time.monotonic()})
                self.ready.set()
                continue
            if op == "error":
                self.load_error = str(message.get("message", "the model failed to load"))
                continue
            with self._lock:
                pending = self._pending.get(message.get("id", -1))
            if pending is None:
                continue
            if "text" in message and pending.on_text is not None:
                try:
                    pending.on_text(message["text"])
                except Exception:
                    log.exception("on_text failed")
                continue
            if "text" not in message:
                pending.replies.put(message)
        self.exit_code = self.proc.wait()
        # Give the stderr reader a moment to take the last lines (the crash report).
        time.sleep(0.05)
        self.dead.set()
        self.ready.set()
        crash = None if self.closing else self.crash_message()
        with self._lock:
            pending_now = list(self._pending.values())
            self._pending.clear()
        for p in pending_now:
            p.replies.put({"crashed": crash or "the model worker was closed"})
        self._on_exit(self)

    def crash_message(self) -> str:
        where = " while loading the model" if self.info is None else ""
        cause = describe_exit(self.exit_code)
        tail = [line for line in self.stderr if line.strip()][-3:]
        text = f"the model worker died{where}: {cause}"
        if tail:
            text += "; its last output: " + " | ".join(t[-200:] for t in tail)
        return text

    # -- requests --------------------------------------------------------------------------

    def request(
        self,
        message: dict[str, Any],
        cancel: CancelToken | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        pending = _Pending(on_text)
        with self._lock:
            self._next_id += 1
            rid = self._next_id
            self._pending[rid] = pending
        try:
            if self.dead.is_set() or not self._send({**message, "id": rid}):
                self.dead.wait(1.0)
                raise WorkerCrashed(self.crash_message())
            sent_cancel = False
            while True:
                try:
                    reply = pending.replies.get(timeout=_POLL_S if cancel is not None else None)
                except queue.Empty:
                    if cancel is not None and cancel.cancelled and not sent_cancel:
                        sent_cancel = True
                        self._send({"op": "cancel", "id": rid})
                    continue
                if "crashed" in reply:
                    raise WorkerCrashed(str(reply["crashed"]))
                return reply
        finally:
            with self._lock:
                self._pending.pop(rid, None)

    def close(self, timeout: float = 5.0) -> None:
        self.closing = True
        self._send({"op": "close"})
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class WorkerBackend:
    """A local backend (``llamacpp`` or ``transformers``) run in a supervised worker process.

    Creating it starts the worker and waits for the model to load; load failures raise
    ``BackendError`` (``WorkerCrashed`` with ``at_load`` when the worker died while loading).
    """

    def __init__(self, settings: Settings, *, load_timeout: float = LOAD_TIMEOUT_S) -> None:
        self._settings = settings
        self._load_timeout = load_timeout
        self._lock = threading.Lock()
        self._closed = False
        self._failure: BackendError | None = None
        self._quick_crashes = 0
        self._restart_timer: threading.Timer | None = None
        self.restarts = 0
        """Workers started after a crash (for tests and statistics)."""
        self.crashes: list[str] = []
        self._worker: _Worker = None  # type: ignore[assignment]  # set just below
        self._worker = self._start()
        info = self._wait_ready(self._worker, None)
        self.name = info.name
        self.model_id = info.model_id
        self.context_length = info.context_length
        self.notice = ""
        """Something the user should hear about the model in use (the default model is not
        installed and the bundled test model stands in)."""
        if settings.backend == "llamacpp" and not settings.model.strip():
            from starcoder_ls.models import default_gguf

            self.notice = default_gguf()[1]

    # -- lifecycle ---------------------------------------------------------------------------

    def _start(self) -> _Worker:
        return _Worker(self._settings, self._exited)

    def _wait_ready(self, worker: _Worker, cancel: CancelToken | None) -> WorkerInfo:
        deadline = time.monotonic() + self._load_timeout
        while not worker.ready.wait(_POLL_S * 10):
            if cancel is not None and cancel.cancelled:
                raise BackendError("cancelled while the model loads")
            if time.monotonic() > deadline:
                worker.proc.kill()
                raise BackendError(f"the model did not load within {self._load_timeout:.0f} s")
        if worker.info is not None and not worker.dead.is_set():
            return worker.info
        if worker.load_error is not None:
            worker.dead.wait(5.0)
            raise BackendError(worker.load_error)
        worker.dead.wait(5.0)
        if worker.info is not None:  # it loaded, then died at once
            raise WorkerCrashed(worker.crash_message())
        raise WorkerCrashed(worker.crash_message(), at_load=True)

    def _exited(self, worker: _Worker) -> None:
        """Called on the reader thread when a worker process has ended."""
        with self._lock:
            if self._closed or worker is not self._worker or worker.closing:
                return
            if worker.info is None:  # it never loaded: report that, do not loop
                if worker.load_error is not None:
                    self._failure = BackendError(worker.load_error)
                else:
                    self._failure = WorkerCrashed(worker.crash_message(), at_load=True)
                log.info("%s; not restarting it", self._failure)
                return
            message = worker.crash_message()
            self.crashes = [*self.crashes[-19:], message]
            if time.monotonic() - worker.info.started >= STABLE_S:
                self._quick_crashes = 0
            n = self._quick_crashes
            delay = 0.0 if n == 0 else min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (n - 1))
            self._quick_crashes += 1
            # The caller reports the crash to the user (showMessage, the CLI's error line).
            log.info("%s; restarting it in %.2f s", message, delay)
            timer = threading.Timer(delay, self._restart)
            timer.daemon = True
            self._restart_timer = timer
            timer.start()

    def _restart(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.restarts += 1
            self._worker = self._start()

    def _current(self, cancel: CancelToken | None) -> _Worker:
        """The worker to send a request to, waiting for a restart in progress."""
        while True:
            with self._lock:
                if self._closed:
                    raise BackendError(f"the {self.name} backend was closed")
                if self._failure is not None:
                    raise self._failure
                worker = self._worker
                restarting = worker.dead.is_set()
            if not restarting:
                try:
                    self._wait_ready(worker, cancel)
                except WorkerCrashed:
                    continue  # it died: a restart is on its way, or _failure says why not
                return worker
            if cancel is not None and cancel.cancelled:
                raise BackendError("cancelled while the model worker restarts")
            time.sleep(_POLL_S * 5)

    # -- the Backend protocol ------------------------------------------------------------------

    @property
    def info(self) -> WorkerInfo | None:
        return self._worker.info

    @property
    def pid(self) -> int:
        return self._worker.proc.pid

    def count_tokens(self, text: str) -> int:
        return self.count_tokens_many([text])[0] if text else 0

    def count_tokens_many(self, texts: list[str]) -> list[int]:
        """Token counts of several texts in one round trip to the worker."""
        if not texts:
            return []
        reply = self._current(None).request({"op": "count", "texts": texts})
        if "error" in reply:
            raise BackendError(str(reply["error"]))
        return [int(n) for n in reply["counts"]]

    def generate(
        self,
        prompt: Prompt,
        params: GenerationParams,
        cancel: CancelToken,
        on_text: Callable[[str], None] | None = None,
    ) -> Generation:
        worker = self._current(cancel)
        message = {
            "op": "generate",
            "prompt": {
                "text": prompt.text,
                "family": prompt.family,
                "stop": list(prompt.stop),
                "prefix_end": prompt.prefix_end,
            },
            "params": {**asdict(params), "stop": list(params.stop)},
            "stream": on_text is not None,
        }
        reply = worker.request(message, cancel, on_text)
        if "error" in reply:
            raise BackendError(str(reply["error"]))
        return Generation(**reply["generation"])

    def resident_bytes(self) -> int:
        """The worker's resident memory now (0 when it is not running)."""
        try:
            reply = self._current(None).request({"op": "stats"})
        except BackendError:
            return 0
        return int(reply.get("rss_bytes", 0))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            worker = self._worker
            if self._restart_timer is not None:
                self._restart_timer.cancel()
        worker.close()
