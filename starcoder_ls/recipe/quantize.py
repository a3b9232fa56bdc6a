"""The llama.cpp side of the recipe: load a GGUF (with reasons on failure) and quantize it.

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
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starcoder_ls.recipe.atomic import atomic_path
from starcoder_ls.recipe.errors import RecipeError

if TYPE_CHECKING:
    from llama_cpp import Llama

# Name -> llama.cpp ``LLAMA_FTYPE_*`` constant name (resolved lazily: llama_cpp is heavy).
QUANT_TYPES: dict[str, str] = {
    "F16": "LLAMA_FTYPE_MOSTLY_F16",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
}


GGUF_MAGIC = b"GGUF"


def check_gguf_file(path: str | Path) -> Path:
    """Reject a missing or non-GGUF file before llama.cpp does, with a message that says which."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"GGUF file not found: {path}")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise RecipeError(
            f"{path} is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r}); "
            "convert a Hugging Face folder with `starcoder-ls recipe export --gguf-out`"
        )
    return path


class LlamaLog:
    """What llama.cpp logged: llama-cpp-python throws its reasons away when not verbose."""

    ERROR = 4  # ggml_log_level: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5
    CONT = 5

    def __init__(self) -> None:
        self.lines: list[tuple[int, str]] = []

    def add(self, level: int, text: str) -> None:
        if level == self.CONT and self.lines:
            level = self.lines[-1][0]  # a continuation keeps the level of the line it extends
        self.lines.append((level, text))

    def reason(self) -> str:
        """The error lines, which say why a load or a quantization failed."""
        text = "".join(t for level, t in self.lines if level == self.ERROR)
        return " ".join(text.split())


@contextlib.contextmanager
def llama_log_capture(*, forward: bool = False) -> Iterator[LlamaLog]:
    """Route llama.cpp's log into a ``LlamaLog`` (and on to llama-cpp-python's when ``forward``)."""
    import ctypes

    from starcoder_ls.backends.cpu_select import import_llama_cpp

    llama_cpp = import_llama_cpp()
    from llama_cpp import _logger

    log = LlamaLog()

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        log.add(level, text.decode("utf-8", "replace"))
        if forward:
            _logger.llama_log_callback(level, text, user_data)

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    try:
        yield log
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def load_gguf(path: str | Path, **kwargs: Any) -> Llama:
    """Open a GGUF in llama.cpp (``verbose=False`` unless given), with a ``RecipeError`` that
    says why when it cannot: llama-cpp-python itself only raises a bare ``ValueError``."""
    path = check_gguf_file(path)
    from starcoder_ls.backends.cpu_select import import_llama_cpp

    llama_cpp = import_llama_cpp()

    kwargs.setdefault("verbose", False)
    with llama_log_capture(forward=bool(kwargs["verbose"])) as log:
        try:
            return llama_cpp.Llama(model_path=str(path), **kwargs)
        except ValueError as exc:
            reason = log.reason() or str(exc)
            raise RecipeError(f"llama.cpp cannot load {path}: {reason}") from exc


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
