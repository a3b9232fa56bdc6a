"""The bundled model's MODEL_CARD.md, rendered from the numbers of the run that made it."""

from __future__ import annotations

from typing import Any


def _skipped(corpus: dict[str, Any]) -> str:
    skipped = corpus.get("skipped") or {}
    parts = [f"{reason.replace('_', ' ')} {n}" for reason, n in skipped.items() if n]
    return ", ".join(parts) or "none"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _verdict(model: dict[str, Any], base: dict[str, dict[str, float]]) -> str:
    """Say in words whether the model beats the baselines, so the card never oversells it."""
    best = max(base.values(), key=lambda b: (b["exact_match"], b["edit_similarity"]))
    if (
        model["exact_match"] > best["exact_match"]
        and model["edit_similarity"] > best["edit_similarity"]
    ):
        return (
            "It beats both baselines on exact match and edit similarity, but it is a small model "
            "and is often wrong. "
        )
    return (
        "**It does not beat the trivial baselines** on held-out single-line infills (see the "
        "table above): it proves the training, export and serving path end to end, offline, and "
        "is not yet a useful completion model. "
    )


def render_card(report: dict[str, Any], metrics: list[dict[str, Any]]) -> str:
    cfg = report["recipe"]
    ev = report["evaluation"]
    hf = ev["transformers_fp32"]
    base = hf["baselines"]
    corpus = report["corpus"]
    train_rows = report["shards"]["train"]
    val_rows = report["shards"].get("validation", {})
    last_val: dict[str, Any] = next((m for m in reversed(metrics) if "val_loss" in m), {})
    tps = [m["tokens_per_s"] for m in metrics if "tokens_per_s" in m]
    t = report["timings_s"]
    total_min = sum(t.values()) / 60
    files = "\n".join(
        f"| `{name}` | {size / 1e6:.2f} MB |" for name, size in report["files"].items()
    )
    rows = []
    for name, r in ev.items():
        rows.append(
            f"| {name} | {r['perplexity']['perplexity']} | {_pct(r['fim_line']['exact_match'])} | "
            f"{r['fim_line']['edit_similarity']:.3f} | {r['load_seconds']} |"
        )
    for name, b in base.items():
        rows.append(
            f"| baseline: {name.replace('_', ' ')} | - | {_pct(b['exact_match'])} | {b['edit_similarity']:.3f} | - |"
        )
    table = "\n".join(rows)
    return f"""# starcoder-ls-tiny

The offline default model of starcoder-ls: a {report["parameters"] / 1e6:.1f}M-parameter GPTBigCode
(StarCoder architecture: multi-query attention, learned absolute positions) trained from scratch
with `starcoder_ls.recipe` on the Python standard library of CPython {report["python"]}. It is small
enough to ship inside the package and to run on any laptop; it completes Python in the style of the
standard library and knows nothing else. For real work point starcoder-ls at a bigger model.

## Reproduce

```
starcoder-ls recipe bundle            # or: make bundled-model
```

One command, {total_min:.0f} minutes on this machine ({report["machine"]["cpu"]}, {report["machine"]["cores"]} cores,
torch {report["machine"]["torch"]}): corpus {t["corpus_s"]:.0f} s, tokenizer {t["tokenizer_s"]:.0f} s, shards
{t["shards_s"]:.0f} s, training {t["train_s"]:.0f} s, export and quantization {t["export_s"]:.0f} s, evaluation
{t["eval_s"]:.0f} s. Training is deterministic given the seed; re-running the command resumes from
the last checkpoint in `runs/bundle`.

## Data

- Source: the interpreter's standard library directory (`sysconfig.get_paths()["stdlib"]`),
  Python files only; `site-packages` is excluded, so third-party packages stay held out.
- Files seen {corpus.get("files_seen", "?")}, kept {corpus.get("kept_train", "?")} for training and
  {corpus.get("kept_validation", "?")} held out for validation (split by content hash,
  {_pct(cfg["val_fraction"])}); exact duplicates removed {corpus.get("exact_duplicates", "?")}, near duplicates
  {corpus.get("near_duplicates", "?")}; PII/secret redactions {corpus.get("redactions", "?")}.
- Skipped: {_skipped(corpus)} (generated files include CPython's codec tables in
  `encodings/`, signed "generated from ... with gencodec.py").
- Tokens: {train_rows["tokens"]:,} training tokens in rows of {cfg["seq_len"]}
  ({train_rows["documents"]:,} documents), {val_rows.get("tokens", 0):,} validation tokens.
- FIM: bigcode's character-level transform, fim_rate {cfg["fim_rate"]}, spm_rate {cfg["spm_rate"]}
  (SPM in bigcode's variant); {_pct(cfg.get("span_rate", 0))} of FIM middles are editor-style spans
  (the rest of a line plus up to two lines) and {_pct(cfg["line_rate"])} have both cuts moved to line
  starts (whole lines); {cfg.get("draws", 1)} FIM draws per file; {_pct(cfg["repo_rate"])} of files (those with sibling files) are
  repository-level samples with up to 3 sibling files before them; {_pct(cfg["path_rate"])} of
  single-file documents start with `<file_sep>path`.

## Model

| | |
|---|---|
| preset | `{cfg["preset"]}` |
| parameters | {report["parameters"]:,} |
| vocabulary | {cfg["vocab_size"]} (byte-level BPE, StarCoder pre-tokenizer and special tokens) |
| context | {cfg["seq_len"]} tokens |
| training | {cfg["max_steps"]} steps x {cfg["micro_batch"] * cfg["grad_accum"]} rows x {cfg["seq_len"]} tokens, AdamW, lr {cfg["lr"]}, {cfg["warmup_steps"]} warmup steps then cosine |
| throughput | {(sum(tps) / len(tps) if tps else 0):,.0f} tokens/s on average (CPU, fp32) |
| final validation loss | {last_val.get("val_loss", "n/a")} nats/token |

![loss curve](loss.png)

## Prompt format

Fill-in-the-middle, PSM: `<fim_prefix>{{prefix}}<fim_suffix>{{suffix}}<fim_middle>`; the model writes the
middle and ends it with `<|endoftext|>`. Optionally preceded by `<file_sep>{{path}}\\n` for the current
file, and by `<repo_name>{{name}}<file_sep>{{path}}\\n{{code}}...` for other files of the repository.
Stop tokens: `<|endoftext|>`, `<fim_pad>`, `<file_sep>`.

## Evaluation (held-out standard-library files)

{hf["fim_line"]["samples"]} deterministic single-line infills (a non-blank line hidden, prefix and suffix
given, greedy decoding, first generated line compared with trailing whitespace ignored), and
perplexity over {hf["perplexity"]["tokens"]:,} held-out tokens:

| model | perplexity | FIM line exact match | edit similarity | load s |
|---|---|---|---|---|
{table}

## Files

| file | size |
|---|---|
{files}

## Limits

{_verdict(hf["fim_line"], base)}Trained on a few million tokens of one language; its context
is {cfg["seq_len"]} tokens. It was not trained on third-party code and was not tuned for safety;
it may reproduce standard-library code verbatim (license: PSF).
"""
