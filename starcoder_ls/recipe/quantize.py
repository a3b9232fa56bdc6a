"""The llama.cpp side of the recipe: quantize a GGUF (loading one is ``backends.gguf``).

Quantization calls llama.cpp's own quantizer through llama-cpp-python: re-implementing the block
formats could drift from them, while llama.cpp's output loads in every llama.cpp-based runtime
(llama-cpp-python, llama.cpp server, Ollama).

Small models and k-quants: a k-quant block (``q4_K``, ``q6_K``, ...) spans 256 values of a
row, so a matrix whose rows are not a multiple of 256 long cannot use one. llama.cpp then falls
back per tensor (``q4_K`` -> ``q5_0``, ``q6_K`` -> ``q8_0``) and logs "ncols ... not divisible by
256 ... falling back"; the file still loads and runs, it is only bigger than a true ``Q4_K_M``.
The ``micro`` preset (n_embd 64) falls back for every matrix except ``ffn_down`` (rows of
n_inner = 256); ``tiny`` and larger presets have n_embd a multiple of 256 and get real k-quants.
Norms, biases and ``position_embd`` stay f32 in every type; the tied ``token_embd`` (also the
output projection) gets the higher-precision type of the mix (``q6_K`` in ``Q4_K_M``).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from starcoder_ls.backends.gguf import check_gguf_file, llama_log_capture
from starcoder_ls.recipe.atomic import atomic_path
from starcoder_ls.recipe.errors import RecipeError

if TYPE_CHECKING:
    pass

# Name -> llama.cpp ``LLAMA_FTYPE_*`` constant name (resolved lazily: llama_cpp is heavy).
QUANT_TYPES: dict[str, str] = {
    "F16": "LLAMA_FTYPE_MOSTLY_F16",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
}


def _normalise_type(qtype: str) -> str:
    name = qtype.strip().upper()
    if name not in QUANT_TYPES:
        raise RecipeError(
            f"unknown quantization type {qtype!r}; choose one of: {', '.join(QUANT_TYPES)}"
        )
    return name


def quantize_gguf(src: str | Path, dst: str | Path, qtype: str) -> Path:
    """Write ``src`` quantized to ``qtype`` at ``dst``; ``dst`` is untouched if anything fails."""
    import ctypes

    name = _normalise_type(qtype)
    src = check_gguf_file(src)
    dst = Path(dst)
    if dst.resolve() == src.resolve():
        raise RecipeError(f"refusing to quantize {src} onto itself; choose another output path")
    from starcoder_ls.backends.cpu_select import import_llama_cpp

    llama_cpp = import_llama_cpp()

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[name])
    params.nthread = os.cpu_count() or 1
    with atomic_path(dst) as tmp, llama_log_capture() as log:
        code = llama_cpp.llama_model_quantize(
            str(src).encode(), str(tmp).encode(), ctypes.byref(params)
        )
        if code != 0:
            reason = log.reason() or "no reason given"
            raise RecipeError(
                f"llama.cpp failed to quantize {src} to {name} (code {code}): {reason}"
            )
    return dst


def output_path(src: Path, qtype: str, out_dir: Path | None) -> Path:
    """``model.gguf`` -> ``model-Q4_K_M.gguf`` (a ``-F32``/``-F16`` suffix is replaced)."""
    stem = src.stem
    for suffix in ("-f32", "-F32", "-f16", "-F16"):
        stem = stem.removesuffix(suffix)
    return (out_dir or src.parent) / f"{stem}-{_normalise_type(qtype)}.gguf"


def cli_register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "quantize",
        help="quantize a GGUF model (Q8_0, Q4_0, Q4_K_M) with llama.cpp",
        description="Quantize a GGUF file made by `starcoder-ls recipe export --gguf-out`. "
        "Each --type writes <stem>-<type>.gguf. k-quants (Q4_K_M) need rows that are a "
        "multiple of 256; smaller models fall back to Q5_0/Q8_0 for those tensors.",
    )
    p.add_argument("gguf", type=Path, help="source GGUF file (f32 or f16)")
    p.add_argument(
        "--type",
        dest="types",
        action="append",
        required=True,
        metavar="|".join(QUANT_TYPES),
        help="quantization type; repeat for several outputs",
    )
    p.add_argument("--out-dir", type=Path, help="output directory (default: next to the source)")
    p.set_defaults(func=_cli_run)


def _cli_run(args: argparse.Namespace) -> int:
    types = [_normalise_type(t) for t in args.types]  # fail on a typo before any work
    src = check_gguf_file(args.gguf)
    results = []
    for name in dict.fromkeys(types):
        out = quantize_gguf(src, output_path(src, name, args.out_dir), name)
        results.append({"type": name, "path": str(out), "bytes": out.stat().st_size})
    print(json.dumps({"source": str(src), "source_bytes": src.stat().st_size, "outputs": results}))
    return 0
