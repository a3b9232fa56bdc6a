#!/usr/bin/env python
"""``starcoder-ls serve`` beside llama.cpp's own ``llama-server``: the same GGUF, the same
``/infill`` requests, the same threads, one request at a time, alternating between the two.

The requests are shaped like an editor's while someone types (llama.vim's): at positions drawn
with a fixed seed in real Python source (this repository), the next characters of the line are
typed one at a time, and each keystroke sends ``input_prefix`` (the lines before the cursor and
the current line up to it), ``input_suffix`` (the rest of the line and the lines after),
``input_extra`` (two chunks of other files, as llama.vim's ring buffer sends them), ``n_predict``
24, temperature 0, ``cache_prompt``. Both servers keep their cache from keystroke to keystroke,
as they would for one user. Sizes are kept under llama-server's own limits (``-b 256``: the
prefix to 192 tokens, the suffix to 62, other files to 258 of the 512-token context), so that
both get the same prompt; the two prompts still differ by the names llama-server makes up for
the repository and the current file (7 tokens with the bundled model).

The client is this process (httpx, one kept-alive connection per server); the time is the
client's, from sending the request to having the whole answer. The order alternates per
keystroke (A B, then B A) since the machine is noisy. Reported: p50, p95 and mean per server,
the ratio of p50s, the prompt tokens each evaluated (after its cache) and generated, and the
fields of a whole answer from each.

With ``--load``, concurrent clients instead: 8 clients (``--clients``) each send requests one
after another, on two shapes (prompt-heavy: ~400-token prompts from real files, 24 new tokens;
decode-heavy: ~60-token prompts, 128 new tokens), to serve and to llama-server with 8 slots
(``-np 8``, 512 tokens each), in pairs of rounds A B, B A, ... (``--pairs``, 4); each pair
sends requests of its own, so neither server is ever asked the same prompt twice (which would
measure a prompt cache rather than evaluation). Reported: requests/s and generated tokens/s
of each, their ratio, and the ratio within each pair (its two rounds ran back to back, so it
is the comparison least moved by the machine's drift) with the median of those. ``--model`` loads another GGUF in both (the default model, say); one
without FIM tokens is asked for left-to-right completions of the same prefixes at
``/v1/completions``.

Usage: ``python bench/llamacpp_interop_bench.py [--json OUT] [--sessions N] [--keys K]
[--load [--clients N] [--requests R] [--pairs P] [--model GGUF]]``; needs ``scripts/build_llama_server.py`` to have built
llama-server. Prints a Markdown report.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from serve_bench import free_port, machine, progress

ROOT = Path(__file__).resolve().parents[1]
GGUF = ROOT / "models" / "starcoder-ls-tiny" / "starcoder-ls-tiny-Q8_0.gguf"
THREADS = 2
N_PREDICT = 24
LIMITS = {"prefix": 180, "suffix": 55, "extra": 200}
"""Token caps per part, under llama-server's (-b 256: 192, 62 and 258)."""


class Proc:
    """A server process on a free loopback port, in its own session, stopped on exit."""

    def __init__(self, name: str, command: list[str], port: int, log: Path) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_both(
    work: Path, binary: Path, serve_flags: list[str], llama_flags: list[str], gguf: Path = GGUF
) -> tuple[Proc, Proc]:
    """``starcoder-ls serve`` and ``llama-server`` on the same GGUF and threads."""
    port = free_port()
    ours = Proc(
        "starcoder-ls serve",
        [sys.executable, "-m", "starcoder_ls", "serve", "--backend", "llamacpp", "--model",
         str(gguf), "--threads", str(THREADS), "--port", str(port), "--no-access-log",
         *serve_flags],
        port, work / "serve.log",
    )  # fmt: skip
    port = free_port()
    theirs = Proc(
        "llama-server",
        [str(binary), "-m", str(gguf), "-t", str(THREADS), "-tb", str(THREADS), "--host",
         "127.0.0.1", "--port", str(port), "--no-webui", *llama_flags],
        port, work / "llama-server.log",
    )  # fmt: skip
    return ours, theirs


