"""A train run's epochs on disk: history.csv and the epochs each .keras checkpoint holds, kept in
agreement for a resume (``cifarx.artifacts`` re-exports all of it)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from cifarx.atomic_io import write_bytes_atomic
from cifarx.errors import RunError
from cifarx.run_layout import EPOCH_RECORD


def read_history(path: Path) -> dict[str, list[float]]:
    """A run's history.csv as columns ({} when there is none)."""
    path = Path(path)
    if not path.exists():
        return {}
    with path.open() as f:
        rows = list(csv.DictReader(f))
    # Keras' CSVLogger writes "NA" for val_* columns it adds when a run has no validation split.
    columns = {k: [float(r[k]) for r in rows if r.get(k) not in (None, "", "NA")] for k in (rows[0] if rows else {})}
    return {k: v for k, v in columns.items() if v}


def reconcile_history(run: Path, write: bool = True) -> int:
    """The epochs a train run can resume from: those ``last.keras`` holds. history.csv rows past
    them (written before a kill or a full disk stopped the checkpoint) are dropped, when
    ``write``, so the resumed run retrains exactly those epochs; a checkpoint ahead of its
    history cannot be resumed exactly and is refused."""
    run = Path(run)
    history = run / "history.csv"
    lines = history.read_text().splitlines(keepends=True) if history.exists() else []
    rows = max(len(lines) - 1, 0)
    held = checkpoint_epochs(run / "last.keras")
    if held is None:  # a checkpoint from before cifarx recorded its epochs
        return rows
    if held > rows:
        raise RunError(f"run '{run}': last.keras holds {held} epochs but history.csv has only {rows}; "
                       "it cannot be resumed exactly (start a new run)")
    if held < rows and write:
        import logging

        logging.getLogger("cifarx").warning(
            "history.csv had %d epochs but last.keras holds %d (stopped between the two writes); "
            "epochs after %d are trained again", rows, held, held)
        write_bytes_atomic(history, "".join(lines[:held + 1]).encode())
        best = checkpoint_epochs(run / "best.keras") if (run / "best.keras").exists() else None
        if best is not None and best > held:  # from an epoch that is trained again: not the run's best
            (run / "best.keras").unlink()
    return held


def checkpoint_stopped(path: Path) -> bool:
    """Whether early stopping ended training at the epoch a ``.keras`` checkpoint holds."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return bool(json.loads(zf.read(EPOCH_RECORD)).get("stopped"))
    except (KeyError, OSError, ValueError, AttributeError, zipfile.BadZipFile):
        return False


def checkpoint_epochs(path: Path) -> int | None:
    """How many epochs a cifarx ``.keras`` checkpoint holds (None: no record in it)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return int(json.loads(zf.read(EPOCH_RECORD))["epochs"])
    except (KeyError, OSError, ValueError, zipfile.BadZipFile):
        return None
