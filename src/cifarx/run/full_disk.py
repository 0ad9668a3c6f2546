"""A full disk met by Hydra itself, before cifarx's task starts (making the run directory,
writing ``.hydra/`` and the log): one line, and what this invocation made for the run removed.
(A full disk inside the task is cifarx.run.lifecycle's business.)"""

from __future__ import annotations

import contextlib
import os


class NoSpace(BaseException):
    """A full disk met by Hydra itself, carried past Hydra's reporting (a traceback) to one line.
    A BaseException, like SystemExit: Hydra reports every Exception its way."""

    def __init__(self, error: OSError, output_dir: str | None):
        super().__init__(error)
        self.error, self.output_dir = error, output_dir


@contextlib.contextmanager
def full_disk_past_hydra():
    """While Hydra runs: a full disk (ENOSPC, EDQUOT) in what Hydra does around the task (making
    the run directory, writing ``.hydra/`` and the log, before cifarx's task starts) leaves Hydra
    as :class:`NoSpace`; every other error is reported by Hydra as before. (The task's own full
    disk is handled inside it: cifarx.run.lifecycle.) Hydra offers no hook there, so its reporter is
    wrapped for the call."""
    from hydra._internal import utils as hydra_utils

    from cifarx.run.atomic_io import no_space

    report = hydra_utils.run_and_report

    def run_and_report(func):
        def guarded():
            try:
                return func()
            except Exception as exc:
                full = no_space(exc)
                if full is not None:
                    raise NoSpace(full, _job_output_dir(exc)) from exc
                raise

        return report(guarded)

    hydra_utils.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_utils.run_and_report = report


def _job_output_dir(exc: BaseException) -> str | None:
    """The output directory of the Hydra job ``exc`` left (Hydra sets it before making the
    folder), else of the sweep (the basic sweeper's ``sweep_dir``), read from Hydra's innermost
    such frame in the traceback; None when it came from neither."""
    from omegaconf import OmegaConf

    found, tb = None, exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if str(frame.f_globals.get("__name__")).startswith("hydra."):
            try:
                if frame.f_code.co_name == "run_job":
                    found = OmegaConf.select(frame.f_locals.get("config"), "hydra.runtime.output_dir") or None
                elif frame.f_locals.get("sweep_dir") is not None:
                    found = frame.f_locals["sweep_dir"]
            except Exception:
                return None
        tb = tb.tb_next
    return None if found is None else str(found)


def no_space_before_task(name: str, full: NoSpace, claimed: str | None, own: bool, sweep: bool = False) -> str:
    """The one line for a full disk Hydra met; with ``own`` (one run, not a sweep), what this
    invocation made for the run is removed (Hydra's files, the lock, the folder and the folders
    above it, each if it made them): no result exists, nothing looks like one. A folder where
    cifarx's run began is left alone; so is a sweep's, once a job began in it (a sweep that never
    began goes with the empty folders above it that it made)."""
    import logging
    from pathlib import Path

    from cifarx.run.atomic_io import no_space_message
    from cifarx.run.ownership import CLAIMED, discard_unstarted, noted_above, release_run_dir, remove_parents

    run = made = None
    parents: tuple[Path, ...] = ()
    if own and claimed is not None:  # claimed above, before Hydra: the claim knows whether it existed
        run = Path(claimed).resolve()  # as claim_run_dir names it
        claim = CLAIMED.get(run)
        made = claim is not None and not claim.existed
        parents = claim.made_parents if made else ()  # read before the release forgets them
    elif own and full.output_dir:  # Hydra's default directory, made by Hydra for this run
        run, made = Path(full.output_dir).resolve(), True
        parents = noted_above(run)  # outputs/<command>, when new
    if run is not None:
        for handler in list(logging.getLogger().handlers):  # Hydra's log file in the run directory
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == run:
                logging.getLogger().removeHandler(handler)
                with contextlib.suppress(OSError):  # its last line may not fit either
                    handler.close()
        release_run_dir(run)
        discard_unstarted(run, name, made)
        remove_parents(parents)  # the folders above it this invocation made, if nothing else is in them
    if sweep and full.output_dir:  # the sweep's folder, or the job's whose Hydra files failed
        _discard_unstarted_sweep(full.output_dir)
        discard_unstarted(full.output_dir, name, made=True)
        remove_parents(noted_above(Path(full.output_dir)))  # and the folders above it it made, if now empty
    return no_space_message(full.error, run or Path(full.output_dir or os.getcwd()).resolve())


def _discard_unstarted_sweep(folder: str) -> None:
    """A sweep's folder (new: named by time and pid) that holds only Hydra's multirun.yaml: no
    job began, and the full disk stopped Hydra writing it. It goes."""
    from pathlib import Path

    folder = Path(folder).resolve()
    with contextlib.suppress(OSError):
        if [p.name for p in folder.iterdir()] == ["multirun.yaml"]:
            (folder / "multirun.yaml").unlink()
            folder.rmdir()
