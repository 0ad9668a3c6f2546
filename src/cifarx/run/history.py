"""A train run's epochs on disk: history.csv and the epochs each .keras checkpoint holds, kept in
agreement for a resume (``cifarx.run.rundir`` re-exports all of it)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from cifarx.errors import RunError
from cifarx.run.atomic_io import write_bytes_atomic
from cifarx.run.layout import EPOCH_RECORD


def read_history(path: Path) -> dict[str, list[float]]:
    """A run's history.csv as columns ({} when there is none). ``epoch`` is 1-based, as people
    count (and as ``best_epoch``, the console, the curves and MLflow's steps do), also for a run
    recorded before cifarx wrote it so: Keras' CSVLogger counts from 0, and a file whose first
    row is epoch 0 is read one up."""
    path = Path(path)
    if not path.exists():
        return {}
    with path.open() as f:
        rows = list(csv.DictReader(f))
    # Keras' CSVLogger writes "NA" for val_* columns it adds when a run has no validation split.
    columns = {k: [float(r[k]) for r in rows if r.get(k) not in (None, "", "NA")] for k in (rows[0] if rows else {})}
    if columns.get("epoch") and columns["epoch"][0] == 0:  # written 0-based (by cifarx before 1-based epochs)
        columns["epoch"] = [e + 1 for e in columns["epoch"]]
    return {k: v for k, v in columns.items() if v}


def one_based(lines: list[str]) -> list[str]:
    """history.csv's lines with a 0-based ``epoch`` column (a run recorded before cifarx counted
    epochs from 1) renumbered from 1; the lines as they are otherwise. Only the first field of
    each row changes (CSVLogger writes ``epoch`` first), so every other value stays byte for byte."""
    if len(lines) < 2 or lines[0].split(",", 1)[0].strip() != "epoch" or lines[1].split(",", 1)[0].strip() != "0":
        return lines
    out = [lines[0]]
    for line in lines[1:]:
        first, sep, rest = line.partition(",")
        out.append(f"{int(first) + 1}{sep}{rest}" if first.strip().isdigit() else line)
    return out


def reconcile_history(run: Path, write: bool = True) -> int:
    """The epochs a train run can resume from: those ``last.keras`` holds. history.csv rows past
    them (written before a kill or a full disk stopped the checkpoint) are dropped, when
    ``write``, so the resumed run retrains exactly those epochs; a checkpoint ahead of its
    history cannot be resumed exactly and is refused.

    Epoch numbers: a run recorded before cifarx counted epochs from 1 has a 0-based ``epoch``
    column. Counting uses rows only, so it reads right either way; and when ``write`` (a resume
    that goes ahead: the run directory is cifarx's own) the old column is rewritten 1-based
    (:func:`one_based`), so the rows the resumed run appends, 1-based, never make a mixed file."""
    run = Path(run)
    history = run / "history.csv"
    lines = history.read_text().splitlines(keepends=True) if history.exists() else []
    rows = max(len(lines) - 1, 0)
    held = checkpoint_epochs(run / "last.keras")
    kept = rows if held is None else held  # None: a checkpoint from before cifarx recorded its epochs
    if held is not None and held > rows:
        raise RunError(f"run '{run}': last.keras holds {held} epochs but history.csv has only {rows}; "
                       "it cannot be resumed exactly (start a new run)")
    if held is not None and held < rows and write:
        import logging

        logging.getLogger("cifarx").warning(
            "history.csv had %d epochs but last.keras holds %d (stopped between the two writes); "
            "epochs after %d are trained again", rows, held, held)
        best = checkpoint_epochs(run / "best.keras") if (run / "best.keras").exists() else None
        if best is not None and best > held:  # from an epoch that is trained again: not the run's best
            (run / "best.keras").unlink()
    if write and lines:
        fixed = one_based(lines[:kept + 1])
        if fixed != lines:
            write_bytes_atomic(history, "".join(fixed).encode())
    return kept


def _epoch_record(path: Path) -> dict:
    """The epoch record inside a cifarx ``.keras`` checkpoint ({} when it has none)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            record = json.loads(zf.read(EPOCH_RECORD))
    except (KeyError, OSError, ValueError, zipfile.BadZipFile):
        return {}
    return record if isinstance(record, dict) else {}


def checkpoint_stopped(path: Path) -> bool:
    """Whether early stopping ended training at the epoch a ``.keras`` checkpoint holds."""
    return bool(_epoch_record(path).get("stopped"))


def checkpoint_epochs(path: Path) -> int | None:
    """How many epochs a cifarx ``.keras`` checkpoint holds (None: no record in it)."""
    try:
        return int(_epoch_record(path)["epochs"])
    except (KeyError, TypeError, ValueError):
        return None
