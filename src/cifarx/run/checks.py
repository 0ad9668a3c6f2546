"""An existing run directory checked before a command uses it: its effective status, its .keras
files, and how to resume it (``cifarx.run.rundir`` re-exports all of it)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cifarx.errors import RunError
from cifarx.run.layout import CONFIG_FILE, STATUS_FILE, STOPPED
from cifarx.run.lock import is_locked, lock_holder


def effective_status(run: Path, record: dict[str, Any]) -> str | None:
    """The recorded status, except that 'running' without a live owner reads ``stopped``."""
    status = record.get("status")
    if status == "running" and not is_locked(run):
        return STOPPED
    return status


def resume_hint(run: Path) -> str:
    """The command that continues ``run``, copy-pasteable in a POSIX shell whatever its name."""
    import shlex

    return f"cifarx train resume={shlex.quote(str(run))}"


def check_keras_file(path: Path, what: str | None = None) -> None:
    """RunError unless ``path`` is a complete .keras archive (a truncated copy is not)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        raise RunError(f"{what or path} is damaged or not a Keras model file (not a complete .keras "
                       "archive: truncated copy or full disk?); restore it or train again")


def require_run(path: str | os.PathLike, kind: str, needs: tuple[str, ...] = (),
                statuses: tuple[str, ...] = ("completed",)) -> Path:
    """Check that ``path`` is a run of command ``kind``, in one of ``statuses``, holding ``needs``."""
    run = Path(path).expanduser().resolve()
    if not run.is_dir():
        raise RunError(f"run directory '{path}' does not exist")
    config = run / CONFIG_FILE
    status = run / STATUS_FILE
    if not config.exists() or not status.exists():
        raise RunError(f"'{path}' is not a cifarx run directory (no {CONFIG_FILE} / {STATUS_FILE})")
    try:
        record = json.loads(status.read_text())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise RunError(f"run '{path}' has a damaged {STATUS_FILE} ({type(exc).__name__}); "
                       "it cannot be trusted: use another run") from None
    if record.get("command") != kind:
        raise RunError(f"'{path}' is a '{record.get('command')}' run; a '{kind}' run is needed")
    state = effective_status(run, record)
    if state == "running" and "running" not in statuses:
        raise RunError(f"run '{path}' is still running{lock_holder(run)}; wait for it to finish")
    if state == STOPPED and "running" not in statuses:
        hint = f"; finish it with: {resume_hint(run)}" if kind == "train" else ""
        raise RunError(f"run '{path}' stopped without finishing (process gone){hint}")
    if record.get("status") not in statuses:
        finish = kind == "train" and record.get("status") in ("interrupted", "failed")
        raise RunError(f"run '{path}' is {record.get('status')}, not {' or '.join(statuses)}"
                       + (f" ({record['error']})" if record.get("error") else "")
                       + (f"; finish it with: {resume_hint(run)}" if finish else ""))
    for name in needs:
        if not (run / name).exists():
            raise RunError(f"run '{path}' has no {name}")
        if name.endswith(".keras"):
            check_keras_file(run / name, f"'{run / name}'")
    return run
