#!/usr/bin/env python
"""Benchmark report for the team server, ``starcoder-ls serve``, over loopback HTTP.

Every server is a real ``starcoder-ls serve`` process on a free loopback port with the bundled
model (transformers on the CPU, ``--threads 1``); the clients are asyncio tasks in this process,
each with its own httpx connection, sending ``POST /v1/completions`` with distinct fill-in-the-
middle prompts cut from real Python source (this repository and the standard library, at lines
drawn with a fixed seed; ``suffix`` set, so the server builds the FIM prompt), temperature 0.

1. Load: 1, 8 and 32 concurrent clients against ``--max-batch 8`` with a queue that fits them
   all (target: no errors): throughput (requests/s, generated tokens/s), latency p50/p95, errors
   by status, and what the server's own ``/metrics`` and CPU time say. Then 32 clients against
   ``--max-batch 8 --max-queue 8``: how many are refused with 429 and Retry-After (expected).
2. Batching speedup: the same 8-client load against ``--max-batch 8`` and ``--max-batch 1``,
   alternately (A B A B ...: the machine is noisy), tokens/s of each round, the ratio per round
   and its median (target: >= 2.5x); the batch-size histogram of the batched rounds; and whether
   both configurations gave the same completions. Three prompt sets: editor prompts (all
   distinct), short ones, and editor prompts as typed (each client types a line of its own
   file, one request per character, as an editor sends them).
3. Memory: one fresh server's RSS (``/proc/<pid>/status`` VmRSS) after 100 requests and after
   ``--requests-memory`` (default 10,000) requests of 8 new tokens from 8 clients, checkpoints in
   between, and the throughput of that run.

Usage: ``python bench/serve_bench.py [--json OUT] [--quick] [--requests-memory N]``. Prints a
Markdown report; every server it starts is stopped on exit, Ctrl-C and errors included.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import importlib.metadata
import json
import os
import platform
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BASE_OPTIONS = ("--backend", "transformers", "--threads", "1", "--no-access-log")
REQUEST_TIMEOUT_S = 120.0
"""The client's timeout; the server's own --request-timeout (60 s) answers 504 before it."""


# --------------------------------------------------------------------------- the machine


def machine() -> dict[str, Any]:
    from starcoder_ls.machine import cpu_name

    cpu = cpu_name()
    ram_gib = float("nan")
    with contextlib.suppress(OSError, StopIteration, ValueError):
        kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        ram_gib = round(kib / 2**20, 1)
    versions = {"python": platform.python_version()}
    for name, dist in (
        ("torch", "torch"),
        ("transformers", "transformers"),
        ("llama-cpp-python", "llama_cpp_python"),
        ("starcoder-ls", "starcoder-ls"),
        ("uvicorn", "uvicorn"),
        ("starlette", "starlette"),
        ("httpx", "httpx"),
    ):
        try:
            versions[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gib": ram_gib,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


# --------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class FimPrompt:
    source: str
    """Where it was cut: ``path:line``."""
    prefix: str
    suffix: str


def _source_files() -> list[Path]:
    """This repository's package (code the bundled model never saw) and the standard library's
    top-level modules (code like what it was trained on), in a fixed order."""
    ours = sorted((ROOT / "starcoder_ls").rglob("*.py"))
    stdlib = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    return [p for p in ours + stdlib if 2_000 <= p.stat().st_size <= 400_000]


@dataclass(frozen=True)
class Shape:
    """How much of the file around the cursor a prompt holds."""

    prefix_lines: tuple[int, int]
    """Lines before the cursor: drawn between these two (inclusive) for each prompt."""
    prefix_chars: int
    suffix_lines: int
    suffix_chars: int

    def describe(self) -> str:
        lo, hi = self.prefix_lines
        lines = f"{hi}" if lo == hi else f"{lo} to {hi} (uniform)"
        return (
            f"{lines} lines / at most {self.prefix_chars:,} characters before the cursor, "
            f"{self.suffix_lines} lines / {self.suffix_chars:,} characters after"
        )


EDITOR = Shape((40, 40), 1500, 10, 500)
"""What an editor client sends for this model: about as much as its 512-token context holds."""
SHORT = Shape((8, 8), 300, 3, 150)
"""A few lines around the cursor: prefill costs little, decoding dominates."""
MIXED = Shape((1, 12), 600, 3, 200)
"""Cursor windows of many sizes, none long (the memory run: many cache widths, and fast enough
for 10,000 requests in a few minutes)."""


def fim_prompts(n: int, seed: int, shape: Shape = EDITOR) -> list[FimPrompt]:
    """``n`` distinct editor-style FIM prompts: the cursor after the indentation of a non-blank
    line of a real file, that line's code the middle to fill, with ``shape``'s window of the
    file around it."""
    rng = random.Random(seed)
    files = _source_files()
    texts: dict[Path, list[str]] = {}
    seen: set[tuple[Path, int]] = set()
    out: list[FimPrompt] = []
    while len(out) < n:
        path = rng.choice(files)
        if path not in texts:
            try:
                texts[path] = path.read_text("utf-8").splitlines(keepends=True)
            except (OSError, UnicodeDecodeError):
                texts[path] = []
        lines = texts[path]
        if len(lines) < 20:
            continue
        row = rng.randrange(5, len(lines) - 1)
        line = lines[row]
        before = rng.randint(*shape.prefix_lines)
        if not line.strip() or (path, row) in seen:
            continue
        seen.add((path, row))
        indent = line[: len(line) - len(line.lstrip())]
        prefix = "".join(lines[max(0, row - before) : row])[-shape.prefix_chars :] + indent
        suffix = "".join(lines[row + 1 : row + 1 + shape.suffix_lines])[: shape.suffix_chars]
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else Path("stdlib", path.name)
        out.append(FimPrompt(f"{where}:{row + 1}", prefix, suffix))
    return out


def typing_prompts(clients: int, keys: int, seed: int, shape: Shape = EDITOR) -> list[FimPrompt]:
    """What ``clients`` editors send while each types ``keys`` characters of a line of its own
    file: per keystroke, ``shape``'s window of the file with the line typed so far, the window's
    start fixed. Ordered keystroke by keystroke across the editors, so that ``run_load`` gives
    each client one editor's requests in the order they were typed."""
    rng = random.Random(seed)
    files = _source_files()
    sessions: list[list[FimPrompt]] = []
    seen: set[tuple[Path, int]] = set()
    while len(sessions) < clients:
        path = rng.choice(files)
        lines = path.read_text("utf-8", errors="replace").splitlines(keepends=True)
        if len(lines) < 20:
            continue
        row = rng.randrange(5, len(lines) - 1)
        code = lines[row].strip()
        if len(code) < keys or (path, row) in seen:
            continue
        seen.add((path, row))
        indent = lines[row][: len(lines[row]) - len(lines[row].lstrip())]
        before = "".join(lines[max(0, row - shape.prefix_lines[1]) : row])[-shape.prefix_chars :]
        suffix = "".join(lines[row + 1 : row + 1 + shape.suffix_lines])[: shape.suffix_chars]
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else Path("stdlib", path.name)
        sessions.append(
            [
                FimPrompt(f"{where}:{row + 1}+{k}", before + indent + code[:k], suffix)
                for k in range(1, keys + 1)
            ]
        )
    return [session[k] for k in range(keys) for session in sessions]


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_LIVE: set[Server] = set()
"""Servers started and not yet stopped: ``atexit`` stops whatever is left."""


