"""Command-line flags from a stage's config dataclass: one ``--kebab-name`` per field, with the
field's default, so a new setting is a field and nothing else."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

_SKIPPED = ("progress",)
"""Every stage spells this one ``--no-progress``."""


def add_config_flags(
    parser: argparse.ArgumentParser, defaults: Any, *, skip: tuple[str, ...] = ()
) -> None:
    """Flags for the fields of ``defaults`` (an instance holding the defaults), except ``skip``
    (fields the stage declares itself, such as positional arguments) and ``progress``."""
    for f in fields(defaults):
        if f.name in skip or f.name in _SKIPPED:
            continue
        value = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
            continue
        kind = type(value) if value is not None else int
        parser.add_argument(flag, type=kind, default=value, help=f"default: {value}")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(cls: type, args: argparse.Namespace, **given: Any) -> Any:
    """``cls`` built from parsed flags (``given`` overrides them)."""
    values = {
        f.name: getattr(args, f.name)
        for f in fields(cls)
        if f.name not in _SKIPPED and hasattr(args, f.name)
    }
    return cls(**{**values, **given, "progress": not args.no_progress})
