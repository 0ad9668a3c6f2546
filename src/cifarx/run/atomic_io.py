"""Files written atomically: to a temporary name in the same directory, renamed into place, so a
killed process never leaves a truncated file; and the JSON reader that names a damaged one
(``cifarx.run.rundir`` re-exports all of it)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cifarx.errors import RunError


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~current_umask()  # what open() would give; mkstemp alone makes files private


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def no_space(exc: BaseException | None) -> OSError | None:
    """The "disk full" (ENOSPC, or EDQUOT: over quota) error behind ``exc``, also when a library
    wrapped it (``raise ... from``), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return exc
        exc = exc.__cause__ if exc.__cause__ is not None else None if exc.__suppress_context__ else exc.__context__
    return None


def no_space_message(error: OSError, where: str | os.PathLike) -> str:
    """One line for a full disk: the file it stopped at (``where`` when the error names none)."""
    return f"no space left on device ({error.filename or where}); free space and run again"


def update_json_in_place(path: Path, update: dict[str, Any]) -> bool:
    """Update the small JSON file ``path`` where it lies, in the blocks it already has: for a
    status on a full disk, where not even a temporary beside it fits. Not atomic (one write of a
    few hundred bytes), so only for a record that would otherwise stay wrong. False if it failed."""
    try:
        data = (json.dumps({**read_json(path), **update}, indent=2, default=jsonable) + "\n").encode()
        if len(data) > os.stat(path).st_blocks * 512:  # it would need a new block: there is none
            return False
        fd = os.open(path, os.O_WRONLY)
        try:
            written = os.pwrite(fd, data, 0)
            os.ftruncate(fd, written)
        finally:
            os.close(fd)
        return written == len(data)
    except (OSError, RunError):
        return False


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_json_atomic(path: Path, obj: Any) -> Path:
    return write_bytes_atomic(path, (json.dumps(obj, indent=2, default=jsonable) + "\n").encode())


def jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_record(path: Path) -> dict[str, Any]:
    """A JSON record cifarx wrote, or {} when it is missing, damaged or not an object (for records
    that are best effort or rewritten whole: provenance, tracking, a status to compare)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read {path}: {exc}") from exc