def llama_server_binary() -> Path:
    sys.path.insert(0, str(ROOT / "scripts"))
    import build_llama_server

    if reason := build_llama_server.unavailable_reason():
        raise SystemExit(reason)
    return build_llama_server.launch_dir() / "llama-server"


# ------------------------------------------------------------------------------ the requests


@functools.cache
def _client(url: str) -> httpx.Client:
    """One kept-alive connection per server for the many small /tokenize calls."""
    return httpx.Client(base_url=url, timeout=30, trust_env=False)


def tokens(url: str, text: str) -> int:
    answer = _client(url).post("/tokenize", json={"content": text})
    return len(answer.json()["tokens"])


def cap_lines(url: str, lines: list[str], limit: int, keep_end: bool) -> list[str]:
    """As many whole lines as fit ``limit`` tokens, from the end (prefix) or the start."""
    kept: list[str] = []
    for line in reversed(lines) if keep_end else lines:
        trial = [line, *kept] if keep_end else [*kept, line]
        if tokens(url, "".join(trial)) > limit:
            break
        kept = trial
    return kept


def sessions(url: str, count: int, keys: int, seed: int) -> list[list[dict[str, Any]]]:
    """``count`` typing sessions of ``keys`` keystrokes each, as /infill bodies."""
    rng = random.Random(seed)
    files = sorted(p for p in (ROOT / "starcoder_ls").rglob("*.py") if p.stat().st_size > 4000)
    out = []
    while len(out) < count:
        path, other_a, other_b = rng.sample(files, 3)
        lines = path.read_text().splitlines(keepends=True)
        row = rng.randrange(30, len(lines) - 15)
        line = lines[row]
        body = line.lstrip()
        if len(body.rstrip()) < keys + 4:
            continue
        start = len(line) - len(body)
        before = cap_lines(url, lines[max(0, row - 60) : row], LIMITS["prefix"] - 20, True)
        after = cap_lines(url, lines[row + 1 : row + 20], LIMITS["suffix"] - 15, False)
        extra = []
        for other in (other_a, other_b):
            chunk_lines = other.read_text().splitlines(keepends=True)
            at = rng.randrange(0, max(1, len(chunk_lines) - 12))
            chunk = cap_lines(url, chunk_lines[at : at + 12], LIMITS["extra"] // 2 - 10, False)
            extra.append({"filename": str(other.relative_to(ROOT)), "text": "".join(chunk)})
        requests = []
        for typed in range(keys):
            cut = start + typed
            requests.append(
                {
                    "input_prefix": "".join(before) + line[:cut],
                    "input_suffix": line[cut:] + "".join(after),
                    "input_extra": extra,
                    "n_predict": N_PREDICT,
                    "temperature": 0,
                    "cache_prompt": True,
                    "source": f"{path.relative_to(ROOT)}:{row + 1}",
                }
            )
        out.append(requests)
    return out


# ------------------------------------------------------------------------------------ report


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="llamacpp-interop-"))
    binary = llama_server_binary()
    ours, theirs = start_both(work, binary, [], ["-np", "1", "-c", "512", "-b", "256"])
    servers = [ours, theirs]
    try:
        for server in servers:
            server.wait_ready()
        progress("both servers are up; building the requests")
        plan = sessions(theirs.url, args.sessions, args.keys, args.seed)
        results: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
        clients = {
            s.name: httpx.Client(base_url=s.url, timeout=120, trust_env=False) for s in servers
        }
        # One untimed request each: the first answer pays for loading pages of the model.
        for server in servers:
            clients[server.name].post("/infill", json={"input_prefix": "x", "n_predict": 1})
        fields: dict[str, list[str]] = {}
        i = 0
        for number, session in enumerate(plan, 1):
            progress(f"session {number}/{len(plan)}: {session[0]['source']}")
            for body in session:
                order = servers if i % 2 == 0 else servers[::-1]
                i += 1
                for server in order:
                    request = {k: v for k, v in body.items() if k != "source"}
                    start = time.perf_counter()
                    answer = clients[server.name].post("/infill", json=request)
                    ms = (time.perf_counter() - start) * 1000
                    data = answer.json()
                    if answer.status_code != 200:
                        raise RuntimeError(f"{server.name}: HTTP {answer.status_code}: {data}")
                    fields.setdefault(server.name, sorted(data))
                    t = data["timings"]
                    results[server.name].append(
                        {
                            "ms": ms,
                            "tokens_evaluated": data["tokens_evaluated"],
                            "prompt_n": t["prompt_n"],
                            "cache_n": t.get("cache_n", 0),
                            "predicted_n": t["predicted_n"],
                            "prompt_ms": t["prompt_ms"],
                            "predicted_ms": t["predicted_ms"],
                            "truncated": data["truncated"],
                        }
                    )
        for client in clients.values():
            client.close()
    finally:
        for server in servers:
            server.stop()
    summary: dict[str, Any] = {}
    for name, rows in results.items():
        ms = [r["ms"] for r in rows]
        summary[name] = {
            "requests": len(rows),
            "p50_ms": round(statistics.median(ms), 2),
            "p95_ms": round(pct(ms, 0.95), 2),
            "mean_ms": round(statistics.fmean(ms), 2),
            "mean_tokens_evaluated": round(
                statistics.fmean(r["tokens_evaluated"] for r in rows), 1
            ),
            "mean_prompt_n": round(statistics.fmean(r["prompt_n"] for r in rows), 1),
            "mean_predicted_n": round(statistics.fmean(r["predicted_n"] for r in rows), 1),
            "median_prompt_ms": round(statistics.median(r["prompt_ms"] for r in rows), 2),
            "median_predicted_ms": round(statistics.median(r["predicted_ms"] for r in rows), 2),
            "truncated": sum(r["truncated"] for r in rows),
            "fields": fields.get(name, []),
        }
    return {
        "machine": machine(),
        "model": GGUF.name,
        "threads": THREADS,
        "n_predict": N_PREDICT,
        "sessions": args.sessions,
        "keystrokes_per_session": args.keys,
        "seed": args.seed,
        "llama_server": {"binary": str(binary), "flags": "-np 1 -c 512 -b 256"},
        "results": summary,
        "ratio_p50": round(summary[ours.name]["p50_ms"] / summary[theirs.name]["p50_ms"], 3),
        "ratio_p95": round(summary[ours.name]["p95_ms"] / summary[theirs.name]["p95_ms"], 3),
    }


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    names = list(report["results"])
    rows = [
        ("requests", "requests"),
        ("latency p50 (ms)", "p50_ms"),
        ("latency p95 (ms)", "p95_ms"),
        ("latency mean (ms)", "mean_ms"),
        ("prompt tokens (mean)", "mean_tokens_evaluated"),
        ("of them evaluated, after the cache (mean)", "mean_prompt_n"),
        ("generated tokens (mean)", "mean_predicted_n"),
        ("server's prompt time, median (ms)", "median_prompt_ms"),
        ("server's generation time, median (ms)", "median_predicted_ms"),
        ("answers with truncated true", "truncated"),
    ]
    out = [
        "# starcoder-ls serve beside llama-server (/infill, typing)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB; load at start "
        f"{m['load_average_at_start']}. Model: {report['model']}, {report['threads']} threads "
        f"each, one request at a time, alternating. llama-server flags: "
        f"`{report['llama_server']['flags']}`. {report['sessions']} typing sessions of "
        f"{report['keystrokes_per_session']} keystrokes (seed {report['seed']}), "
        f"`n_predict` {report['n_predict']}, temperature 0.",
        "",
        f"| | {' | '.join(names)} |",
        "|---|" + "---|" * len(names),
    ]
    for label, key in rows:
        out.append(f"| {label} | {' | '.join(str(report['results'][n][key]) for n in names)} |")
    out += [
        "",
        f"serve / llama-server: p50 x{report['ratio_p50']}, p95 x{report['ratio_p95']}.",
        "",
        "Fields of a whole answer:",
        "",
    ]
    for name in names:
        out.append(f"- {name}: {', '.join(report['results'][name]['fields'])}")
    same = len({tuple(report["results"][n]["fields"]) for n in names}) == 1
    out.append(f"- the same set: {'yes' if same else 'no'}")
    return "\n".join(out) + "\n"


