"""Progress bars for long commands: the recipe stages and the evaluations (rich, on stderr;
silent when disabled or not a terminal)."""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(enabled: bool = True, *extra_columns: Any) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not (enabled and sys.stderr.isatty()),
        transient=False,
    )
