"""The VS Code extension (editors/vscode) against the server: its settings mirror
:func:`starcoder_ls.settings.schema` one to one, its commands are the ones extension.ts registers,
and its own TypeScript tests pass (when npm is available)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from starcoder_ls import settings as S

ROOT = Path(__file__).resolve().parents[2]
VSCODE = ROOT / "editors" / "vscode"
PACKAGE = json.loads((VSCODE / "package.json").read_text(encoding="utf-8"))
PROPS: dict[str, dict[str, Any]] = PACKAGE["contributes"]["configuration"]["properties"]
CLIENT_ONLY = {"starcoder.enable"}
SERVER_COMMANDS = {
    "starcoder.accept",
    "starcoder.reject",
    "starcoder.stats",
    "starcoder.status",
    "starcoder.lastPrompt",
}


def _leaves(obj: Any, prefix: str = "starcoder.") -> dict[str, Any]:
    """Flattened server settings: key -> the dataclass default (Python type kept)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = prefix + S._camel(f.name)
        if dataclasses.is_dataclass(value):
            out.update(_leaves(value, key + "."))
        else:
            out[key] = value
    return out


def _flatten_json(obj: dict[str, Any], prefix: str = "starcoder.") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, dict) and key != "languages":
            out.update(_flatten_json(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (tuple, list)):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise AssertionError(f"unexpected default {value!r}")


def test_configuration_mirrors_server_schema_one_to_one() -> None:
    server = _flatten_json(S.schema())
    typed = _leaves(S.Settings())
    assert set(server) == set(typed)
    extra = set(PROPS) - set(server)
    assert all(k in CLIENT_ONLY or k.startswith("starcoder.server.") for k in extra), extra
    missing = set(server) - set(PROPS)
    assert not missing, f"server settings missing from package.json: {sorted(missing)}"
    for key, default in server.items():
        prop = PROPS[key]
        assert prop["default"] == default, key
        assert prop["type"] == _json_type(typed[key]), key
        assert prop.get("description") or prop.get("markdownDescription"), key
        if prop["type"] == "array":
            assert prop["items"] == {"type": "string"}, key


def test_configuration_enums_and_ranges_match_validation() -> None:
    for key, prop in PROPS.items():
        name = S._snake(key.rsplit(".", 1)[-1])
        if name in S._CHOICES:
            assert prop["enum"] == list(S._CHOICES[name]), key
        if name in S._RANGES and not key.startswith("starcoder.server."):
            assert (prop["minimum"], prop["maximum"]) == S._RANGES[name], key
        if "default" in prop and "enum" in prop:
            assert prop["default"] in prop["enum"], key


def test_client_only_settings() -> None:
    assert PROPS["starcoder.enable"]["default"] is True
    assert PROPS["starcoder.server.command"]["default"] == "starcoder-ls"
    assert PROPS["starcoder.server.args"]["default"] == []
    assert PROPS["starcoder.server.pythonPath"]["default"] == ""


def test_package_json_is_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location(
        "vscode_gen_configuration", VSCODE / "scripts" / "gen_configuration.py"
    )
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    current = (VSCODE / "package.json").read_text(encoding="utf-8")
    assert gen.dumps(gen.render(json.loads(current))) == current, (
        "package.json is stale: run .venv/bin/python editors/vscode/scripts/gen_configuration.py"
    )


def test_manifest_basics() -> None:
    assert PACKAGE["name"] == "starcoder-ls"
    assert PACKAGE["publisher"] == "starcoder-ls"
    assert PACKAGE["engines"]["vscode"] == "^1.90.0"
    assert PACKAGE["main"] == "./dist/extension.js"
    assert PACKAGE["activationEvents"]


def test_declared_commands_are_registered() -> None:
    declared = {c["command"] for c in PACKAGE["contributes"]["commands"]}
    src = (VSCODE / "src" / "commands.ts").read_text(encoding="utf-8")
    ids = dict(re.findall(r'^\s*(\w+): "(starcoder-ls\.\w+)",$', src, re.M))
    ext = (VSCODE / "src" / "extension.ts").read_text(encoding="utf-8")
    registered = {ids[name] for name in re.findall(r"registerCommand\(COMMANDS\.(\w+)", ext)}
    registered |= set(re.findall(r'registerCommand\("([\w.-]+)"', ext))
    assert declared == registered
    assert not declared & SERVER_COMMANDS, "would collide with vscode-languageclient's commands"
    assert all(c.startswith("starcoder-ls.") for c in declared)


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not on PATH (Node 20+ needed)")
def test_npm_test() -> None:
    """`npm ci` then `npm test` (typecheck + unit tests) in editors/vscode."""
    env = {**os.environ, "CI": "1", "NO_COLOR": "1"}
    if not (VSCODE / "node_modules" / ".package-lock.json").exists():
        ci = subprocess.run(
            ["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund"],
            cwd=VSCODE,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if ci.returncode != 0:
            pytest.skip(f"npm ci failed (offline?): {ci.stderr[-400:]}")
    res = subprocess.run(
        ["npm", "test"], cwd=VSCODE, env=env, capture_output=True, text=True, timeout=90
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
