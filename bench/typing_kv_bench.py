#!/usr/bin/env python
"""Prompt tokens a real model evaluates while someone types, through the language server.

A real method of the standard library's ``email`` package is typed anew into its file, one
character every 80 ms with a 1.5 s pause after each line (people stop at line ends; the
default model needs about half a second for a line on 2 cores), into the
real ``starcoder-ls`` process over stdio, the whole package open as the workspace (so prompts
carry other files' context), with the default settings (debounce included). Each keystroke
sends an automatic inline completion request and cancels the previous one, as VS Code does.

Per run: the backend requests made while typing, the prompt tokens they carried and the ones
the model had to evaluate (the rest came from its KV cache; ``starcoder.status`` ``usage``),
the tokens of the text typed (with the model's tokenizer), their ratio (target: evaluated at
most 1.5 x typed), and the time from a keystroke to the completion shown (p50, p95).

``--baseline REF`` runs the same replays with the server of another commit (a git worktree)
beside this one, alternating A B / B A per round, so the comparison holds on a noisy machine.
``--setting KEY=A,B`` does the same with this server under two values of one setting (for
instance ``tokenHealing=off,on``: what healing costs per keystroke).

Usage: ``python bench/typing_kv_bench.py [--baseline REF | --setting KEY=A,B] [--rounds N]
[--models default,bundled] [--json OUT] [--markdown OUT]``. Prints a Markdown report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient
from serve_bench import machine, progress

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(sysconfig.get_paths()["stdlib"]) / "email"
FILE = "message.py"
METHOD = "    def get_filename(self, failobj=None):"
INTERVAL_MS = 80.0
PAUSE_MS = 1500.0


def models() -> dict[str, tuple[str, Path]]:
    """name -> (the ``model`` setting, the GGUF file for counting typed tokens)."""
    from starcoder_ls.models import BUNDLED_GGUF
    from starcoder_ls.models.packaged import DEFAULT, path_if_ready

    found: dict[str, tuple[str, Path]] = {"bundled": (str(BUNDLED_GGUF), BUNDLED_GGUF)}
    default = path_if_ready(DEFAULT)
    if default is not None:
        found["default"] = ("", default)
    return found


def script(workspace: Path) -> tuple[str, int, int, str]:
    """The file without the method (an empty line in its place), the line and column where
    typing starts, and the text to type."""
    source = (workspace / FILE).read_text()
    start = source.index(METHOD)
    end = source.index("\n    def ", start + 1) + 1
    typed = source[start:end].rstrip("\n")
    text = source[:start] + "\n" + source[end:]
    return text, source[:start].count("\n"), 0, typed


def count_tokens(gguf: Path, text: str) -> int:
    from starcoder_ls.backends.gguf import load_gguf

    vocab = load_gguf(gguf, n_ctx=512, vocab_only=True)
    try:
        return len(vocab.tokenize(text.encode(), add_bos=False, special=False))
    finally:
        vocab.close()


async def replay(
    server_root: Path, model: str, workspace: Path, state: Path, extra: dict[str, Any]
) -> dict[str, Any]:
    text, line, col, typed = script(workspace)
    client = LanguageClient("typing-kv-bench", "v1")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("STARCODER_LS")},
        "STARCODER_LS_STATE_DIR": str(state),
        "XDG_CACHE_HOME": str(state / "cache"),
        "PYTHONPATH": str(server_root),
    }
    await client.start_io(
        sys.executable,
        "-m",
        "starcoder_ls",
        "--log-level",
        "WARNING",
        env=env,
        cwd=str(server_root),
    )
    options = {**({"model": model} if model else {}), **extra}
    await client.initialize_async(
        lsp.InitializeParams(
            capabilities=lsp.ClientCapabilities(
                text_document=lsp.TextDocumentClientCapabilities(
                    inline_completion=lsp.InlineCompletionClientCapabilities()
                )
            ),
            initialization_options=options,
            root_uri=workspace.as_uri(),
        )
    )
    client.initialized(lsp.InitializedParams())
    uri = (workspace / FILE).as_uri()
    client.text_document_did_open(
        lsp.DidOpenTextDocumentParams(
            text_document=lsp.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        )
    )

    def inline(n: int, invoked: bool, at: tuple[int, int]) -> Any:
        kind = lsp.InlineCompletionTriggerKind
        return client.protocol.send_request_async(
            lsp.TEXT_DOCUMENT_INLINE_COMPLETION,
            lsp.InlineCompletionParams(
                text_document=lsp.TextDocumentIdentifier(uri=uri),
                position=lsp.Position(line=at[0], character=at[1]),
                context=lsp.InlineCompletionContext(
                    trigger_kind=kind.Invoked if invoked else kind.Automatic
                ),
            ),
            msg_id=f"r-{n}",
        )

    async def usage() -> dict[str, int]:
        status = await client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command="starcoder.status")
        )
        data = status if isinstance(status, dict) else status._asdict()  # type: ignore[union-attr]
        got = data["usage"]
        return dict(got if isinstance(got, dict) else got._asdict())

    # Warm up: the model loads and the first whole prompt is evaluated (not measured).
    await inline(-1, True, (line, col))
    before = await usage()
    version, shown, pending = 1, [], None
    for n, ch in enumerate(typed):
        version += 1
        client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[
                    lsp.TextDocumentContentChangePartial(
                        range=lsp.Range(
                            start=lsp.Position(line=line, character=col),
                            end=lsp.Position(line=line, character=col),
                        ),
                        text=ch,
                    )
                ],
            )
        )
        line, col = (line + 1, 0) if ch == "\n" else (line, col + 1)
        if pending is not None:
            client.protocol.notify(lsp.CANCEL_REQUEST, lsp.CancelParams(id=pending))
        pending = f"r-{n}"
        t = time.perf_counter()

        def done(f: Any, t: float = t) -> None:
            if not f.cancelled() and f.exception() is None:
                r = f.result()
                if r is not None and r.items:
                    shown.append((time.perf_counter() - t) * 1000)

        asyncio.ensure_future(inline(n, False, (line, col))).add_done_callback(done)
        await asyncio.sleep((INTERVAL_MS + (PAUSE_MS if ch == "\n" else 0.0)) / 1000)
    await asyncio.sleep(3.0)
    after = await usage()
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    spent = {k: after[k] - before[k] for k in after}
    return {"typed_chars": len(typed), "typed": typed, "usage": spent, "shown_ms": shown}


def summarize(runs: list[dict[str, Any]], typed_tokens: int) -> dict[str, Any]:
    requests = sum(r["usage"]["requests"] for r in runs)
    evaluated = sum(r["usage"]["evaluated_tokens"] for r in runs)
    prompt = sum(r["usage"]["prompt_tokens"] for r in runs)
    shown = [ms for r in runs for ms in r["shown_ms"]]
    typed = typed_tokens * len(runs)
    return {
        "rounds": len(runs),
        "backend_requests": requests,
        "prompt_tokens_per_request": round(prompt / max(1, requests), 1),
        "evaluated_per_request": round(evaluated / max(1, requests), 1),
        "typed_tokens": typed,
        "evaluated_tokens": evaluated,
        "evaluated_per_typed_token": round(evaluated / max(1, typed), 2),
        "completions_shown": len(shown),
        "time_to_show_p50_ms": round(statistics.median(shown), 1) if shown else None,
        "time_to_show_p95_ms": round(sorted(shown)[int(0.95 * (len(shown) - 1))], 1)
        if shown
        else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--baseline", help="a git ref whose server runs beside this one")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--models", default="bundled,default")
    ap.add_argument("--setting", metavar="KEY=A,B", help="two values of a setting, side by side")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="typing-kv-"))
    servers: dict[str, Path] = {"current": ROOT}
    extras: dict[str, dict[str, Any]] = {"current": {}}
    if args.setting:
        key, _, values = args.setting.partition("=")
        servers = {f"{key}={v}": ROOT for v in values.split(",")}
        extras = {f"{key}={v}": {key: v} for v in values.split(",")}
    elif args.baseline:
        tree = work / "baseline"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.baseline],
            check=True, capture_output=True,
        )  # fmt: skip
        servers = {f"baseline ({args.baseline})": tree, "current": ROOT}
        extras = {label: {} for label in servers}
    found = models()
    report: dict[str, Any] = {"machine": machine(), "file": f"email/{FILE}", "method": METHOD.strip(),
                              "interval_ms": INTERVAL_MS, "pause_after_newline_ms": PAUSE_MS,
                              "results": {}}  # fmt: skip
    try:
        for name in [m for m in args.models.split(",") if m in found]:
            setting, gguf = found[name]
            runs: dict[str, list[dict[str, Any]]] = {s: [] for s in servers}
            for rnd in range(args.rounds):
                order = list(servers) if rnd % 2 == 0 else list(servers)[::-1]
                for label in order:
                    workspace = work / f"ws-{name}-{rnd}-{list(servers).index(label)}"
                    shutil.copytree(
                        PACKAGE, workspace, ignore=shutil.ignore_patterns("__pycache__")
                    )
                    state = work / f"state-{workspace.name}"
                    progress(f"{name}: round {rnd + 1}, {label}")
                    runs[label].append(
                        asyncio.run(
                            replay(servers[label], setting, workspace, state, extras[label])
                        )
                    )
            first = runs[next(iter(servers))][0]
            typed_tokens = count_tokens(gguf, first["typed"])
            report["results"][name] = {
                "model": gguf.name,
                "typed_chars": first["typed_chars"],
                "typed_tokens": typed_tokens,
                **{label: summarize(r, typed_tokens) for label, r in runs.items()},
            }
    finally:
        if args.baseline:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "baseline")],
                capture_output=True,
            )  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report, list(servers))
    if args.markdown:
        args.markdown.write_text(md + "\n")
    print(md)


def markdown(report: dict[str, Any], labels: list[str]) -> str:
    m = report["machine"]
    out = [
        "# Prompt tokens evaluated while typing (language server, real models)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB. Typed: "
        f"`{report['method']}` of `{report['file']}` (the package open as the workspace), "
        f"{report['interval_ms']:g} ms per key, {report['pause_after_newline_ms']:g} ms more "
        "after each line; default settings. Evaluated: prompt tokens the model computed (not "
        "taken from its KV cache), over all backend requests while typing.",
        "",
    ]
    rows = [
        ("backend requests", "backend_requests"),
        ("prompt tokens per request", "prompt_tokens_per_request"),
        ("evaluated per request", "evaluated_per_request"),
        ("typed tokens", "typed_tokens"),
        ("evaluated tokens", "evaluated_tokens"),
        ("**evaluated per typed token** (target <= 1.5)", "evaluated_per_typed_token"),
        ("completions shown", "completions_shown"),
        ("time to show p50 (ms)", "time_to_show_p50_ms"),
        ("time to show p95 (ms)", "time_to_show_p95_ms"),
    ]
    for name, res in report["results"].items():
        out += [f"## {name}: {res['model']} ({res['typed_chars']} characters typed)", ""]
        out += [f"| | {' | '.join(labels)} |", "|---|" + "---|" * len(labels)]
        for label, key in rows:
            out.append(f"| {label} | {' | '.join(str(res[lb][key]) for lb in labels)} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    main()
