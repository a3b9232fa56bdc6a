#!/usr/bin/env python
"""Secrets in prompts: what reaches a remote backend, what ordinary code loses, what it costs.

1. **Leaks**: the language server (``python -m starcoder_ls`` over stdio) with a remote TGI
   backend (a loopback server that records every request), a workspace with 25 kinds of
   planted credentials (``tests/secret_corpus.py``, seeded) along every road into a prompt:
   every kind just above the cursor, a quarter of them 1,200 lines up, a quarter in an imported
   module (outlines), in code like the cursor's (similar windows) and in a document edited
   meanwhile (the recent-edits ring). Completions are asked until the prompt carries all
   three cross-file roads; every request body is searched for each secret and 12-character
   pieces of it. Reported per kind: whether its line reached the backend, and whether any of
   the secret did (target: 0 leaks).
2. **False positives**: the redactor over ordinary code (the Python standard library without
   its tests, and this environment's site-packages of a few well-known projects, and
   JavaScript under ``editors/vscode/node_modules`` when installed): the share of lines it
   changes, and examples of what it masked.
3. **Cost per keystroke**: typing a real method into a 5,000-line file, the prompt built with
   and without redaction (two engines fed the same edits, interleaved), p50/p95 of each and of
   the difference; and the first prompt of a file nobody has seen (every line scanned).

Usage: ``python bench/secrets_bench.py [--json OUT] [--quick]``. Prints a Markdown report.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT / "tests", ROOT / "tests" / "serve", ROOT / "bench"):
    sys.path.insert(0, str(extra))

from remote_fixtures import FakeRemote  # noqa: E402
from secret_corpus import carried, exposed, leaks, located, plant  # noqa: E402
from server_bench import RawClient, _typing_script, real_source  # noqa: E402

from starcoder_ls.machine import machine_info  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# ------------------------------------------------------------------------------------ leaks


def leak_run(state: Path) -> dict[str, Any]:
    scenario = plant(state / "ws")
    remote = FakeRemote()
    client = RawClient(state)
    try:
        options = {
            "backend": "tgi",
            "url": remote.url,
            "debounceMs": 0,
            "cache": {"enabled": False},
            "contextTokens": 4096,
            "crossFileTokens": 2048,
        }
        root = scenario.root
        client.request(
            "initialize",
            {
                "processId": None,
                "capabilities": {"textDocument": {"inlineCompletion": {}}},
                "initializationOptions": options,
                "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}],
            },
        )
        client.send("initialized", {}, request=False)

        def did_open(path: Path, text: str) -> str:
            doc = {"uri": path.as_uri(), "languageId": "python", "version": 1, "text": text}
            client.send("textDocument/didOpen", {"textDocument": doc}, request=False)
            return path.as_uri()

        edited = did_open(scenario.edited_file, scenario.edited_text)
        at = {"line": scenario.edit_line, "character": 0}
        client.send(
            "textDocument/didChange",
            {
                "textDocument": {"uri": edited, "version": 2},
                "contentChanges": [{"range": {"start": at, "end": at}, "text": "# rotate\n"}],
            },
            request=False,
        )
        uri = did_open(scenario.cursor_file, scenario.cursor_text)
        line, col = scenario.cursors[0]
        shown: dict[str, Any] = {}
        for _ in range(100):
            client.request(
                "textDocument/inlineCompletion",
                {
                    "textDocument": {"uri": uri},
                    "position": {"line": line, "character": col},
                    "context": {"triggerKind": 1},
                },
            )
            shown = client.request(
                "workspace/executeCommand",
                {"command": "starcoder.lastPrompt", "arguments": [uri]},
            )
            if {"import", "similar", "recent"} <= {s["kind"] for s in shown["segments"]}:
                break
            time.sleep(0.1)
    finally:
        client.close()
        remote.close()
    bodies = [
        json.dumps(s.body, ensure_ascii=False) + "\n" + str(s.body.get("inputs", ""))
        for s in remote.seen
        if s.path == "/generate"
    ]
    text = "\n".join(bodies)
    roads = carried(shown["segments"], located(scenario.root, scenario.planted))
    return {
        "requests": len(bodies),
        "kinds": [p.kind for p in scenario.planted],
        "exposed": exposed(text, scenario.planted),
        "leaked": leaks(text, scenario.planted),
        "roads": {k: sorted(v) for k, v in roads.items() if v},
        "placeholders": text.count("<REDACTED>"),
    }


# ------------------------------------------------------------------------- false positives


def ordinary_files(quick: bool) -> dict[str, list[Path]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    python = [
        p
        for p in sorted(stdlib.rglob("*.py"))
        if not {"test", "tests", "idle_test", "site-packages"} & set(p.relative_to(stdlib).parts)
    ]
    site = Path(sysconfig.get_paths()["purelib"])
    for name in ("httpx", "rich", "starlette", "pygls", "requests", "huggingface_hub"):
        python += sorted((site / name).rglob("*.py"))
    js_root = ROOT / "editors" / "vscode" / "node_modules"
    js = sorted(js_root.rglob("*.js"))[:3000] if js_root.is_dir() else []
    js = [p for p in js if ".min." not in p.name]
    if quick:
        python, js = python[:200], js[:100]
    return {"python": python, "javascript": js}


def false_positives(quick: bool) -> dict[str, Any]:
    from starcoder_ls.prompt.redact import PLACEHOLDER, Redactor

    redactor = Redactor()
    out: dict[str, Any] = {}
    for language, files in ordinary_files(quick).items():
        lines = changed = spans = 0
        examples: list[str] = []
        started = time.perf_counter()
        for path in files:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if len(text) > 512 * 1024:
                continue
            masked = redactor.redact(text, path.name)
            before, after = text.split("\n"), masked.split("\n")
            lines += sum(1 for x in before if x.strip())
            for a, b in zip(before, after, strict=True):
                if a != b:
                    changed += 1
                    spans += b.count(PLACEHOLDER)
                    if len(examples) < 12:
                        examples.append(f"{path.name}: {b.strip()[:110]}")
        out[language] = {
            "files": len(files),
            "lines": lines,
            "lines_changed": changed,
            "rate": changed / max(1, lines),
            "masked": spans,
            "us_per_line": (time.perf_counter() - started) / max(1, lines) * 1e6,
            "examples": examples,
        }
    return out


# ------------------------------------------------------------------------------------ cost


def keystroke_cost(keystrokes: int) -> dict[str, Any]:
    from starcoder_ls.documents import Document
    from starcoder_ls.engine import CompletionEngine
    from starcoder_ls.settings import Settings

    _, source = real_source()
    base, start, typed = _typing_script(source, keystrokes)
    filler = base.split("\n")
    while len(filler) < 5000:
        filler += base.split("\n")
    text = "\n".join(filler[:5000])
    engines = {
        "plain": CompletionEngine(Settings(backend="test")),
        "redacted": CompletionEngine(Settings(backend="test", redact_secrets="always")),
    }
    docs = {k: Document("file:///bench/big.py", "python", 1, text) for k in engines}
    for doc in docs.values():
        doc.snapshot()
    # The first prompt in a file nobody has seen: every line of the window is scanned.
    first = {}
    for name, engine in engines.items():
        t = time.perf_counter()
        engine.build_prompt(docs[name].snapshot(), 2500, 0, exact=False)
        first[name] = (time.perf_counter() - t) * 1000
    redactor = engines["redacted"].redactor()
    assert redactor is not None
    scanned_first = redactor.scanned
    line, col = base[:start].count("\n"), 0
    times: dict[str, list[float]] = {k: [] for k in engines}
    for ch in typed:
        for name, engine in engines.items():  # interleaved: the same edit, each engine
            doc = docs[name]
            t = time.perf_counter()
            doc.apply_change(ch, ((line, col), (line, col)))
            doc.version += 1
            engine.build_prompt(doc.snapshot(), *_after(line, col, ch), exact=False)
            times[name].append((time.perf_counter() - t) * 1000)
        line, col = _after(line, col, ch)
    diff = [r - p for r, p in zip(times["redacted"], times["plain"], strict=True)]
    for engine in engines.values():
        engine.close()
    return {
        "keystrokes": len(typed),
        "plain_p50_ms": pct(times["plain"], 50),
        "plain_p95_ms": pct(times["plain"], 95),
        "redacted_p50_ms": pct(times["redacted"], 50),
        "redacted_p95_ms": pct(times["redacted"], 95),
        "extra_p50_ms": statistics.median(diff),
        "extra_p95_ms": pct(diff, 95),
        "first_prompt_plain_ms": first["plain"],
        "first_prompt_redacted_ms": first["redacted"],
        "first_prompt_lines_scanned": scanned_first,
        "lines_scanned_while_typing": redactor.scanned - scanned_first,
    }


def _after(line: int, col: int, ch: str) -> tuple[int, int]:
    return (line + 1, 0) if ch == "\n" else (line, col + 1)


# ---------------------------------------------------------------------------------- report


def report(r: dict[str, Any]) -> str:
    m = r["machine"]
    leak, fp, cost = r["leaks"], r["false_positives"], r["cost"]
    lines = [
        "# Secrets in prompts",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores. Detector: detect-secrets 1.5.0 plus "
        "`starcoder_ls/prompt/redact.py`'s additions.",
        "",
        "## 1. Planted secrets against a remote backend",
        f"- {len(leak['kinds'])} kinds planted; {leak['requests']} requests reached the "
        f"backend; the line of **{len(leak['exposed'])}/{len(leak['kinds'])}** kinds reached "
        f"it; secrets (or 12-character pieces of them) in the requests: "
        f"**{len(leak['leaked'])} leaked** {leak['leaked'] or ''}",
        "- roads, with the kinds each carried in the last prompt: "
        + "; ".join(f"{k}: {len(v)}" for k, v in sorted(leak["roads"].items())),
        f"- kinds: {', '.join(leak['kinds'])}",
        "",
        "## 2. False positives on ordinary code",
        "",
        "| code | files | non-blank lines | lines changed | rate | scan µs/line (cold) |",
        "|---|---|---|---|---|---|",
    ]
    for language, f in fp.items():
        lines.append(
            f"| {language} | {f['files']} | {f['lines']} | {f['lines_changed']} | "
            f"{f['rate']:.3%} | {f['us_per_line']:.0f} |"
        )
    for language, f in fp.items():
        lines += ["", f"Examples ({language}):", ""]
        lines += [f"    {e}" for e in f["examples"]]
    lines += [
        "",
        "## 3. Cost per keystroke (5,000-line file, prompt built as the completion path does)",
        f"- {cost['keystrokes']} keystrokes: without redaction p50 {cost['plain_p50_ms']:.2f} "
        f"ms, p95 {cost['plain_p95_ms']:.2f} ms; with redaction p50 "
        f"{cost['redacted_p50_ms']:.2f} ms, p95 {cost['redacted_p95_ms']:.2f} ms; the "
        f"difference **p50 {cost['extra_p50_ms']:.2f} ms**, p95 {cost['extra_p95_ms']:.2f} ms "
        f"({cost['lines_scanned_while_typing']} lines scanned while typing; the rest came "
        "from the line cache)",
        f"- the first prompt in an unseen file: {cost['first_prompt_plain_ms']:.1f} ms without, "
        f"{cost['first_prompt_redacted_ms']:.1f} ms with redaction "
        f"({cost['first_prompt_lines_scanned']} lines scanned)",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    result: dict[str, Any] = {"machine": machine_info()}
    with tempfile.TemporaryDirectory(prefix="secrets-bench-") as tmp:
        print("leaks ...", file=sys.stderr)
        result["leaks"] = leak_run(Path(tmp))
    print("false positives ...", file=sys.stderr)
    result["false_positives"] = false_positives(args.quick)
    print("cost per keystroke ...", file=sys.stderr)
    result["cost"] = keystroke_cost(60 if args.quick else 200)
    text = report(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
