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


_ERR: Console | None = None


def in_sweep() -> bool:
    """True inside a job of a Hydra multirun (a sweep)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def err_console() -> Console:
    """The one console for everything a run prints on stderr: log lines and live progress share
    it, so rich keeps a line from ever landing inside a bar (and a bar never garbles a line).
    Off a terminal it prints plain lines, unwrapped."""
    global _ERR
    if _ERR is None:
        _ERR = Console(stderr=True, highlight=False, soft_wrap=True)
    return _ERR


class ConsoleHandler(logging.Handler):
    """A logging handler that prints through :func:`err_console` (Hydra's job logging uses it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            err_console().print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


class RunLogHandler(logging.FileHandler):
    """The run's log file (``<run>/<command>.log``, Hydra's job logging uses it). A line the disk
    has no room for is left out of the file (the console shows it, and the run reports the full
    disk in one line) rather than logging's traceback on stderr for every line."""

    def handleError(self, record: logging.LogRecord) -> None:
        from cifarx.atomic_io import no_space

        if no_space(sys.exc_info()[1]) is None:
            super().handleError(record)


def console() -> Console:
    # Tables go to stdout; when it is not a terminal rich prints them without colour.
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 120)


LOG_EVERY_SECONDS = 10.0  # off a terminal, long work logs how far it got this often


def progress_steps(items, description: str):
    """Iterate ``items`` with a transient progress bar when a person is watching; in logs, a
    line every LOG_EVERY_SECONDS saying how far it got."""
    import time

    items = list(items)
    if not is_interactive() or len(items) < 2:
        last = time.monotonic()
        for i, item in enumerate(items):
            yield item
            if time.monotonic() - last >= LOG_EVERY_SECONDS and i + 1 < len(items):
                log.info("%s: %d/%d", description, i + 1, len(items))
                last = time.monotonic()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console(), transient=True) as progress:
        task = progress.add_task(description, total=len(items))
        for item in items:
            yield item
            progress.advance(task)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):  # the first column (names, paths) folds rather than losing its end to "…"
        table.add_column(str(col), justify="left" if i == 0 else "right", overflow="fold" if i == 0 else "ellipsis")
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    console().print(table)


def _fmt(value: Any) -> str:
    """A cell as text, never as rich markup: an override such as ``tags=[a,b]`` shows as typed."""
    from rich.markup import escape

    if isinstance(value, float):
        return f"{value:.4f}"
    return escape(str(value))
