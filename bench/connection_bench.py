#!/usr/bin/env python
"""How the team server holds up against idle, slow-header and connection-flooding clients.

A real ``starcoder-ls serve --backend test`` process on a loopback port, started under
``ulimit -n 256`` (the ``--nofile`` option), with its default limits (header deadline 10 s,
keep-alive 5 s, the connection cap derived from the file limit) unless told otherwise:

1. **Idle flood**: open ``--idle`` (300) sockets that never send a byte, then send 20 real
   requests on new connections: how many are answered, their latency, and whether accept()
   ever failed ("Too many open files" in the server log).
2. **Idle sockets**: open 50 idle sockets and count how many the server still holds open after
   ``header_timeout + 5`` s (the issue's 15 s with the default 10 s deadline).
3. **Slow headers**: send a request's headers one byte a second; when the server cuts it off.
4. **Busy at the cap**: with ``--max-connections 8`` and 8 requests generating, what a ninth
   connection gets (refused at once), and whether all 8 finish.

Usage: ``python bench/connection_bench.py [--json OUT] [--header-timeout S] [--nofile N]``.
Prints a Markdown report with the machine.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "serve"))

from serve_helpers import ServeProcess, closed_by_server, connections_closed  # noqa: E402

from starcoder_ls.machine import machine_info  # noqa: E402


def idle_flood(server: ServeProcess, count: int) -> dict[str, Any]:
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(count)]
    latencies, statuses = [], []
    for _ in range(20):
        started = time.perf_counter()
        try:
            statuses.append(httpx.get(f"{server.url}/v1/models", timeout=10).status_code)
        except httpx.HTTPError as exc:
            statuses.append(type(exc).__name__)
        latencies.append((time.perf_counter() - started) * 1000)
    held = sum(not closed_by_server(s) for s in idle)
    for s in idle:
        s.close()
    return {
        "idle_sockets": count,
        "answered_200": statuses.count(200),
        "requests": len(statuses),
        "latency_ms_median": sorted(latencies)[len(latencies) // 2],
        "latency_ms_max": max(latencies),
        "idle_still_open_right_after": held,
        "evicted": connections_closed(server.url, "evicted"),
        "accept_failures_in_log": server.output().count("Too many open files"),
    }


def idle_sockets(server: ServeProcess, header_timeout: float) -> dict[str, Any]:
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
    wait = header_timeout + 5
    time.sleep(wait)
    held = sum(not closed_by_server(s) for s in socks)
    for s in socks:
        s.close()
    return {"opened": 50, "waited_s": wait, "still_open": held}


def slow_headers(server: ServeProcess, header_timeout: float) -> dict[str, Any]:
    sock = socket.create_connection(("127.0.0.1", server.port))
    request = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Drip: " + b"a" * 200
    started, sent = time.monotonic(), 0
    try:
        for byte in request:
            sock.sendall(bytes([byte]))
            sent += 1
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                if closed_by_server(sock):
                    raise ConnectionResetError
                time.sleep(0.05)
    except OSError:
        pass
    sock.close()
    return {"bytes_sent": sent, "cut_off_after_s": round(time.monotonic() - started, 2)}


def busy_at_cap(tmp: Path) -> dict[str, Any]:
    server = ServeProcess(
        ["--backend", "test", "--model", "latency_ms=500", "--max-connections", "8"],
        log=tmp / "busy.log",
    )
    try:
        statuses: list[Any] = []

        def generate() -> None:
            try:
                body = {"prompt": "def f(", "max_tokens": 4}
                answer = httpx.post(f"{server.url}/v1/completions", json=body, timeout=60)
                statuses.append(answer.status_code)
            except httpx.HTTPError as exc:
                statuses.append(type(exc).__name__)

        threads = [threading.Thread(target=generate) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        started = time.perf_counter()
        try:
            ninth: Any = httpx.get(f"{server.url}/health", timeout=5).status_code
        except httpx.HTTPError as exc:
            ninth = type(exc).__name__
        ninth_ms = (time.perf_counter() - started) * 1000
        for t in threads:
            t.join()
        return {
            "busy": 8,
            "busy_answered_200": statuses.count(200),
            "ninth_connection": ninth,
            "ninth_ms": round(ninth_ms, 1),
            "refused": connections_closed(server.url, "refused"),
        }
    finally:
        server.stop()


def report(result: dict[str, Any]) -> str:
    f, i, s, b = result["idle_flood"], result["idle"], result["slow"], result["busy"]
    o = result["options"]
    return "\n".join(
        [
            "# Team server: idle, slow-header and flooding connections",
            "",
            f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores",
            f"Server: `starcoder-ls serve --backend test` under `ulimit -n {o['nofile']}`, "
            f"header deadline {o['header_timeout']} s, keep-alive {o['idle_timeout']} s, "
            f"connection cap {o['cap']} (derived from the file limit).",
            "",
            "| case | outcome |",
            "|---|---|",
            f"| {f['idle_sockets']} idle sockets, then 20 requests on new connections | "
            f"{f['answered_200']}/{f['requests']} answered 200, median "
            f"{f['latency_ms_median']:.1f} ms, max {f['latency_ms_max']:.1f} ms; "
            f"{f['evicted']} idle connections closed to make room; accept() failures: "
            f"{f['accept_failures_in_log']} |",
            f"| 50 idle sockets, {i['waited_s']:g} s later | {i['still_open']}/50 still open |",
            f"| headers sent one byte a second | cut off after {s['cut_off_after_s']} s, "
            f"{s['bytes_sent']} bytes in |",
            f"| cap 8, 8 generations running, a ninth connection | {b['ninth_connection']} "
            f"after {b['ninth_ms']} ms; the 8 busy ones: {b['busy_answered_200']}/8 answered 200 |",
            "",
        ]
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--header-timeout", type=float, default=10.0)
    ap.add_argument("--idle-timeout", type=float, default=5.0)
    ap.add_argument("--nofile", type=int, default=256)
    ap.add_argument("--idle", type=int, default=300)
    args = ap.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="connection-bench-") as name:
        tmp = Path(name)
        server = ServeProcess(
            [
                "--backend",
                "test",
                "--header-timeout",
                str(args.header_timeout),
                "--idle-timeout",
                str(args.idle_timeout),
                "--no-access-log",
            ],
            log=tmp / "serve.log",
            max_open_files=args.nofile,
        )
        try:
            cap = int(server.output().split(" connections at most")[0].rsplit(" ", 1)[-1])
            result: dict[str, Any] = {
                "machine": machine_info(),
                "options": {
                    "nofile": args.nofile,
                    "header_timeout": args.header_timeout,
                    "idle_timeout": args.idle_timeout,
                    "cap": cap,
                },
            }
            print("idle flood ...", file=sys.stderr)
            result["idle_flood"] = idle_flood(server, args.idle)
            time.sleep(args.header_timeout + 1)  # the flood's leftovers time out
            print("idle sockets ...", file=sys.stderr)
            result["idle"] = idle_sockets(server, args.header_timeout)
            print("slow headers ...", file=sys.stderr)
            result["slow"] = slow_headers(server, args.header_timeout)
        finally:
            server.stop()
        print("busy at the cap ...", file=sys.stderr)
        result["busy"] = busy_at_cap(tmp)
    text = report(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