def shapes(url: str, count: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """``count`` distinct /infill bodies per load shape."""
    rng = random.Random(seed)
    files = sorted(p for p in (ROOT / "starcoder_ls").rglob("*.py") if p.stat().st_size > 4000)
    heavy, light = [], []
    while len(heavy) < count:
        lines = rng.choice(files).read_text().splitlines(keepends=True)
        row = rng.randrange(40, len(lines) - 20)
        before = cap_lines(url, lines[row - 40 : row], 300, True)
        after = cap_lines(url, lines[row : row + 20], 80, False)
        short = cap_lines(url, lines[row - 8 : row], 55, True)
        if not before or not short or not "".join(short).strip():
            continue
        common = {"temperature": 0, "cache_prompt": True}
        heavy.append({"input_prefix": "".join(before), "input_suffix": "".join(after),
                      "n_predict": 24, **common})  # fmt: skip
        light.append({"input_prefix": "".join(short), "input_suffix": "", "n_predict": 128,
                      **common})  # fmt: skip
    return {"prompt-heavy": heavy, "decode-heavy": light}


def left_to_right(body: dict[str, Any]) -> dict[str, Any]:
    """An /infill body as an OpenAI completion of its prefix, for a model without FIM tokens
    (llama-server answers /infill with 501 for such a model)."""
    return {"prompt": body["input_prefix"], "max_tokens": body["n_predict"], "temperature": 0}


def load_round(
    url: str, bodies: list[dict[str, Any]], clients: int, route: str = "/infill"
) -> dict[str, float]:
    """``clients`` threads, each posting its share of ``bodies`` one after another."""
    shares = [bodies[i::clients] for i in range(clients)]

    def client(share: list[dict[str, Any]]) -> tuple[int, int]:
        done = generated = 0
        with httpx.Client(base_url=url, timeout=300, trust_env=False) as http:
            for body in share:
                if route != "/infill":
                    body = left_to_right(body)
                answer = http.post(route, json=body)
                if answer.status_code != 200:
                    raise RuntimeError(f"{url}: HTTP {answer.status_code}: {answer.text[:300]}")
                done += 1
                reply = answer.json()
                generated += (
                    reply["tokens_predicted"]
                    if route == "/infill"
                    else reply["usage"]["completion_tokens"]
                )
        return done, generated

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(client, shares))
    wall = time.perf_counter() - start
    done = sum(r[0] for r in results)
    generated = sum(r[1] for r in results)
    return {"requests": done, "seconds": round(wall, 2), "requests_per_s": round(done / wall, 2),
            "tokens_per_s": round(generated / wall, 1), "generated": generated}  # fmt: skip


