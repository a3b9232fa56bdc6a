"""pass@1 runs code no one has read: each program in an interpreter of its own, with limits."""

from __future__ import annotations

import os
import time
from pathlib import Path

from starcoder_ls.evaluation.sandbox import run_python


def test_a_program_that_exits_cleanly_passes_and_one_that_raises_fails_with_its_traceback():
    assert run_python("assert sum([1, 2]) == 3\n").passed
    failed = run_python("def check(x):\n    assert x == 2, 'wrong answer'\ncheck(3)\n")
    assert failed.status == "failed" and "AssertionError: wrong answer" in failed.detail
    syntax = run_python("def f(:\n")
    assert syntax.status == "failed" and "SyntaxError" in syntax.detail


def test_an_endless_loop_is_killed_at_the_timeout():
    t0 = time.monotonic()
    outcome = run_python("while True:\n    pass\n", timeout_s=1.0)
    assert outcome.status == "timeout"
    assert time.monotonic() - t0 < 5


def test_a_program_that_forks_a_sleeper_leaves_nothing_running():
    outcome = run_python(
        "import os, time\nif os.fork() == 0:\n    time.sleep(60)\nelse:\n    print(os.getpid())\n"
    )
    assert outcome.passed
    # The child was in the program's process group, which is killed once the program ends.
    assert not any(
        "time.sleep(60)" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
        for pid in os.listdir("/proc")
        if pid.isdigit() and Path(f"/proc/{pid}/cmdline").exists()
    )


def test_memory_is_capped_and_the_caller_survives():
    outcome = run_python("x = bytearray(2 * 1024**3)\n", memory_mb=256)
    assert outcome.status == "failed" and "MemoryError" in outcome.detail


def test_it_runs_in_a_temporary_directory_with_no_environment_of_ours(tmp_path, monkeypatch):
    monkeypatch.setenv("STARCODER_LS_TEST_SECRET", "hunter2")
    program = (
        "import os, sys\n"
        "assert 'STARCODER_LS_TEST_SECRET' not in os.environ, 'leaked'\n"
        "assert os.getcwd().startswith(os.environ['TMPDIR']), os.getcwd()\n"
        "open('scratch.txt', 'w').write('x')\n"
        "print(os.getcwd(), file=sys.stderr)\n"
        "raise SystemExit(3)\n"
    )
    outcome = run_python(program)
    assert outcome.status == "failed"
    workdir = outcome.detail.strip().splitlines()[-1]
    assert "starcoder-ls-exec-" in workdir and not Path(workdir).exists()  # removed afterwards


def test_files_it_writes_are_capped_in_size():
    outcome = run_python("open('big', 'wb').write(b'x' * (64 * 1024**2))\n")
    assert not outcome.passed
