"""Run model-written Python with limits: pass@1 executes code no one has read.

Each program runs in a fresh interpreter of its own (``python -I -S``: no user site, no
environment variables that change Python, no ``site`` module), in a temporary directory that is
removed afterwards, with an almost empty environment, stdin closed, and resource limits set in
the child before the program starts: address space, CPU seconds, file size (so it cannot fill
the disk) and no core files. A wall-clock timeout kills the child's whole process group.

What this does not do: cut the network or hide the rest of the file system. Run evaluations of
untrusted models in a container or VM without network if that matters to you.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

_LAUNCHER = """\
import resource, runpy, sys
mem, cpu, fsize = (int(x) for x in sys.argv[1:4])
resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
sys.argv = ["program.py"]
runpy.run_path("program.py", run_name="__main__")
"""

_FILE_LIMIT = 16 * 2**20
_STDERR_TAIL = 2000


@dataclass(frozen=True)
class Outcome:
    passed: bool
    status: str
    """passed, failed, timeout (wall clock or CPU), or error (the sandbox itself failed)."""
    detail: str = ""
    """The end of what the program wrote to stderr (its traceback, say)."""


def run_python(source: str, *, timeout_s: float = 10.0, memory_mb: int = 1024) -> Outcome:
    """Run ``source`` as a script under the limits above; passed when it exits with 0."""
    with tempfile.TemporaryDirectory(prefix="starcoder-ls-exec-") as tmp:
        work = Path(tmp)
        (work / "program.py").write_text(source, encoding="utf-8")
        stderr_path = work / ".stderr"
        env = {
            "PATH": os.defpath,
            "HOME": tmp,
            "TMPDIR": tmp,
            "PYTHONHASHSEED": "0",
            "LANG": "C.UTF-8",
        }
        argv = [
            sys.executable,
            "-I",
            "-S",
            "-B",
            "-c",
            _LAUNCHER,
            str(memory_mb * 2**20),
            str(int(timeout_s) + 1),
            str(_FILE_LIMIT),
        ]
        with open(stderr_path, "wb") as err:
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=tmp,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    start_new_session=True,
                )
            except OSError as exc:
                return Outcome(False, "error", f"could not start {sys.executable}: {exc}")
            try:
                code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                return Outcome(False, "timeout", f"still running after {timeout_s:g} s")
            _kill_group(proc)  # anything it left running in the background
        tail = _tail(stderr_path)
        if code == 0:
            return Outcome(True, "passed")
        if code == -signal.SIGXCPU:
            return Outcome(False, "timeout", "CPU time limit")
        return Outcome(False, "failed", tail or f"exit status {code}")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _STDERR_TAIL))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""
