"""Terminal output: rich tables and progress on a terminal, plain lines in logs and CI."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

log = logging.getLogger("cifarx")


def is_interactive() -> bool:
    """True when a person is watching: stderr is a TTY and we are not in CI."""
    return sys.stderr.isatty() and not os.environ.get("CI")


def console() -> Console:
    # Tables go to stdout; when it is not a terminal rich prints them without colour.
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 120)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(str(col), justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    console().print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
