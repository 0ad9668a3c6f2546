"""Terminal output: rich tables and progress on a terminal, plain lines in logs and CI."""

from __future__ import annotations

import logging
import os
import sys
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

log = logging.getLogger("cifarx")


def is_interactive() -> bool:
    """True when a person is watching: stderr is a TTY and we are not in CI."""
    return sys.stderr.isatty() and not os.environ.get("CI")


_ERR: Console | None = None


def err_console() -> Console:
    """The one console for everything a run prints on stderr: log lines and live progress share
    it, so rich keeps a line from ever landing inside a bar (and a bar never garbles a line).
    Off a terminal it prints plain lines, unwrapped."""
    global _ERR
    if _ERR is None:
        _ERR = Console(stderr=True, highlight=False, soft_wrap=True)
    return _ERR


_LIVE: weakref.WeakSet = weakref.WeakSet()  # live displays (progress bars) that may be on screen


ECHO_MARGIN = 3  # columns a live line leaves free: the terminal echoes "^C" after it on Ctrl-C


def live_bar(*columns, **kwargs):
    """A rich ``Progress`` on :func:`err_console` whose lines stay ECHO_MARGIN columns short of the
    terminal's width: a line that filled it would let the echoed "^C" wrap onto a new line, and
    erasing the bar would then erase that line instead, leaving the bar on screen."""
    from rich.constrain import Constrain
    from rich.progress import Progress

    class _Narrow(Progress):
        def get_renderable(self):
            return Constrain(super().get_renderable(), width=max(20, err_console().width - ECHO_MARGIN))

    return _Narrow(*columns, console=err_console(), **kwargs)


def track_live(live) -> None:
    """Register a rich ``Progress`` (or ``Live``) that :func:`close_live` stops if the work is cut short."""
    _LIVE.add(live)


def close_live() -> None:
    """Stop every live display still drawn (Ctrl-C skips the code that stops them): a transient
    bar is erased and the cursor is back at the start of a clean line, so what is printed next
    does not land at the end of a bar, nor the shell prompt after the process exits."""
    for live in list(_LIVE):
        try:
            if getattr(live, "live", live).is_started:  # (a stopped Progress would print a blank line off a terminal)
                live.stop()
        except Exception:
            pass
    _LIVE.clear()


class ConsoleHandler(logging.Handler):
    """A logging handler that prints through :func:`err_console` (Hydra's job logging uses it).
    A record logged with ``extra={"log_file_only": True}`` is left to the log file: its caller
    has printed it already."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "log_file_only", False):
            return
        try:
            out = err_console()
            if not out.is_terminal:  # a log, a pipe: whole lines
                out.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
                return
            if isinstance(record.msg, Fitted) and not record.args:
                record = logging.makeLogRecord({**record.__dict__, "msg": record.msg.fit(out.width)})
            out.print(wrap_words(self.format(record), out.width), markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


def wrap_words(text: str, width: int) -> str:
    """``text`` with each line too long for ``width`` columns broken at spaces, its later lines
    indented two more spaces: a terminal would break it mid-word. A word longer than the width (a
    long path) stays whole, on a line of its own, so it still copies as one."""
    import textwrap

    lines = []
    for line in text.split("\n"):
        if len(line) < width:
            lines.append(line)
            continue
        indent = line[:len(line) - len(line.lstrip())]
        lines += textwrap.wrap(line, width - 1, subsequent_indent=indent + "  ", break_long_words=False,
                               break_on_hyphens=False) or [line]
    return "\n".join(lines)


class RunLogHandler(logging.FileHandler):
    """The run's log file (``<run>/<command>.log``, Hydra's job logging uses it). A line the disk
    has no room for is left out of the file (the console shows it, and the run reports the full
    disk in one line) rather than logging's traceback on stderr for every line."""

    def handleError(self, record: logging.LogRecord) -> None:
        from cifarx.run.atomic_io import no_space

        if no_space(sys.exc_info()[1]) is None:
            super().handleError(record)


UNWRAPPED = 100_000  # the width of stdout off a terminal: a file or a pipe gets each line whole


def console() -> Console:
    # Tables go to stdout; when it is not a terminal rich prints them without colour, never wrapped.
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else UNWRAPPED)


class Fitted:
    """A log message with shorter forms, longest first: the log file records the first; a terminal
    shows the longest that fits its width (see ConsoleHandler), so a line is shortened, never wrapped."""

    def __init__(self, *forms: str):
        self.forms = forms

    def __str__(self) -> str:
        return self.forms[0]

    def fit(self, width: int) -> str:
        # shorter than the width: a line that fills it exactly makes some terminals wrap the next one
        return next((form for form in self.forms if len(form) < width), self.forms[-1])


SHORT_NAMES = {"accuracy": "acc", "val_accuracy": "val_acc"}