class Server:
    """One ``starcoder-ls serve`` process on a free loopback port, in its own session (so a
    Ctrl-C in the terminal reaches this script, which stops it, and not the server directly)."""

    def __init__(self, name: str, options: Sequence[str], log_dir: Path) -> None:
        self.name = name
        self.options = [*BASE_OPTIONS, *options]
        self.log = log_dir / f"serve-{name}.log"
        self.port = 0
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None

    def launch(self) -> None:
        """Start the process (without waiting for it: servers load their models together)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.exit_code = None
        command = [sys.executable, "-m", "starcoder_ls", "serve", "--port", str(self.port)]
        command += self.options
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _LIVE.add(self)

    def wait_ready(self, timeout: float = 180.0) -> None:
        for attempt in range(3):
            if self._ready(timeout):
                return
            self.stop()
            # Another process may have taken the free port between the probe and the bind.
            if attempt == 2 or "address already in use" not in self.output().lower():
                break
            self.launch()
        raise RuntimeError(f"serve {self.name} did not start:\n{self.output()[-4000:]}")

    def _ready(self, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return True
            time.sleep(0.1)
        return False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else ""

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (the server drains and exits), SIGKILL after ``timeout`` seconds."""
        proc = self.proc
        _LIVE.discard(self)
        if proc is None or self.exit_code is not None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            self.exit_code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            self.exit_code = proc.wait()

    def log_notes(self, limit: int = 8) -> list[str]:
        """Distinct warnings, errors and tracebacks in the server's output (numbers shortened,
        so one message repeated with different values counts once)."""
        notes: list[str] = []
        for line in self.output().splitlines():
            low = line.lower()
            if any(
                w in low for w in ("warning", "error", "traceback", "exception", "[transformers]")
            ):
                note = re.sub(r"\d+", "N", line.strip())[:240]
                if note not in notes:
                    notes.append(note)
        return notes[:limit]

    @property
    def stopped_cleanly(self) -> bool:
        """uvicorn re-raises the SIGTERM it handled once it has shut down, so a clean stop
        exits by that signal (-15), after "Finished server process"."""
        return self.exit_code in (0, -signal.SIGTERM) and "Finished server process" in (
            self.output()
        )

    # ------------------------------------------------------------ what it says

    def rss_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak) of the server process, in KiB."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (all its threads)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as ``{'name{labels}': value}`` (comments dropped)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10.0).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[key] = float(value)
        return out


