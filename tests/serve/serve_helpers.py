"""Start ``starcoder-ls serve`` as a real process on a free loopback port, for the end-to-end
tests (and the benchmark) of the team server."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx


def key_file(folder: Path, *keys: str) -> Path:
    """An API key file as an administrator would write it: a comment, the keys, mode 600."""
    path = folder / "api-keys"
    path.write_text("# the team's keys\n" + "".join(f"{k}\n" for k in keys))
    path.chmod(0o600)
    return path


def _limit_files(count: int) -> None:
    """`ulimit -n count` for the child (soft and hard, as the shell's ulimit does)."""
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server has closed (or reset) the connection; never blocks."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def connections_closed(url: str, reason: str) -> int:
    """The server's ``starcoder_ls_connections_closed_total{reason}`` counter."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(f'starcoder_ls_connections_closed_total{{reason="{reason}"}}'):
            return int(float(line.split()[-1]))
    raise AssertionError(f"no connections_closed counter for {reason}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """One ``starcoder-ls serve`` process; its output goes to a file the tests can read."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        log: Path,
        env: dict[str, str] | None = None,
        scheme: str = "http",
        ready_timeout: float = 90.0,
        verify: ssl.SSLContext | bool = True,
        max_open_files: int | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "starcoder_ls", "serve", "--port", str(self.port), *args],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=full_env,
            preexec_fn=(lambda: _limit_files(max_open_files)) if max_open_files else None,
        )
        self._wait_ready(ready_timeout, verify)

    def _wait_ready(self, timeout: float, verify: ssl.SSLContext | bool) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0, verify=verify).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"serve did not become ready in {timeout} s:\n{self.output()}")

    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text(errors="replace")

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int:
        self.terminate()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._out.close()
        return code


def keyed_serve(backend: str, folder: Path, key: str) -> ServeProcess:
    """``serve --backend BACKEND`` that accepts ``key`` only (from a key file in ``folder``)."""
    return ServeProcess(
        ["--backend", backend, "--api-key-file", str(key_file(folder, key)), "--threads", "1"],
        log=folder / "serve.log",
        env={"STARCODER_LS_API_KEYS": ""},  # only the file's key
    )
