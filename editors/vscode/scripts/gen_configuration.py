"""Write ``contributes.configuration`` of editors/vscode/package.json from the server's schema.

The server's :func:`starcoder_ls.settings.schema` is the one source of truth: every server
setting becomes ``starcoder.<camelKey>`` (nested dataclasses flattened: ``starcoder.cache.enabled``)
with the same default, a JSON type derived from the Python default, the attribute docstring from
``starcoder_ls/settings.py`` as its description and ``_CHOICES`` / ``_RANGES`` as enum / bounds.
Client-only settings live under ``starcoder.server.*`` plus ``starcoder.enable``.

Usage (from the repository root or editors/vscode):

    .venv/bin/python editors/vscode/scripts/gen_configuration.py          # rewrite package.json
    .venv/bin/python editors/vscode/scripts/gen_configuration.py --check  # exit 1 if stale
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import itertools
import json
import re
import sys
from pathlib import Path
from typing import Any

VSCODE_DIR = Path(__file__).resolve().parents[1]
REPO = VSCODE_DIR.parents[1]
PACKAGE_JSON = VSCODE_DIR / "package.json"
SETTINGS_PY = REPO / "starcoder_ls" / "settings.py"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from starcoder_ls import settings as S  # noqa: E402

# Settings the server module leaves undocumented: a short description so the Settings UI is not
# blank. Keyed by the flattened camelCase key (without the "starcoder." prefix).
FALLBACK_DESCRIPTIONS: dict[str, str] = {
    "backend": "Where completions come from: a local model (llamacpp, transformers) or a remote "
    "server (openai, tgi, ollama, llamacpp-server, huggingface, starcoder-ls).",
    "maxTokens": "Most tokens generated per completion.",
    "temperature": "Sampling temperature; 0 is greedy (deterministic).",
    "topP": "Nucleus sampling probability mass.",
    "crossFile": "Add context from other files of the workspace to the prompt.",
    "retries": "Retries of a failed remote backend request.",
    "cache.enabled": "Reuse completions for an identical prompt.",
    "cache.memoryEntries": "Completions kept in the in-memory cache.",
    "cache.diskSizeMb": "Size cap of the on-disk cache in MB.",
    "tlsVerify": "Verify TLS certificates of a remote backend.",
    "caBundle": "A CA bundle file for a remote backend's TLS certificate (empty: system store).",
}

# Client-only settings: the only keys allowed besides the server's.
CLIENT_SETTINGS: dict[str, dict[str, Any]] = {
    "starcoder.enable": {
        "type": "boolean",
        "default": True,
        "description": "Show inline completions (the `StarCoder: Toggle` command flips this). "
        "The server keeps running while disabled.",
    },
    "starcoder.server.command": {
        "type": "string",
        "default": "starcoder-ls",
        "scope": "machine-overridable",
        "description": "The language server executable (install it with "
        "`pip install starcoder-ls`). Ignored when `starcoder.server.pythonPath` is set.",
    },
    "starcoder.server.args": {
        "type": "array",
        "items": {"type": "string"},
        "default": [],
        "scope": "machine-overridable",
        "description": "Extra arguments for the language server (e.g. `--log-file`).",
    },
    "starcoder.server.pythonPath": {
        "type": "string",
        "default": "",
        "scope": "machine-overridable",
        "description": "When set, run the server as `<pythonPath> -m starcoder_ls` (a virtual "
        "environment's python) instead of `starcoder.server.command`.",
    },
}

# Ignored when they come from the settings of an untrusted workspace: they decide which program
# runs, where the code goes and which secret goes with it.
RESTRICTED = [
    "starcoder.server.command",
    "starcoder.server.args",
    "starcoder.server.pythonPath",
    "starcoder.url",
    "starcoder.apiKeyEnv",
    "starcoder.model",
    "starcoder.caBundle",
    "starcoder.tlsVerify",
    "starcoder.cache.diskPath",
]


def attribute_docs(path: Path = SETTINGS_PY) -> dict[str, dict[str, str]]:
    """class name -> field name -> the string literal right after the field's annotation."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        docs: dict[str, str] = {}
        for stmt, nxt in itertools.pairwise(node.body):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[stmt.target.id] = nxt.value.value
        out[node.name] = docs
    return out