def machine_busy_seconds() -> float:
    """CPU seconds all processes on this machine spent so far (``/proc/stat``), to tell how
    much of a run's time other processes took."""
    with contextlib.suppress(OSError, ValueError):
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    return float("nan")


_STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _STARTED:6.1f} s] {message}", file=sys.stderr, flush=True)


def _stop_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop(timeout=10.0)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through main's ``finally``: every server stops


# --------------------------------------------------------------------------- load


@dataclass
class Reply:
    prompt: int
    """Index of the prompt in the run's list."""
    status: int
    """HTTP status; 0 when no answer came (the error names the exception)."""
    seconds: float
    completion_tokens: int = 0
    prompt_tokens: int = 0
    text: str = ""
    error: str = ""
    retry_after: str | None = None


@dataclass
class LoadRun:
    clients: int
    replies: list[Reply]
    wall_s: float
    server_cpu_s: float
    client_cpu_s: float
    machine_cpu_s: float
    metrics_before: dict[str, float] = field(default_factory=dict)
    metrics_after: dict[str, float] = field(default_factory=dict)

    def delta(self, key: str) -> float:
        return self.metrics_after.get(key, 0.0) - self.metrics_before.get(key, 0.0)


async def _client(
    url: str, prompts: list[tuple[int, FimPrompt]], max_tokens: int, replies: list[Reply]
) -> None:
    """One client on one connection, its prompts one after the other."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=REQUEST_TIMEOUT_S) as client:
        for index, p in prompts:
            body: dict[str, Any] = {
                "prompt": p.prefix,
                "suffix": p.suffix,
                "max_tokens": max_tokens,
                "temperature": 0,
            }
            start = time.perf_counter()
            try:
                r = await client.post("/v1/completions", json=body)
            except httpx.HTTPError as exc:
                replies.append(
                    Reply(index, 0, time.perf_counter() - start, error=type(exc).__name__)
                )
                continue
            seconds = time.perf_counter() - start
            reply = Reply(index, r.status_code, seconds, retry_after=r.headers.get("retry-after"))
            try:
                data = r.json()
            except ValueError:
                data = {}
            if r.status_code == 200:
                usage = data.get("usage", {})
                reply.completion_tokens = int(usage.get("completion_tokens", 0))
                reply.prompt_tokens = int(usage.get("prompt_tokens", 0))
                reply.text = data["choices"][0]["text"]
            else:
                reply.error = str(data.get("error", {}).get("message", r.text[:200]))
            replies.append(reply)


def run_load(server: Server, prompts: list[FimPrompt], clients: int, max_tokens: int) -> LoadRun:
    """``clients`` concurrent clients, each sending its share of ``prompts`` (prompt ``i`` goes
    to client ``i % clients``) one after the other."""
    shares: list[list[tuple[int, FimPrompt]]] = [[] for _ in range(clients)]
    for i, p in enumerate(prompts):
        shares[i % clients].append((i, p))
    replies: list[Reply] = []

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(_client(server.url, s, max_tokens, replies) for s in shares))
        return time.perf_counter() - start

    before = server.metrics()
    cpu0, own0, all0 = server.cpu_seconds(), time.process_time(), machine_busy_seconds()
    wall = asyncio.run(main())
    cpu1, own1, all1 = server.cpu_seconds(), time.process_time(), machine_busy_seconds()
    after = server.metrics()
    replies.sort(key=lambda r: r.prompt)
    return LoadRun(clients, replies, wall, cpu1 - cpu0, own1 - own0, all1 - all0, before, after)


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def _ratio(a: float, b: float, scale: float = 1.0, digits: int = 1) -> float:
    return round(scale * a / b, digits) if b else float("nan")


def summarize(run: LoadRun) -> dict[str, Any]:
    ok = [r for r in run.replies if r.status == 200]
    statuses = Counter(str(r.status) if r.status else r.error for r in run.replies)
    errors = {k: v for k, v in sorted(statuses.items()) if k not in ("200", "429")}
    refused = [r for r in run.replies if r.status == 429]
    latencies = [r.seconds * 1000 for r in ok]
    tokens = sum(r.completion_tokens for r in ok)
    route = 'route="/v1/completions"'
    steps = run.delta('starcoder_ls_batch_size_bucket{le="+Inf"}')
    others = run.machine_cpu_s - run.server_cpu_s - run.client_cpu_s
    return {
        "clients": run.clients,
        "requests": len(run.replies),
        "ok": len(ok),
        "errors": errors,
        "error_count": sum(errors.values()),
        "refused_429": len(refused),
        "refused_with_retry_after": sum(1 for r in refused if r.retry_after is not None),
        "retry_after_values": sorted({r.retry_after for r in refused if r.retry_after}),
        "wall_s": round(run.wall_s, 2),
        "requests_per_s": round(len(ok) / run.wall_s, 2),
        "tokens_per_s": round(tokens / run.wall_s, 1),
        "completion_tokens": tokens,
        "completion_tokens_mean": round(tokens / len(ok), 1) if ok else 0.0,
        "prompt_tokens_mean": round(statistics.mean(r.prompt_tokens for r in ok), 1) if ok else 0,
        "latency_p50_ms": round(pct(latencies, 50), 1),
        "latency_p95_ms": round(pct(latencies, 95), 1),
        "latency_max_ms": round(max(latencies), 1) if latencies else float("nan"),
        "server_latency_mean_ms": _ratio(
            run.delta(f"starcoder_ls_request_seconds_sum{{{route}}}"),
            run.delta(f"starcoder_ls_request_seconds_count{{{route}}}"),
            1000,
        ),
        "queue_wait_mean_ms": _ratio(
            run.delta("starcoder_ls_queue_seconds_sum"),
            run.delta("starcoder_ls_queue_seconds_count"),
            1000,
        ),
        "server_cpu_s": round(run.server_cpu_s, 2),
        "server_cpu_ms_per_request": _ratio(run.server_cpu_s, len(run.replies), 1000),
        "client_cpu_ms_per_request": _ratio(run.client_cpu_s, len(run.replies), 1000),
        "other_processes_cpu_share": _ratio(max(0.0, others), run.wall_s, digits=2),
        "batch_steps": int(steps),
        "mean_batch_size": _ratio(run.delta("starcoder_ls_batch_size_sum"), steps, digits=2),
    }


def warm_up(server: Server, prompts: list[FimPrompt], clients: int, max_tokens: int) -> None:
    """Untimed requests first: the first model calls, the tokenizer and the connections."""
    run = run_load(server, prompts, clients, max_tokens)
    bad = [r for r in run.replies if r.status != 200]
    if bad:
        raise RuntimeError(f"warm-up of {server.name} failed: {bad[0]}\n{server.output()[-3000:]}")


def batch_histogram(runs: list[LoadRun]) -> dict[str, int]:
    """Model calls per batch-size bucket over ``runs`` (from the cumulative Prometheus
    buckets ``le=1``, ``le=2``, ``le=4``, ``le=8``, ...): ``{"1": n, "2": n, "3-4": n, ...}``."""
    bounds: list[tuple[float, str]] = []
    for key in runs[0].metrics_after:
        if key.startswith("starcoder_ls_batch_size_bucket{"):
            le = key.split('le="', 1)[1].split('"', 1)[0]
            bounds.append((float("inf") if le == "+Inf" else float(le), key))
    bounds.sort()
    out: dict[str, int] = {}
    below, low = 0, 0
    for bound, key in bounds:
        total = round(sum(r.delta(key) for r in runs))
        if bound == float("inf"):
            label = f">{low}"
        else:
            label = str(int(bound)) if int(bound) == low + 1 else f"{low + 1}-{int(bound)}"
            low = int(bound)
        if total - below:
            out[label] = total - below
        below = total
    return out


# --------------------------------------------------------------------------- the sections


@dataclass
class Plan:
    quick: bool
    per_client: dict[int, int]
    """Requests per client at each load level."""
    queue_per_client: int
    speedup_per_client: int
    speedup_rounds: int
    memory_requests: int
    memory_checkpoints: int
    overhead_requests: int
    warm_up: int
    """Untimed requests per server before its first timed run."""
    max_tokens: int = 32
    memory_max_tokens: int = 8

    @classmethod
    def make(cls, quick: bool, memory_requests: int | None, rounds: int | None) -> Plan:
        if quick:
            return cls(
                True, {1: 4, 8: 2, 32: 1}, 1, 2, rounds or 1, memory_requests or 150, 2, 20, 8
            )
        return cls(
            False, {1: 30, 8: 20, 32: 8}, 3, 20, rounds or 2, memory_requests or 10_000, 10, 200, 32
        )


def section_load(
    batched: Server, small_queue: Server, plan: Plan, prompts: Iterator[FimPrompt]
) -> dict[str, Any]:
    levels = []
    for clients, per_client in plan.per_client.items():
        progress(f"load: {clients} client(s) x {per_client} ...")
        batch = [next(prompts) for _ in range(clients * per_client)]
        levels.append(summarize(run_load(batched, batch, clients, plan.max_tokens)))
    progress("load: 32 clients against the small queue ...")
    batch = [next(prompts) for _ in range(32 * plan.queue_per_client)]
    small = summarize(run_load(small_queue, batch, 32, plan.max_tokens))
    # What a request costs beyond the model: one line of prompt, one new token, one client.
    progress("load: per-request overhead ...")
    tiny = [FimPrompt(f"tiny:{i}", f"x{i} = ", "\n") for i in range(plan.overhead_requests)]
    overhead = summarize(run_load(batched, tiny, 1, 1))
    return {"levels": levels, "small_queue": small, "overhead": overhead}


def section_speedup(
    batched: Server, single: Server, plan: Plan, prompts: list[FimPrompt]
) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    runs: dict[str, list[LoadRun]] = {"batched": [], "single": []}
    for n in range(plan.speedup_rounds):
        for name, server in (("batched", batched), ("single", single)):
            progress(f"speedup: round {n + 1}, {name} ...")
            run = run_load(server, prompts, 8, plan.max_tokens)
            runs[name].append(run)
            rounds.append({"round": n + 1, "config": name, **summarize(run)})
    fast = [s["tokens_per_s"] for s in rounds if s["config"] == "batched"]
    slow = [s["tokens_per_s"] for s in rounds if s["config"] == "single"]
    ratios = [_ratio(a, b, digits=2) for a, b in zip(fast, slow, strict=True)]
    # The same prompts at temperature 0: batching should change how fast, never what.
    pairs = same = 0
    for f, s in zip(runs["batched"], runs["single"], strict=True):
        for a, b in zip(f.replies, s.replies, strict=True):
            if a.status == b.status == 200:
                pairs += 1
                same += a.text == b.text
    repeat_pairs = repeat_same = 0
    for first, later in ((runs[k][0], r) for k in runs for r in runs[k][1:]):
        for a, b in zip(first.replies, later.replies, strict=True):
            if a.status == b.status == 200:
                repeat_pairs += 1
                repeat_same += a.text == b.text
    return {
        "requests_per_round": len(prompts),
        "rounds": rounds,
        "ratios": ratios,
        "median_ratio": round(statistics.median(ratios), 2),
        "ratio_of_medians": _ratio(statistics.median(fast), statistics.median(slow), digits=2),
        "batch_histogram": batch_histogram(runs["batched"]),
        "identical_completions": [same, pairs],
        "identical_on_repeat": [repeat_same, repeat_pairs],
    }


def _slope_mib_per_1000(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of RSS (KiB) over requests, in MiB per 1,000 requests."""
    if len(points) < 2:
        return float("nan")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    if not den:
        return float("nan")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den
    return round(slope * 1000 / 1024, 2)


