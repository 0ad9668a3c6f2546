"""Which run directories this process owns: cifarx writes only into a directory it made for this
run (or a run it is resuming), locked so no other process writes there at the same time."""

from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cifarx.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable


@dataclass(frozen=True)
class Claim:
    """A run directory this process has claimed (locked): whether it existed before the claim, and
    the folders above it made for this run (outputs/, outputs/train/ on a first run: by the claim,
    or by Hydra as :data:`MISSING_BEFORE_HYDRA` noted), deepest first: a run that leaves nothing
    removes them too, when they are still empty."""

    existed: bool
    made_parents: tuple[Path, ...] = ()


# Run directories this process has claimed, by resolved path.
CLAIMED: dict[Path, Claim] = {}
# The folders above Hydra's default run directory that did not exist before Hydra started (the CLI
# notes them): Hydra makes them with the run directory, so its claim cannot see they were new.
MISSING_BEFORE_HYDRA: list[Path] = []


def note_missing_folders(folder: str | os.PathLike) -> None:
    """Before Hydra makes a run directory under ``folder``: note which of ``folder`` and its
    parents do not exist yet, so a run that leaves nothing removes them again (if still empty)."""
    folder = Path(folder).resolve()
    MISSING_BEFORE_HYDRA[:] = list(itertools.takewhile(lambda p: not p.exists(), [folder, *folder.parents]))


def noted_above(path: Path, noted: list[Path] | None = None) -> tuple[Path, ...]:
    """The folders ``noted`` (by default :data:`MISSING_BEFORE_HYDRA`) that lie above ``path``:
    those made for it, deepest first."""
    path = Path(path).resolve()
    return tuple(p for p in (MISSING_BEFORE_HYDRA if noted is None else noted) if p in path.parents)


def hydra_files(run: Path, job_name: str) -> tuple[Path, ...]:
    """What Hydra itself writes into a run directory before the task starts."""
    hydra_dir = run / ".hydra"
    return (hydra_dir / "config.yaml", hydra_dir / "hydra.yaml", hydra_dir / "overrides.yaml", run / f"{job_name}.log")


def claim_run_dir(path: str | os.PathLike, resuming: bool = False, job_name: str | None = None) -> None:
    """Make ``path`` this process's run directory: lock it, and refuse a folder that already holds
    anything but Hydra's own files for this job (cifarx never writes into what it did not make).

    A resumed run's directory is a cifarx run by construction (validated separately); it is locked
    so a second process cannot resume or write into it at the same time.
    """
    from cifarx.errors import RunError
    from cifarx.run.rundir import LOCK_FILE, is_locked, lock_run_dir

    path = Path(path).resolve()  # as Hydra does: abspath, no '~' expansion
    noted = MISSING_BEFORE_HYDRA[:] if job_name is not None else []  # taken once: the note is for this claim
    MISSING_BEFORE_HYDRA.clear()
    if path in CLAIMED:
        return
    existed = path.exists()
    if existed and not path.is_dir():
        raise ConfigError(f"hydra.run.dir='{path}' is a file, not a directory; choose a directory")
    if existed and is_locked(path):
        from cifarx.run.rundir import lock_holder

        raise RunError(f"run directory '{path}' is in use by another cifarx process{lock_holder(path)}; "
                       "wait for it to finish or choose another hydra.run.dir")
    ours = set(hydra_files(path, job_name)) if job_name else set()

    def foreign() -> list[Path]:
        if resuming or not path.is_dir():
            return []
        return [p for p in sorted(path.rglob("*")) if p.is_file() and p.name != LOCK_FILE and p not in ours]

    def refuse(found: list[Path]):
        return ConfigError(f"hydra.run.dir='{path}' already holds files cifarx did not make in this run "
                           f"({len(found)}, e.g. '{found[0].relative_to(path)}'); cifarx never writes into "
                           "or deletes such a folder: choose a new or empty directory"
                           + (" (or resume=<run dir> to continue a train run)" if job_name in (None, "train") else ""))

    found = foreign()
    if found:
        raise refuse(found)
    if job_name is not None:  # a directory Hydra made: its parents are new if they were missing before Hydra
        made_parents = noted_above(path, noted)
    else:
        made_parents = tuple(itertools.takewhile(lambda parent: not parent.exists(), path.parents))
    try:
        path.mkdir(parents=True, exist_ok=True)
        lock_run_dir(path)
    except OSError as exc:  # a full disk: no room for the folder or its lock file
        from cifarx.run.atomic_io import no_space, no_space_message

        full = no_space(exc)
        if full is None:
            raise
        # What is there was made for this run: Hydra's files for this job (a folder holding
        # nothing else is one Hydra made for it), or nothing (a folder this call made).
        discard_unstarted(path, job_name, made=not existed or job_name is not None)
        remove_parents(made_parents)
        raise RunError(no_space_message(full, path)) from exc
    CLAIMED[path] = Claim(existed, made_parents)
    found = foreign()  # another process may have written between the check and the lock
    if found:
        release_run_dir(path)
        raise refuse(found)


def release_run_dir(path: str | os.PathLike) -> None:
    from cifarx.run.rundir import unlock_run_dir

    path = Path(path).resolve()
    CLAIMED.pop(path, None)
    unlock_run_dir(path)


def remove_parents(folders: Iterable[Path]) -> None:
    """Remove these folders (a claim's ``made_parents``), deepest first, each only if empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def discard_unstarted(path: str | os.PathLike, job_name: str | None, made: bool) -> None:
    """Remove what Hydra and the claim wrote into ``path`` for a run that never began (a full
    disk stopped it first): Hydra's files for ``job_name``, the lock, ``.hydra/`` and, when this
    invocation ``made`` it, the folder, each only if empty. A folder where a cifarx run began
    (it has a status) is left exactly as it is."""
    from cifarx.run.rundir import LOCK_FILE, STATUS_FILE

    path = Path(path).resolve()
    if not path.is_dir() or (path / STATUS_FILE).exists():
        return
    for file in (*(hydra_files(path, job_name) if job_name else ()), path / LOCK_FILE):
        with contextlib.suppress(FileNotFoundError):
            file.unlink()
    for folder in (path / ".hydra", *((path,) if made else ())):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty: anything else in it was not ours
