#!/usr/bin/env python
"""How the language server's stdin reader handles damaged LSP frames: a table of cases and
outcomes.

For each case (the ones ``tests/lsp/test_framing.py`` asserts), a fresh ``python -m
starcoder_ls`` process is initialized, the damaged bytes are written to its stdin, then five
ordinary requests. Reported: whether the damaged message itself was answered (it is, where the
reader can trust it: lower-case header names, LF-only line ends, junk before a header), how
many of the five later requests were answered, how long the first of them took, whether the
process is still running, and the line the log has about it.

Usage: ``python bench/framing_bench.py [--json OUT]``. Prints a Markdown report.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "lsp"))

from test_framing import BODY, DAMAGED, Server, frame  # noqa: E402

from starcoder_ls.machine import machine_info  # noqa: E402

EXTRA = [
    (
        "overstated by 40 bytes, then the client waits",
        frame(BODY, b"Content-Length: %d\r\n\r\n" % (len(BODY) + 40)),
    ),
]


def run_case(name: str, data: bytes, tmp: Path) -> dict[str, Any]:
    log = tmp / f"{abs(hash(name))}.log"
    server = Server(log)
    try:
        server.write(data)
        itself = server.wait_for(100, 3.0) is not None
        started = time.perf_counter()
        later = server.answered(range(1, 6))
        first_ms = (time.perf_counter() - started) * 1000
        alive = server.proc.poll() is None
        lines = [
            line.split(": ", 1)[-1]
            for line in log.read_text().splitlines()
            if "stdin" in line and ("WARNING" in line or "INFO" in line)
        ]
    finally:
        server.stop()
    return {
        "case": name,
        "bytes": len(data),
        "damaged_message_answered": itself,
        "later_answered": later,
        "five_requests_ms": round(first_ms, 1),
        "alive": alive,
        "log": lines[0] if lines else "",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="framing-bench-") as tmp:
        for name, data, *_ in DAMAGED:
            print(name, "...", file=sys.stderr)
            rows.append(run_case(name, data, Path(tmp)))
        for name, data in EXTRA:
            rows.append(run_case(name, data, Path(tmp)))
    m = machine_info()
    out = [
        "# Damaged LSP frames on stdin",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores. Each case: a fresh server, the damaged bytes,"
        " then five ordinary requests.",
        "",
        "| case | bytes | the damaged message | next 5 requests | their time | alive | log |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['case']} | {r['bytes']:,} | "
            f"{'answered' if r['damaged_message_answered'] else 'skipped'} | "
            f"{r['later_answered']}/5 | {r['five_requests_ms']} ms | "
            f"{'yes' if r['alive'] else 'NO'} | {r['log'][:110]} |"
        )
    print("\n".join(out))
    if args.json:
        args.json.write_text(json.dumps({"machine": m, "cases": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