def section_memory(server: Server, plan: Plan, seed: int) -> dict[str, Any]:
    total = plan.memory_requests
    prompts = fim_prompts(total + plan.warm_up, seed, MIXED)
    warm_up(server, prompts[total:], 8, plan.memory_max_tokens)
    checkpoints: list[dict[str, Any]] = [{"requests": 0, **server.rss_kib()}]
    runs: list[LoadRun] = []
    first = min(100, total)
    rest, parts = total - first, plan.memory_checkpoints
    steps = [first] + [rest * (i + 1) // parts - rest * i // parts for i in range(parts)]
    done = 0
    for step in (s for s in steps if s):
        progress(f"memory: requests {done + 1}-{done + step} of {total} ...")
        runs.append(run_load(server, prompts[done : done + step], 8, plan.memory_max_tokens))
        done += step
        checkpoints.append({"requests": done, **server.rss_kib()})
    merged = LoadRun(
        8,
        [r for run in runs for r in run.replies],
        sum(r.wall_s for r in runs),
        sum(r.server_cpu_s for r in runs),
        sum(r.client_cpu_s for r in runs),
        sum(r.machine_cpu_s for r in runs),
        runs[0].metrics_before,
        runs[-1].metrics_after,
    )
    at_first = next(c for c in checkpoints if c["requests"] == first)["VmRSS"]
    later = [c for c in checkpoints if c["requests"] >= total // 2]
    return {
        "max_tokens": plan.memory_max_tokens,
        "prompts": MIXED.describe(),
        "checkpoints": checkpoints,
        "first": first,
        "rss_after_first_kib": at_first,
        "rss_after_all_kib": checkpoints[-1]["VmRSS"],
        "growth_kib": checkpoints[-1]["VmRSS"] - at_first,
        "second_half": {
            # From the run's middle on: the allocator's working set has settled (RSS climbs
            # over the first thousand or so requests, while every prompt width is new), so a
            # trend here is what a leak would look like, and the range is the noise.
            "from_requests": later[0]["requests"],
            "rss_range_kib": [min(c["VmRSS"] for c in later), max(c["VmRSS"] for c in later)],
            "slope_mib_per_1000_requests": _slope_mib_per_1000(
                [(c["requests"], c["VmRSS"]) for c in later]
            )
            if later[-1]["requests"] - later[0]["requests"] >= 1000
            else None,  # a few checkpoints close together: their noise is no trend
        },
        "peak_kib": checkpoints[-1]["VmHWM"],
        "throughput": summarize(merged),
    }


# --------------------------------------------------------------------------- the report


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def _errors(s: dict[str, Any]) -> str:
    if not s["errors"]:
        return "0"
    return ", ".join(f"{k}: {v}" for k, v in s["errors"].items())


def _load_row(s: dict[str, Any], first: str = "") -> str:
    cells = [
        *([first] if first else []),
        str(s["clients"]),
        str(s["requests"]),
        _errors(s),
        f"{s['requests_per_s']:.1f}",
        f"{s['tokens_per_s']:.0f}",
        f"{s['latency_p50_ms']:.0f}",
        f"{s['latency_p95_ms']:.0f}",
        f"{s['latency_max_ms']:.0f}",
        f"{s['server_latency_mean_ms']:.0f}",
        f"{s['queue_wait_mean_ms']:.0f}",
        f"{s['mean_batch_size']:.2f}",
        f"{s['prompt_tokens_mean']:.0f}",
        f"{s['completion_tokens_mean']:.1f}",
        f"{s['server_cpu_ms_per_request']:.1f}",
        f"{s['client_cpu_ms_per_request']:.1f}",
        f"{s['other_processes_cpu_share']:.2f}",
    ]
    return "| " + " | ".join(cells) + " |"


LOAD_COLUMNS = (
    "clients | requests | errors | req/s | tokens/s | p50 ms | p95 ms | max ms | server mean ms "
    "| queue wait mean ms | seqs per step | prompt tok | new tok | server CPU ms/req "
    "| client CPU ms/req | others' CPU |"
)
LOAD_HEADER = "| " + LOAD_COLUMNS
LOAD_RULE = "|" + "---:|" * 16
LOAD_LEGEND = (
    "Latencies are the client's (request sent to answer read); `server mean` is the server's "
    "own `starcoder_ls_request_seconds`, `queue wait` its `starcoder_ls_queue_seconds`; "
    "`seqs per step` the mean batch size of its decoding steps (`starcoder_ls_batch_size`); "
    "`prompt tok` / `new tok` the mean `usage` per request; CPU is the server process's (all "
    "threads) and this client process's; `others' CPU` is the CPU the rest of the machine used "
    "meanwhile, in cores (noise: other jobs on this machine)."
)


def _speedup_block(speed: dict[str, Any], title: str) -> list[str]:
    hist = speed["batch_histogram"]
    same, pairs = speed["identical_completions"]
    rsame, rpairs = speed["identical_on_repeat"]
    return [
        title,
        "",
        "| round | server | " + LOAD_COLUMNS,
        "|---:|---|" + "---:|" * 16,
        *(_load_row(s, f"{s['round']} | {s['config']}") for s in speed["rounds"]),
        "",
        f"{speed['requests_per_round']} requests per round. Tokens/s ratio batched / single per "
        f"round: {', '.join(f'{x:.2f}x' for x in speed['ratios'])}; **median "
        f"{speed['median_ratio']:.2f}x** (target >= 2.5x: "
        f"{'met' if speed['median_ratio'] >= 2.5 else 'NOT met'}); ratio of the median "
        f"tokens/s {speed['ratio_of_medians']:.2f}x. Identical completions batched vs single "
        f"(same prompt, same round): {same} of {pairs}; a configuration's later rounds vs its "
        f"first: {rsame} of {rpairs}.",
        "",
        "Batched rounds' decoding steps by batch size (`starcoder_ls_batch_size_bucket`, "
        "difference over those rounds; prefill calls are not counted there):",
        "",
        "| sequences per step | " + " | ".join(hist) + " |",
        "|---|" + "---:|" * len(hist),
        "| model calls | " + " | ".join(str(x) for x in hist.values()) + " |",
    ]


def render(r: dict[str, Any]) -> str:
    m, plan = r["machine"], r["plan"]
    v = m["versions"]
    load, mem = r["load"], r["memory"]
    half = mem["second_half"]
    lines = [
        "# starcoder-ls team server benchmark (`starcoder-ls serve`)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
        f"{m['ram_gib']} GiB RAM; load average at start "
        f"{' / '.join(str(x) for x in m['load_average_at_start'])}, at the end "
        f"{' / '.join(str(x) for x in r['load_average_at_end'])} (1/5/15 min).",
        "",
        "Versions: "
        + ", ".join(f"{k} {val}" for k, val in v.items())
        + ". Model: the bundled starcoder-ls-tiny (HF weights), transformers on the CPU.",
        "",
        f"Run: {'quick (smoke run)' if plan['quick'] else 'full'}, {r['elapsed_s']:.0f} s in all. "
        "Clients: asyncio tasks in the bench process, one httpx connection each, over loopback, "
        "each sending its requests one after the other; `POST /v1/completions` with `prompt` + "
        "`suffix` (the server builds the FIM prompt), temperature 0, max_tokens "
        f"{plan['max_tokens']} (memory run: {plan['memory_max_tokens']}); every prompt distinct, "
        "the cursor at a random non-blank line (fixed seed) of this repository's `starcoder_ls/` "
        "or the standard library's top-level modules. Editor prompts: "
        f"{r['shapes']['editor']}; short prompts: {r['shapes']['short']}.",
        "",
        "Servers (each `python -m starcoder_ls serve --port <free port>` with):",
        "",
        "| server | options |",
        "|---|---|",
        *(f"| {name} | `{' '.join(opts)}` |" for name, opts in r["servers"].items()),
        "",
        "## 1. Load (server `batched`, editor prompts)",
        "",
        LOAD_LEGEND,
        "",
        LOAD_HEADER,
        LOAD_RULE,
        *(_load_row(s) for s in load["levels"]),
        "",
    ]
    errors = sum(s["error_count"] + s["refused_429"] for s in load["levels"])
    lines.append(
        f"Errors with a queue that fits all clients: **{errors}** (target 0: "
        f"{'met' if errors == 0 else 'NOT met'})."
    )
    o = load["overhead"]
    lines += [
        "",
        f"Per-request overhead: {o['requests']} requests from 1 client with a one-line prompt "
        f"({o['prompt_tokens_mean']:.0f} tokens) and max_tokens 1: latency p50 "
        f"**{o['latency_p50_ms']:.1f} ms**, p95 {o['latency_p95_ms']:.1f} ms; server mean "
        f"{o['server_latency_mean_ms']:.1f} ms; server CPU {o['server_cpu_ms_per_request']:.1f} "
        f"ms per request, client CPU {o['client_cpu_ms_per_request']:.1f} ms; errors {_errors(o)}.",
    ]
    q = load["small_queue"]
    ra = q["retry_after_values"]
    lines += [
        "",
        "Small queue (server `small-queue`: `--max-batch 8 --max-queue 8`, 16 places for 32 "
        "clients; a refused client goes on with its next prompt at once, without waiting; "
        "refusals are expected here, not errors):",
        "",
        "| clients | requests | answered 200 | refused 429 | 429 with Retry-After | Retry-After "
        "values (s) | other errors | req/s (200) | tokens/s | p50 ms (200) | p95 ms (200) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {q['clients']} | {q['requests']} | {q['ok']} | {q['refused_429']} | "
        f"{q['refused_with_retry_after']} | {', '.join(ra) if ra else '-'} | {_errors(q)} | "
        f"{q['requests_per_s']:.1f} | {q['tokens_per_s']:.0f} | {q['latency_p50_ms']:.0f} | "
        f"{q['latency_p95_ms']:.0f} |",
        "",
        *_speedup_block(
            r["speedup"],
            "## 2. Batching speedup (8 clients, editor prompts; `batched` = `--max-batch 8`, "
            "`single` = `--max-batch 1`; same prompts in every round, configurations alternated)",
        ),
        "",
        *_speedup_block(
            r["speedup_short"],
            "### 2b. The same with short prompts (decoding dominates, prefill costs little)",
        ),
        "",
        *_speedup_block(
            r["speedup_typing"],
            "### 2c. The same with editor prompts as they are typed (each client types a line "
            "of its own file, a request per character: each prompt starts as its previous one "
            "did, so the batched engine starts it from that one's kept keys and values)",
        ),
        "",
        f"## 3. Memory (server `memory`, fresh; 8 clients, max_tokens {mem['max_tokens']}; "
        f"prompts: {mem['prompts']})",
        "",
        "| after requests | " + " | ".join(str(c["requests"]) for c in mem["checkpoints"]) + " |",
        "|---|" + "---:|" * len(mem["checkpoints"]),
        "| RSS MiB | " + " | ".join(_mib(c["VmRSS"]) for c in mem["checkpoints"]) + " |",
        "",
        f"RSS after {mem['first']} requests **{_mib(mem['rss_after_first_kib'])} MiB**, after "
        f"{mem['checkpoints'][-1]['requests']} **{_mib(mem['rss_after_all_kib'])} MiB**: growth "
        f"**{mem['growth_kib'] / 1024:+.1f} MiB** (target: no growth beyond a few MB of noise); "
        f"from {half['from_requests']} requests on: range {_mib(half['rss_range_kib'][0])} to "
        f"{_mib(half['rss_range_kib'][1])} MiB, trend "
        + (
            f"**{slope:+.2f} MiB per 1,000 requests** (least squares; "
            if (slope := half["slope_mib_per_1000_requests"]) is not None
            else "n/a (too few requests for a trend; "
        )
        + "a leak shows as a steady trend, allocator noise as the range); peak "
        f"RSS {_mib(mem['peak_kib'])} MiB. Checkpoint 0 is after "
        f"{plan['warm_up']} warm-up requests.",
        "",
        "Throughput over the whole memory run:",
        "",
        LOAD_HEADER,
        LOAD_RULE,
        _load_row(mem["throughput"]),
        "",
        "Servers stopped with SIGTERM: "
        + ", ".join(
            f"{name} {'clean' if ok else 'NOT clean'}" for name, ok in r["clean_stops"].items()
        )
        + " (drained, lifespan shut down; uvicorn then exits by the signal it handled).",
    ]
    notes = sorted({n for ns in r["server_log_notes"].values() for n in ns})
    lines += [
        "",
        "Warnings and errors in the servers' logs (digits as N):" + (" none." if not notes else ""),
    ]
    lines += [f"- `{n}`" for n in notes]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", type=Path, help="also write the raw numbers here")
    ap.add_argument("--quick", action="store_true", help="small counts (a smoke run, < 1 minute)")
    ap.add_argument(
        "--requests-memory",
        type=int,
        default=None,
        help="requests in the memory run (default: 10000; 150 with --quick)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="rounds of each configuration (default: 2; 1 with --quick)",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the prompt cuts")
    args = ap.parse_args()
    plan = Plan.make(args.quick, args.requests_memory, args.rounds)
    if plan.memory_requests < 100 or plan.speedup_rounds < 1:
        ap.error("--requests-memory must be at least 100 and --rounds at least 1")

    started = time.monotonic()
    atexit.register(_stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started ignoring it
    report: dict[str, Any] = {"machine": machine(), "plan": plan.__dict__}
    report["shapes"] = {"editor": EDITOR.describe(), "short": SHORT.describe()}
    load_count = sum(c * n for c, n in plan.per_client.items()) + 32 * plan.queue_per_client
    w = plan.warm_up
    editor = fim_prompts(2 * w + load_count + 8 * plan.speedup_per_client, args.seed)
    warm, load_prompts, speed_prompts = (
        editor[: 2 * w],
        iter(editor[2 * w : 2 * w + load_count]),
        editor[2 * w + load_count :],
    )
    short = fim_prompts(8 * plan.speedup_per_client, args.seed + 2, SHORT)
    typing = typing_prompts(8, plan.speedup_per_client, args.seed + 3)
    limit = ("--max-tokens", "64")
    configs = {
        "batched": ["--max-batch", "8", "--max-queue", "64", *limit],
        "single": ["--max-batch", "1", "--max-queue", "64", *limit],
        "small-queue": ["--max-batch", "8", "--max-queue", "8", *limit],
        "memory": ["--max-batch", "8", "--max-queue", "64", *limit],
    }
    report["servers"] = {name: [*BASE_OPTIONS, *opts] for name, opts in configs.items()}
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        servers = {name: Server(name, opts, Path(tmp)) for name, opts in configs.items()}
        try:
            progress("starting the servers ...")
            for server in servers.values():  # idle servers cost nothing: load the models at once
                server.launch()
            for server in servers.values():
                server.wait_ready()
            batched, single = servers["batched"], servers["single"]
            small, memory = servers["small-queue"], servers["memory"]
            progress("warming up ...")
            warm_up(batched, warm[:w], 8, plan.max_tokens)
            warm_up(single, warm[w:], 8, plan.max_tokens)
            warm_up(small, warm[:8], 8, plan.max_tokens)
            report["load"] = section_load(batched, small, plan, load_prompts)
            small.stop()
            report["speedup"] = section_speedup(batched, single, plan, speed_prompts)
            report["speedup_short"] = section_speedup(batched, single, plan, short)
            report["speedup_typing"] = section_speedup(batched, single, plan, typing)
            batched.stop()
            single.stop()
            report["memory"] = section_memory(memory, plan, args.seed + 1)
        finally:
            for server in servers.values():
                server.stop()
        report["clean_stops"] = {name: s.stopped_cleanly for name, s in servers.items()}
        report["server_log_notes"] = {name: s.log_notes() for name, s in servers.items()}
        for name, server in servers.items():
            if not server.stopped_cleanly:
                print(f"serve {name} exited with {server.exit_code}:", file=sys.stderr)
                print(server.output()[-3000:], file=sys.stderr)
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    progress("done")
    print(render(report), end="")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        progress("interrupted; every server it started is stopped")
        raise SystemExit(130) from None
