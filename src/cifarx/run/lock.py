"""Ownership: one process per run directory (``cifarx.run.rundir`` re-exports all of it)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from cifarx.errors import RunError
from cifarx.run.atomic_io import FILE_MODE
from cifarx.run.layout import LOCK_FILE

# An advisory lock (flock) on <run>/.cifarx.lock, held for as long as the run works. The kernel
# drops it when the process dies, however it dies, so a lock left by a killed run is never stale.

_HELD: dict[Path, int] = {}  # run directory -> the open lock file this process holds


def lock_run_dir(path: str | os.PathLike) -> None:
    """Take ``path``'s lock for this process (a no-op when it already holds it); RunError when
    another live process holds it. Creates nothing but the directory's lock file."""
    path = Path(path).resolve()
    if path in _HELD:
        return
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            raise
        raise RunError(f"run directory '{path}' is in use by another cifarx process{lock_holder(path)}; "
                       "wait for it to finish or choose another hydra.run.dir") from None
    _HELD[path] = fd  # the lock file's content never changes: a refused resume leaves the run as it was


def unlock_run_dir(path: str | os.PathLike) -> None:
    fd = _HELD.pop(Path(path).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the lock


def lock_holder(path: Path) -> str:
    """' (pid N)' of the process holding ``path``'s lock, from the kernel's table (Linux), or ''."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        inode = os.stat(path / LOCK_FILE).st_ino
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if "FLOCK" in fields and fields[fields.index("FLOCK") + 4].rsplit(":", 1)[1] == str(inode):
                return f" (pid {int(fields[fields.index('FLOCK') + 3])})"
    return ""


def is_locked(path: str | os.PathLike) -> bool:
    """Whether a live process (this one included) holds ``path``'s lock."""
    path = Path(path).resolve()
    if path in _HELD:
        return True
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)
