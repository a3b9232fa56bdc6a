"""What the portable llama.cpp build costs: decode speed against a build for this very CPU.

setup installs one llama-cpp-python that runs on any x86-64 CPU (every ggml CPU variant, the best
runnable one chosen at start; ``scripts/build_llama.py``). A native build (``GGML_NATIVE=ON``,
pip's default) is tuned to the machine that compiled it and crashes elsewhere. This script builds
the native one once into ``--native-dir`` (about 5 minutes on 2 cores), then times both on the
same model, prompt and thread count, alternating runs so machine noise hits both alike, and
reports tokens per second and the ratio.

    python bench/portable_bench.py [--model PATH] [--runs 5] [--json OUT] > bench/results/portable_bench.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION = "0.3.36"
NATIVE_ARGS = "-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF"

# Runs in a fresh interpreter per build: prompt evaluation and greedy decoding of a fixed
# number of tokens, timed apart.
_TIMER = r"""
import json, sys, time
from starcoder_ls.backends.cpu_select import select_cpu_backend
choice = select_cpu_backend()
from starcoder_ls.backends.llamacpp import LlamaCppBackend
path, n_tokens, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
b = LlamaCppBackend(path, n_threads=threads)
ids = b.tokenize(open(sys.argv[4]).read())[-400:]
llm = b._llm
out = []
for _ in range(3):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    t1 = time.perf_counter()
    tok = ids[-1]
    for _ in range(n_tokens):
        llm.eval([tok])
        tok = int(b._last_logits().argmax())
    t2 = time.perf_counter()
    out.append({"prompt_tps": len(ids) / (t1 - t0), "decode_tps": n_tokens / (t2 - t1)})
best = max(out, key=lambda r: r["decode_tps"])
print(json.dumps({**best, "variant": choice.variant, "note": choice.note}))
"""


def build_native(dest: Path) -> None:
    if (dest / "llama_cpp").is_dir():
        return
    print(f"building a native llama-cpp-python {VERSION} into {dest} (once) ...", file=sys.stderr)
    env = {
        **os.environ,
        "CMAKE_ARGS": NATIVE_ARGS,
        "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2),
    }
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-cache-dir",
             "--no-binary", "llama-cpp-python", f"llama-cpp-python=={VERSION}", "-w", tmp],
            env=env, check=True,
        )  # fmt: skip
        wheel = next(Path(tmp).glob("llama_cpp_python-*.whl"))
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(dest), str(wheel)],
            check=True,
        )  # fmt: skip


def time_once(model: str, tokens: int, threads: int, text: Path, pythonpath: str | None) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", _TIMER, model, str(tokens), str(threads), str(text)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"timing run failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    from starcoder_ls.models import default_gguf

    from starcoder_ls.machine import machine_info

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="", help="GGUF file (default: the default model)")
    ap.add_argument(
        "--native-dir", type=Path, default=Path.home() / ".cache/starcoder-ls/native-llama"
    )
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    model = args.model or default_gguf()[0]
    build_native(args.native_dir)
    text = ROOT / "starcoder_ls" / "engine.py"
    portable: list[dict] = []
    native: list[dict] = []
    for _ in range(args.runs):
        portable.append(time_once(model, args.tokens, args.threads, text, None))
        native.append(time_once(model, args.tokens, args.threads, text, str(args.native_dir)))
    p_dec = statistics.median(r["decode_tps"] for r in portable)
    n_dec = statistics.median(r["decode_tps"] for r in native)
    p_pre = statistics.median(r["prompt_tps"] for r in portable)
    n_pre = statistics.median(r["prompt_tps"] for r in native)
    m = machine_info()
    report = {
        "machine": m,
        "model": model,
        "threads": args.threads,
        "runs": args.runs,
        "tokens": args.tokens,
        "portable_variant": portable[0]["variant"],
        "portable_decode_tps": round(p_dec, 1),
        "native_decode_tps": round(n_dec, 1),
        "decode_ratio_portable_to_native": round(p_dec / n_dec, 3),
        "portable_prompt_tps": round(p_pre, 1),
        "native_prompt_tps": round(n_pre, 1),
        "prompt_ratio_portable_to_native": round(p_pre / n_pre, 3),
    }
    print("# Portable against native llama.cpp build\n")
    print(f"Machine: {m['cpu']}, {m['cores']} cores. Model: {Path(model).name}, {args.threads} "
          f"threads, {args.runs} alternating runs each (median of each run's best of 3).\n")  # fmt: skip
    print("| build | decode tokens/s | prompt tokens/s |")
    print("|---|---|---|")
    print(f"| portable (ggml CPU variant `{report['portable_variant']}`, chosen at run time) "
          f"| {p_dec:.1f} | {p_pre:.1f} |")  # fmt: skip
    print(f"| native (`GGML_NATIVE=ON`, this CPU only) | {n_dec:.1f} | {n_pre:.1f} |")
    print(f"\nRatio portable/native: decode **{report['decode_ratio_portable_to_native']}**, "
          f"prompt {report['prompt_ratio_portable_to_native']}.")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
