"""The team server holds its own against idle, slow-header and connection-flooding clients:
a real ``starcoder-ls serve`` process, real sockets, the limits on the command line."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_helpers import ServeProcess, closed_by_server, connections_closed


def _connect(server: ServeProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(
        ["--backend", "test", "--header-timeout", "1", "--idle-timeout", "1"],
        log=tmp_path / "serve.log",
        max_open_files=256,
    )
    yield server
    server.stop()


def test_idle_flood_under_a_low_file_limit_does_not_lock_out_requests(
    guarded: ServeProcess,
) -> None:
    """300 idle sockets against `ulimit -n 256`: every real request is still answered at once,
    accept() never fails, and the idle sockets are gone after the header deadline."""
    idle = [_connect(guarded) for _ in range(300)]
    try:
        started = time.monotonic()
        answers = [httpx.get(f"{guarded.url}/v1/models", timeout=5) for _ in range(20)]
        took = time.monotonic() - started
        assert [a.status_code for a in answers] == [200] * 20
        assert took < 5, f"20 requests took {took:.1f} s"
        time.sleep(1.6)
        still_open = sum(not closed_by_server(s) for s in idle)
        assert still_open == 0
        assert connections_closed(guarded.url, "evicted") > 0
        assert connections_closed(guarded.url, "header_timeout") > 0
    finally:
        for s in idle:
            s.close()
    log = guarded.output()
    assert "Too many open files" not in log
    assert "connection cap reached: closing idle connections" in log


def test_slow_headers_are_cut_off_at_the_deadline(guarded: ServeProcess) -> None:
    sock = _connect(guarded)
    request = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    sent = 0
    started = time.monotonic()
    try:
        for byte in request:
            sock.sendall(bytes([byte]))
            sent += 1
            time.sleep(0.1)
            if closed_by_server(sock):
                break
    except OSError:  # reset while sending
        pass
    lasted = time.monotonic() - started
    sock.close()
    assert sent < len(request), "the server waited for every byte"
    assert 0.9 <= lasted < 2.0, f"cut off after {lasted:.2f} s (deadline 1 s)"


def test_the_deadline_holds_for_the_next_request_on_a_kept_alive_connection(
    guarded: ServeProcess,
) -> None:
    sock = _connect(guarded)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while not answer.endswith(b"}"):  # headers and the JSON body, maybe in two reads
        answer += sock.recv(4096)
    assert b"200 OK" in answer
    sock.sendall(b"GET /health HTTP/1.1\r\n")  # ... and the rest never comes
    time.sleep(1.5)
    assert closed_by_server(sock)
    sock.close()


def test_a_request_in_progress_is_never_closed_to_make_room(tmp_path: Path) -> None:
    """At a cap of 4 with every connection busy, a newcomer is refused; busy ones finish."""
    server = ServeProcess(
        ["--backend", "test", "--model", "latency_ms=800", "--max-connections", "4"],
        log=tmp_path / "serve.log",
    )
    try:
        results: list[int] = []

        def generate() -> None:
            body = {"prompt": "def f(", "max_tokens": 4}
            answer = httpx.post(f"{server.url}/v1/completions", json=body, timeout=30)
            results.append(answer.status_code)

        busy = [threading.Thread(target=generate) for _ in range(4)]
        for t in busy:
            t.start()
        time.sleep(0.5)  # all four are generating (one slot, the others queued)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/health", timeout=2)
        for t in busy:
            t.join()
        assert results == [200] * 4
        assert connections_closed(server.url, "refused") >= 1
        assert "refusing new ones" in server.output()
    finally:
        server.stop()
