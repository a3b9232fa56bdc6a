#!/usr/bin/env python
"""Benchmark report for the training recipe and the bundled model.

Prints, for this machine:
  * training throughput of the ``tiny`` preset (tokens/s, fp32 on the CPU);
  * the bundled model's final validation loss and single-line FIM exact match on held-out
    standard-library files, beside the empty-line and repeat-previous-line baselines;
  * GGUF fidelity: max |logit| difference of llama.cpp (f32 GGUF, f32 KV cache) vs transformers
    (fp32) over held-out prompts, also with transformers' GELU swapped for ggml's fp16-table
    GELU (which isolates the runtime's activation approximation from the export), and
    greedy-token agreement of Q8_0 / Q4_K_M with transformers over 50 FIM prompts;
  * file size and load time of each GGUF type, and decode tokens/s of llama.cpp Q4_K_M vs
    transformers fp32 on the same prompts (ratio, measured side by side in one run).

Usage: ``python bench/recipe_bench.py [--model-dir models/starcoder-ls-tiny] [--json OUT]``.
Everything runs locally on the bundled model; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from starcoder_ls.models import BUNDLED_DIR, BUNDLED_NAME

from starcoder_ls.backends.gguf import load_gguf
from starcoder_ls.evaluation.heldout import (
    GGUFModel,
    InMemoryModel,
    baselines,
    fim_exact_match,
    infill_ids,
    sample_lines,
    stop_ids,
)
from starcoder_ls.machine import machine_info
from starcoder_ls.recipe.corpus import build_corpus, read_corpus
from starcoder_ls.recipe.export import export_gguf, load_hf
from starcoder_ls.recipe.quantize import quantize_gguf


def training_throughput(steps: int = 6) -> dict[str, float]:
    """Steady-state tokens/s of full training steps (forward, backward, AdamW) of ``tiny``."""
    import torch

    from starcoder_ls.recipe.model import build_model, get_preset

    preset = get_preset("tiny")
    model = build_model(preset, vocab_size=8192)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, 8192, (4, preset.n_positions))
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    per_step = statistics.median(times[1:])
    return {
        "tokens_per_step": x.numel(),
        "seconds_per_step": round(per_step, 3),
        "tokens_per_s": round(x.numel() / per_step, 1),
    }


def heldout_files(work: Path) -> list[Any]:
    """The bundled model's held-out split, rebuilt deterministically from this interpreter."""
    from starcoder_ls.recipe.bundle import BundleConfig

    out = work / "corpus"
    build_corpus(BundleConfig().corpus_config(out), progress=False)
    return list(read_corpus(out / "validation.jsonl"))


def ggml_gelu_module() -> Any:
    import torch

    class GgmlGelu(torch.nn.Module):
        """GELU as llama.cpp's CPU backend computes it: the tanh formula tabulated on fp16.

        ggml evaluates GELU through a 65,536-entry table indexed by the input rounded to fp16
        (holding fp16 results), passing x through above 10 and returning 0 below -10. Putting
        this in place of transformers' exact activation shows how much of the logit difference
        between the two runtimes is that table rather than the exported weights.
        """

        def forward(self, x: Any) -> Any:
            h = x.to(torch.float16).float()
            y = torch.nn.functional.gelu(h, approximate="tanh").to(torch.float16).float()
            return torch.where(x >= 10, x, torch.where(x <= -10, torch.zeros_like(x), y))

    return GgmlGelu()


def logit_fidelity(
    hf: InMemoryModel, gguf_f32: Path, prompts: list[list[int]], *, ggml_gelu: bool = False
) -> dict[str, float]:
    import torch

    acts = [block.mlp.act for block in hf.model.transformer.h]
    if ggml_gelu:
        for block in hf.model.transformer.h:
            block.mlp.act = ggml_gelu_module()
    llm = load_gguf(
        gguf_f32, n_ctx=hf.n_ctx, logits_all=True, type_k=0, type_v=0, n_threads=os.cpu_count()
    )
    worst, worst_rel = 0.0, 0.0
    for ids in prompts:
        with torch.no_grad():
            ref = hf.model(input_ids=torch.tensor([ids])).logits[0].double().numpy()
        llm.reset()
        llm.eval(ids)
        got = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
        diff = np.abs(got - ref).max()
        worst = max(worst, float(diff))
        worst_rel = max(worst_rel, float(diff / np.abs(ref).max()))
    for block, act in zip(hf.model.transformer.h, acts, strict=True):
        block.mlp.act = act
    return {"prompts": len(prompts), "max_abs_logit_diff": worst, "max_rel_logit_diff": worst_rel}