def run_load(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="llamacpp-load-"))
    binary = llama_server_binary()
    ours, theirs = start_both(
        work,
        binary,
        ["--max-batch", str(args.clients), "--max-queue", "64"],
        ["-np", str(args.clients), "-c", str(512 * args.clients), "-b", "512"],
        args.model,
    )
    servers = [ours, theirs]
    out: dict[str, Any] = {}
    try:
        for server in servers:
            server.wait_ready()
        probe = httpx.post(f"{theirs.url}/infill", json={"input_prefix": "x", "n_predict": 1})
        route = "/v1/completions" if probe.status_code == 501 else "/infill"
        # Each pair of rounds gets requests of its own: a server never sees a prompt twice,
        # so what is measured is evaluation, not a prompt cache (llama-server's --cache-ram
        # would answer a repeated round from host memory).
        plan = shapes(theirs.url, args.pairs * args.requests, args.seed)
        for shape, bodies in plan.items():
            rounds: dict[str, list[dict[str, float]]] = {s.name: [] for s in servers}
            for pair in range(args.pairs):
                order = servers if pair % 2 == 0 else servers[::-1]
                share = bodies[pair * args.requests : (pair + 1) * args.requests]
                for server in order:
                    progress(f"{shape}: {server.name}")
                    rounds[server.name].append(load_round(server.url, share, args.clients, route))
            out[shape] = rounds
    finally:
        for server in servers:
            server.stop()
    summary: dict[str, Any] = {}
    for shape, rounds in out.items():
        best = {name: max(r, key=lambda x: x["requests_per_s"]) for name, r in rounds.items()}
        mean = {
            name: {
                k: round(statistics.fmean(x[k] for x in r), 2)
                for k in ("requests_per_s", "tokens_per_s")
            }
            for name, r in rounds.items()
        }
        # A pair's two rounds ran one after the other on the same requests: their ratio is
        # the comparison least touched by the machine's drift from minute to minute.
        pairs = [
            round(a["tokens_per_s"] / b["tokens_per_s"], 3)
            for a, b in zip(rounds[ours.name], rounds[theirs.name], strict=True)
        ]
        summary[shape] = {
            "rounds": rounds,
            "mean": mean,
            "pair_ratios_tokens": pairs,
            "median_pair_ratio_tokens": round(statistics.median(pairs), 3),
            "ratio_requests": round(
                mean[ours.name]["requests_per_s"] / mean[theirs.name]["requests_per_s"], 3
            ),
            "ratio_tokens": round(
                mean[ours.name]["tokens_per_s"] / mean[theirs.name]["tokens_per_s"], 3
            ),
            "best": best,
        }
    return {
        "machine": machine(),
        "model": args.model.name,
        "route": route,
        "threads": THREADS,
        "clients": args.clients,
        "requests_per_round": args.requests,
        "pairs": args.pairs,
        "llama_server_flags": f"-np {args.clients} -c {512 * args.clients} -b 512",
        "shapes": summary,
    }