def _clean(doc: str) -> str:
    text = " ".join(doc.split())
    return re.sub(r"``(.+?)``", r"`\1`", text)


def _json_type(default: Any) -> dict[str, Any]:
    if isinstance(default, bool):
        return {"type": "boolean"}
    if isinstance(default, int):
        return {"type": "integer"}
    if isinstance(default, float):
        return {"type": "number"}
    if isinstance(default, str):
        return {"type": "string"}
    if isinstance(default, (tuple, list)):
        return {"type": "array", "items": {"type": "string"}}
    if isinstance(default, dict):
        return {"type": "object", "additionalProperties": {"type": "boolean"}}
    raise TypeError(f"no JSON type for {default!r}")


def _number(value: float, integer: bool) -> int | float:
    return int(value) if integer or float(value).is_integer() else value


def server_properties() -> dict[str, dict[str, Any]]:
    docs = attribute_docs()
    props: dict[str, dict[str, Any]] = {}

    def walk(obj: Any, prefix: str) -> None:
        cls_docs = docs.get(type(obj).__name__, {})
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            key = prefix + S._camel(f.name)
            if dataclasses.is_dataclass(value):
                walk(value, key + ".")
                continue
            prop = _json_type(value)
            default = S._to_json(obj)[S._camel(f.name)]
            prop["default"] = default
            doc = cls_docs.get(f.name) or FALLBACK_DESCRIPTIONS.get(key)
            if not doc:
                raise SystemExit(f"no description for setting {key!r}: document it in settings.py")
            prop["description"] = _clean(doc)
            if f.name in S._CHOICES:
                prop["enum"] = list(S._CHOICES[f.name])
            if f.name == "family":
                from starcoder_ls.prompt.templates import FAMILIES

                prop["enum"] = ["auto", *FAMILIES]
            if f.name in S._RANGES:
                lo, hi = S._RANGES[f.name]
                integer = prop["type"] == "integer"
                prop["minimum"] = _number(lo, integer)
                prop["maximum"] = _number(hi, integer)
            props["starcoder." + key] = prop

    walk(S.Settings(), "")
    return props


def configuration() -> dict[str, Any]:
    props: dict[str, dict[str, Any]] = {}
    for key, prop in {**CLIENT_SETTINGS, **server_properties()}.items():
        props[key] = {**prop, "order": len(props)}
    return {"title": "StarCoder", "properties": props}


def render(package: dict[str, Any]) -> dict[str, Any]:
    package = dict(package)
    contributes = dict(package.get("contributes", {}))
    contributes["configuration"] = configuration()
    package["contributes"] = contributes
    caps = dict(package.get("capabilities", {}))
    caps["untrustedWorkspaces"] = {
        "supported": "limited",
        "description": "In an untrusted workspace, its settings cannot change the server "
        "command, the backend URL, the API key variable or the model path.",
        "restrictedConfigurations": RESTRICTED,
    }
    package["capabilities"] = caps
    return package


def _js(value: Any) -> Any:
    """As JavaScript's JSON.stringify writes it (``0.0`` -> ``0``), so npm rewriting
    package.json (npm install) leaves it unchanged."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _js(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_js(v) for v in value]
    return value


def dumps(package: dict[str, Any]) -> str:
    return json.dumps(_js(package), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if package.json is stale")
    args = parser.parse_args(argv)
    current = PACKAGE_JSON.read_text(encoding="utf-8")
    wanted = dumps(render(json.loads(current)))
    if args.check:
        if current != wanted:
            print(f"{PACKAGE_JSON} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        PACKAGE_JSON.write_text(wanted, encoding="utf-8")
        print(f"wrote {PACKAGE_JSON}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