def greedy_agreement(
    hf: InMemoryModel, model: GGUFModel, prompts: list[list[int]], n_new: int = 16
) -> dict[str, float]:
    stops_hf, stops_q = stop_ids(hf), stop_ids(model)
    first = same = 0
    prefix_share = []
    for ids in prompts:
        a = hf.greedy(ids, n_new, stops_hf)
        b = model.greedy(ids, n_new, stops_q)
        first += bool(a[:1] == b[:1])
        same += a == b
        agree = next(
            (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
        )
        prefix_share.append(agree / max(1, max(len(a), len(b))) if (a or b) else 1.0)
    n = len(prompts)
    return {
        "prompts": n,
        "first_token_agreement": round(first / n, 3),
        "identical_continuations": round(same / n, 3),
        "mean_agreeing_prefix": round(float(np.mean(prefix_share)), 3),
    }


def decode_speed(generate: Any, prompts: list[list[int]], n_new: int = 48) -> float:
    tokens, seconds = 0, 0.0
    for ids in prompts:
        t = time.perf_counter()
        out = generate(ids, n_new)
        seconds += time.perf_counter() - t
        tokens += len(out)
    return tokens / seconds


def run(model_dir: Path, work: Path, n_prompts: int, eval_samples: int) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": machine_info()}
    print("training throughput ...", file=sys.stderr)
    report["training"] = training_throughput()
    bundled = (
        json.loads((model_dir / "report.json").read_text())
        if (model_dir / "report.json").is_file()
        else {}
    )
    metrics = (
        [json.loads(x) for x in (model_dir / "metrics.jsonl").read_text().splitlines()]
        if (model_dir / "metrics.jsonl").is_file()
        else []
    )
    val = [m["val_loss"] for m in metrics if "val_loss" in m]
    tps = [m["tokens_per_s"] for m in metrics if "tokens_per_s" in m]
    report["bundled_training"] = {
        "final_val_loss": val[-1] if val else None,
        "mean_tokens_per_s": round(float(np.mean(tps)), 1) if tps else None,
        "train_seconds": bundled.get("timings_s", {}).get("train_s"),
    }

    print("held-out data ...", file=sys.stderr)
    files = heldout_files(work)
    samples = sample_lines(files, eval_samples, seed=0)
    hf_model, tok = load_hf(model_dir / "hf", dtype="float32")
    hf = InMemoryModel(hf_model, tok)

    print("GGUF files ...", file=sys.stderr)
    gguf: dict[str, Path] = {}
    for kind in ("f32", "f16"):
        gguf[kind] = export_gguf(
            model_dir / "hf", work / f"{BUNDLED_NAME}-{kind}.gguf", outtype=kind
        )
    for q in ("Q8_0", "Q4_0", "Q4_K_M"):
        gguf[q] = quantize_gguf(gguf["f32"], work / f"{BUNDLED_NAME}-{q}.gguf", q)
    sizes = {}
    for kind, path in gguf.items():
        times = []
        for _ in range(3):
            t = time.perf_counter()
            llm = load_gguf(path, n_ctx=hf.n_ctx)
            times.append(time.perf_counter() - t)
            del llm
        sizes[kind] = {
            "bytes": path.stat().st_size,
            "load_ms": round(1000 * statistics.median(times), 1),
        }
    report["gguf_files"] = sizes

    prompts = [infill_ids(hf, s.prefix, s.suffix, 48) for s in samples[:n_prompts]]
    print("logit fidelity ...", file=sys.stderr)
    report["fidelity_f32"] = logit_fidelity(hf, gguf["f32"], prompts[:10])
    report["fidelity_f32_ggml_gelu"] = logit_fidelity(hf, gguf["f32"], prompts[:10], ggml_gelu=True)
    print("greedy agreement ...", file=sys.stderr)
    models = {q: GGUFModel(gguf[q]) for q in ("f32", "Q8_0", "Q4_K_M")}
    report["greedy_agreement"] = {q: greedy_agreement(hf, m, prompts) for q, m in models.items()}

    print("FIM exact match ...", file=sys.stderr)
    report["fim_line"] = {
        "samples": len(samples),
        "transformers_fp32": fim_exact_match(hf, samples),
        "llama_cpp_Q8_0": fim_exact_match(models["Q8_0"], samples),
        "llama_cpp_Q4_K_M": fim_exact_match(models["Q4_K_M"], samples),
        **baselines(samples),
    }

    print("decode speed ...", file=sys.stderr)
    speed_prompts = prompts[:10]
    stops: set[int] = set()  # generate the full budget: a speed test, not a completion
    hf_tps = decode_speed(lambda ids, n: hf.greedy(ids, n, stops), speed_prompts)
    q4_tps = decode_speed(lambda ids, n: models["Q4_K_M"].greedy(ids, n, stops), speed_prompts)
    report["decode"] = {
        "transformers_fp32_tokens_per_s": round(hf_tps, 1),
        "llama_cpp_Q4_K_M_tokens_per_s": round(q4_tps, 1),
        "ratio_llama_cpp_over_transformers": round(q4_tps / hf_tps, 2),
        "prompts": len(speed_prompts),
        "new_tokens_per_prompt": 48,
    }
    return report


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "# starcoder-ls recipe benchmark",
        f"machine: {m['cpu']}, {m['cores']} cores (torch threads {m['torch_threads']}), Python {m['python']}, torch {m['torch']}",
        "",
        "## Training (tiny preset, fp32, CPU)",
        f"- throughput now: {r['training']['tokens_per_s']:,.0f} tokens/s ({r['training']['seconds_per_step']} s per step of {r['training']['tokens_per_step']} tokens)",
        f"- bundled run: mean {r['bundled_training']['mean_tokens_per_s']} tokens/s, final validation loss {r['bundled_training']['final_val_loss']}, training {r['bundled_training']['train_seconds']} s",
        "",
        f"## Single-line FIM on held-out stdlib files ({r['fim_line']['samples']} lines)",
        "| model | exact match | edit similarity |",
        "|---|---|---|",
    ]
    for k in (
        "transformers_fp32",
        "llama_cpp_Q8_0",
        "llama_cpp_Q4_K_M",
        "empty_line",
        "repeat_previous_line",
    ):
        v = r["fim_line"][k]
        lines.append(f"| {k} | {100 * v['exact_match']:.1f}% | {v['edit_similarity']:.3f} |")
    f = r["fidelity_f32"]
    g = r["fidelity_f32_ggml_gelu"]
    lines += [
        "",
        "## GGUF fidelity",
        f"- llama.cpp f32 vs transformers fp32: max |logit diff| {f['max_abs_logit_diff']:.2e} (relative {f['max_rel_logit_diff']:.2e}) over {f['prompts']} prompts",
        f"- the same with transformers' GELU evaluated like ggml's CPU kernel (fp16 table): max |logit diff| {g['max_abs_logit_diff']:.2e} (relative {g['max_rel_logit_diff']:.2e}); the rest of the difference is summation order, so the exported weights are exact and the gap above is llama.cpp's activation approximation",
        "",
        "| GGUF | first-token agreement | identical 16-token continuations | mean agreeing prefix |",
        "|---|---|---|---|",
    ]
    for q, g in r["greedy_agreement"].items():
        lines.append(
            f"| {q} ({g['prompts']} prompts) | {100 * g['first_token_agreement']:.0f}% | {100 * g['identical_continuations']:.0f}% | {100 * g['mean_agreeing_prefix']:.0f}% |"
        )
    lines += ["", "## GGUF files", "| type | size | load time |", "|---|---|---|"]
    for kind, s in r["gguf_files"].items():
        lines.append(f"| {kind} | {s['bytes'] / 1e6:.2f} MB | {s['load_ms']} ms |")
    d = r["decode"]
    lines += [
        "",
        "## Decode speed (same prompts, 48 new tokens each)",
        f"- transformers fp32: {d['transformers_fp32_tokens_per_s']} tokens/s",
        f"- llama.cpp Q4_K_M: {d['llama_cpp_Q4_K_M_tokens_per_s']} tokens/s",
        f"- ratio llama.cpp / transformers: {d['ratio_llama_cpp_over_transformers']}x",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model-dir", type=Path, default=BUNDLED_DIR)
    ap.add_argument("--prompts", type=int, default=50)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="scl-bench-") as tmp:
        report = run(args.model_dir, Path(tmp), args.prompts, args.samples)
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