def load_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    out = [
        f"# starcoder-ls serve beside llama-server ({report['route']}, concurrent clients)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB. Model: {report['model']}, "
        f"{report['threads']} threads each. {report['clients']} clients, "
        f"{report['requests_per_round']} requests per round, {report['pairs']} pairs of rounds "
        f"(A B, B A, ...; each pair on requests of its own). llama-server flags: "
        f"`{report['llama_server_flags']}`.",
        "",
        "| shape | server | requests/s (mean) | tokens/s (mean) | tokens/s per round |",
        "|---|---|---|---|---|",
    ]
    for shape, res in report["shapes"].items():
        for name, mean in res["mean"].items():
            each = ", ".join(str(r["tokens_per_s"]) for r in res["rounds"][name])
            out.append(
                f"| {shape} | {name} | {mean['requests_per_s']} | {mean['tokens_per_s']} | {each} |"
            )
        pairs = ", ".join(f"x{r}" for r in res["pair_ratios_tokens"])
        out.append(
            f"| {shape} | **serve / llama-server** | x{res['ratio_requests']} | "
            f"x{res['ratio_tokens']} | pairs {pairs}; **median x"
            f"{res['median_pair_ratio_tokens']}** |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--json", type=Path, help="also write the report as JSON here")
    ap.add_argument("--sessions", type=int, default=12)
    ap.add_argument("--keys", type=int, default=10, help="keystrokes per session")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--load", action="store_true", help="concurrent clients instead of typing")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument(
        "--requests",
        type=int,
        help="requests per round (--load; default 480 for the bundled model, 32 for another: "
        "rounds of several seconds, long enough to stand above the machine's noise)",
    )
    ap.add_argument(
        "--pairs",
        type=int,
        default=4,
        help="pairs of rounds per shape (--load): A B, then B A, ..., each on requests of its own",
    )
    ap.add_argument(
        "--model",
        type=Path,
        default=GGUF,
        help="GGUF both servers load (--load; default: the bundled model). A model without "
        "FIM tokens is asked for left-to-right completions at /v1/completions",
    )
    args = ap.parse_args()
    if args.requests is None:
        args.requests = 480 if args.model == GGUF else 32
    if args.load:
        report = run_load(args)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(load_markdown(report))
        return
    os.environ.setdefault("STARCODER_LS_LOG_LEVEL", "WARNING")
    report = run(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