def epoch_line(head: str, logs: dict, lr: float, seconds: float) -> Fitted:
    """An epoch's one line (``head``: "epoch 3/10"): every name whole and four digits where the
    terminal has room (160 columns), else shorter names and three digits (80), else without the
    learning rate, then without the time."""
    keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in logs]
    full = [head, *(f"{k} {float(logs[k]):.4f}" for k in keys), f"lr {lr:.2e}", f"{seconds:.1f}s"]
    brief = [head, *(f"{SHORT_NAMES.get(k, k)} {float(logs[k]):.3f}" for k in keys)]
    timed = [*brief, f"lr {lr:.0e}", f"{seconds:.1f}s"]
    return Fitted("  ".join(full), "  ".join(timed), " ".join(timed), " ".join(timed[:-2] + timed[-1:]),
                  " ".join(brief))


def start_line(command: str, loading: str) -> None:
    """The first thing a person sees, before the seconds of heavy imports: what is loading."""
    if is_interactive():
        err_console().print(f"cifarx {command}: loading {loading} ...", markup=False, highlight=False,
                            soft_wrap=True)


LOG_EVERY_SECONDS = 10.0  # off a terminal, long work logs how far it got this often


def progress_steps(items, description: str, sizes: Sequence[int] | None = None):
    """Iterate ``items`` with a transient progress bar when a person is watching; in logs, a
    line every LOG_EVERY_SECONDS saying how far it got. ``sizes``: how much of the work each item
    is (images, rows: what the bar counts); one each by default."""
    items = list(items)
    sizes = [1] * len(items) if sizes is None else list(sizes)
    if len(items) < 2:  # one step: nothing to count
        yield from items
        return
    with progress(description, sum(sizes)) as advance:
        for item, size in zip(items, sizes):
            yield item
            advance(size)


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """Work that counts to ``total``; yields ``advance(n)``. On a terminal, a transient bar (gone
    when the work ends, leaving the lines around it); in logs, a line every LOG_EVERY_SECONDS."""
    if not is_interactive():
        done, last = [0], [time.monotonic()]

        def log_now_and_then(n: int = 1) -> None:
            done[0] += n
            if time.monotonic() - last[0] >= LOG_EVERY_SECONDS and done[0] < total:
                log.info("%s: %d/%d", description, done[0], total)
                last[0] = time.monotonic()

        yield log_now_and_then
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with live_bar(*columns, transient=True) as bar:
        track_live(bar)  # a Ctrl-C in the caller's loop leaves a generator suspended, its bar drawn
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


@contextmanager
def working(description: str) -> Iterator[None]:
    """Work that cannot count its steps (a scikit-learn fit, a cache write). On a terminal, a
    transient spinner with the time so far; in logs, a line every LOG_EVERY_SECONDS."""
    if not is_interactive():
        import threading

        start, stop = time.monotonic(), threading.Event()

        def now_and_then() -> None:
            while not stop.wait(LOG_EVERY_SECONDS):
                log.info("%s: %.0fs so far", description, time.monotonic() - start)

        ticker = threading.Thread(target=now_and_then, name="cifarx-working", daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()
        return
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    with live_bar(SpinnerColumn(), TextColumn(description), TimeElapsedColumn(),
                  transient=True) as spinner:
        track_live(spinner)
        spinner.add_task(description, total=None)
        yield


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    table = Table()
    for i, col in enumerate(columns):  # the first column (names, paths) folds rather than losing its end to "…"
        table.add_column(str(col), justify="left" if i == 0 else "right", overflow="fold" if i == 0 else "ellipsis")
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    return table


def _print(out: Console, title: str, table: Table) -> None:
    # The title is a line of its own: as a table's title rich would wrap it at the table's width.
    out.print(Text(title, style="table.title"))
    out.print(table)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    _print(console(), title, _table(columns, rows))


def print_matrix(title: str, names: Sequence[str], matrix: Sequence[Sequence[int]]) -> None:
    """A square table of counts headed by the full names; where those do not fit the terminal,
    the columns are numbered and each row's name carries its number (the legend)."""
    out = console()
    table = _table(["", *names], [[name, *row] for name, row in zip(names, matrix)])
    if out.measure(table, options=out.options.update_width(UNWRAPPED)).maximum > out.width:  # its unshrunk width
        table = _table(["", *(str(i) for i in range(len(names)))],
                       [[f"{i} {name}", *row] for i, (name, row) in enumerate(zip(names, matrix))])
        table.caption, table.caption_justify = "columns: the classes numbered as the rows", "left"
    _print(out, title, table)


def _fmt(value: Any) -> str:
    """A cell as text, never as rich markup: an override such as ``tags=[a,b]`` shows as typed."""
    from rich.markup import escape

    if isinstance(value, float):
        return f"{value:.4f}"
    return escape(str(value))
