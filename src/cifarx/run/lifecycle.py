"""What every command shares around its plain ``run_*`` function: the run directory's lifecycle
(validation first, then tracking, status, discarding what a refused run made), and turning user
errors into one line and an exit code. Process-wide set-up (the quiet Keras import, the command's
start time) is in cifarx.process; resolvers in cifarx.config.composition."""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from cifarx.errors import EXIT_PARTIAL, CifarxError, CommandExit, Pruned, one_line
from cifarx.process import import_keras_quietly, stop_on_sigterm
from cifarx.run.job import Job
from cifarx.run.ownership import CLAIMED, claim_run_dir, hydra_files, release_run_dir, remove_parents

log = logging.getLogger("cifarx")


def run_command(command: str, fn: Callable[..., dict[str, Any]], cfg: DictConfig,
                run_dir: str | os.PathLike | None = None, preflighted: bool = False) -> Any:
    """Run ``fn(cfg, run)`` inside a run directory that this process owns and that records its
    own status (``run_dir`` replaces Hydra's output directory, for in-process callers). The job's
    facts (:class:`cifarx.run.job.Job`) travel as ``run.job``; ``preflighted``: the CLI checked this
    config just before Hydra ran (a job Hydra runs only), so it is not checked again.

    A user error (bad data, missing files) before any result exists removes exactly the files this
    run made (and the directory, only if this run made it), so nothing is left that looks like a
    result; later failures leave ``status.json`` saying ``failed`` with the error. Returns the value
    a Hydra sweeper optimises.
    """
    from cifarx.run.rundir import RunDir

    job = Job.in_process(run_dir) if run_dir is not None else Job.from_hydra(preflighted)
    run = RunDir(job.run_dir, command)
    run.job = job
    resuming = command == "train" and cfg.get("resume") is not None
    stop_on_sigterm()

    attempt = _Attempt(command, cfg, run, resuming)
    claimed_here = run.path not in CLAIMED
    try:
        claim_run_dir(run.path, resuming, job_name=command if run_dir is None else None)
    except CifarxError as exc:  # not ours to touch: nothing is written or removed
        return attempt.refuse(one_line(str(exc)))
    # Claimed by the CLI before Hydra ran: it knows whether the folder existed. Claimed here under
    # Hydra: the folder held nothing but Hydra's files for this job, so Hydra made it for this run.
    attempt.existed = CLAIMED[run.path].existed if not claimed_here or run_dir is not None else False
    try:
        return attempt.run_owned(fn)
    finally:
        release_run_dir(run.path)


class _Attempt:
    """One command in a run directory this process owns: its call, then how each way it can end is
    recorded (status.json, the MLflow run) and said (one line, an exit status)."""

    def __init__(self, command: str, cfg: DictConfig, run, resuming: bool) -> None:
        self.command, self.cfg, self.run, self.resuming = command, cfg, run, resuming
        self.multirun = run.job.multirun
        self.existed = True  # whether the directory was there before this run claimed it

    def refuse(self, message: str) -> None:
        if self.multirun:  # the sweep goes on; its summary reports the failure
            log.error("cifarx %s: error: %s", self.command, message)
            return None
        raise CommandExit(2, f"cifarx {self.command}: error: {message}")

    def run_owned(self, fn: Callable[..., dict[str, Any]]) -> Any:
        try:
            result = self._call(fn)
        except CifarxError as exc:
            return self._failed(one_line(str(exc)))
        except KeyboardInterrupt:
            self._interrupted()
        except Pruned:  # a search's pruner stopped it: history.csv stays, the search records the trial
            _close_live()
            _record(self.run, "pruned")
            self._tracking().end_for(self.run, "KILLED", self.cfg)
            raise
        except Exception as exc:
            if self.resuming and not self.run.begun:  # a bug, not the run's fault: it stays exactly as it was
                raise
            from cifarx.run.atomic_io import no_space

            full = no_space(exc)  # the full-disk error behind exc (a library may wrap it), or None
            if full:
                return self.refuse(self._out_of_space(full))
            _record(self.run, "failed", error=one_line(f"{type(exc).__name__}: {exc}"), traceback=traceback.format_exc())
            self._tracking().end_for(self.run, "FAILED", self.cfg)
            if self.multirun:
                log.exception("cifarx %s: job failed", self.command)
                return None
            raise
        return self._completed(result)

    @staticmethod
    def _tracking():
        from cifarx.tracking import hooks  # light: MLflow itself is imported only with logger=mlflow

        return hooks

    def _call(self, fn):
        from cifarx.commands.registry import COMMANDS, validate

        command, run, tracking = self.command, self.run, self._tracking()
        if not run.job.preflighted:
            validate(command, self.cfg)
        if self.resuming:
            from cifarx.run.resume import resume_config

            # Hydra's overrides only for a job Hydra runs: an in-process caller's would be a previous job's
            self.cfg = resume_config(self.cfg, list(run.job.overrides))
            run.resumed = True  # provenance keeps the first process's facts and appends this one's
        store = tracking.connect_for(command, self.cfg, self.resuming)  # an unreachable store stops here
        run.begin(self.cfg)
        run.has_results = run.has_results or self.resuming  # a resumed run's directory is never removed
        if COMMANDS[command].keras:
            import_keras_quietly()
        run.tracker = tracking.start_for(command, self.cfg, run, store, self.resuming)
        try:
            return fn(self.cfg, run)
        finally:  # a bar an error cut short (Keras skips on_train_end then) goes before anything is said
            _close_live()

    def _discard(self) -> None:
        """What this run made goes (Hydra's files and the lock too: the folder held none before)."""
        from cifarx.run.rundir import LOCK_FILE

        self._tracking().end_for(self.run, "FAILED", self.cfg, discard=True)  # no result: the MLflow run goes too
        self.run.discard(also=(*hydra_files(self.run.path, self.command), self.run.file(LOCK_FILE)),
                         remove_dir=not self.existed)
        if not self.existed:  # and the folders above it that its claim made, if nothing else is in them
            remove_parents(claim.made_parents if (claim := CLAIMED.get(self.run.path)) else ())

    def _failed(self, message: str) -> None:
        if self.run.has_results or self.multirun:
            _record(self.run, "failed", error=message)
            self._tracking().end_for(self.run, "FAILED", self.cfg)
        elif not self.resuming:  # a refused resume leaves the existing run exactly as it was
            self._discard()
        return self.refuse(message)

    def _interrupted(self) -> None:
        _close_live()  # the bar Ctrl-C cut short goes: the lines below start on a clean line
        run = self.run
        if self.resuming and not run.begun:  # stopped before it continued: the run stays exactly as it was
            raise CommandExit(130, f"cifarx {self.command}: interrupted before resuming; {run.path} is unchanged") \
                from None
        _record(run, "interrupted", error="interrupted (Ctrl-C or SIGTERM)")
        self._tracking().end_for(run, "KILLED", self.cfg)
        if self.multirun:  # stop the sweep; the launcher's caller writes the summary of what finished
            raise  # the KeyboardInterrupt being handled
        _tell(_interrupted_line(self.command, run))
        raise CommandExit(130) from None

    def _out_of_space(self, full: OSError) -> str:
        """A full disk: the run is kept failed (or goes, when it holds nothing of value); the line to say."""
        from cifarx.run.rundir import resume_hint

        run = self.run
        keep = run.has_results or self.multirun or self.resuming  # else nothing of value: the run goes
        hint = f"; free space, then {resume_hint(run.path)}" if self.command == "train" and run.begun and keep \
            else "; free space and run again"
        message = f"no space left on device ({full.filename or run.path}){hint}"
        if not keep:  # as a refused run goes (and frees the space it took)
            self._discard()
            return message
        try:
            run.set_status("failed", error=message)
        except (CifarxError, OSError):  # not even room for its temporary: in the old one's place
            from cifarx.run.atomic_io import update_json_in_place
            from cifarx.run.rundir import STATUS_FILE, utc_now

            if not update_json_in_place(run.file(STATUS_FILE), {"status": "failed", "error": message,
                                                                "updated": utc_now(), "pid": os.getpid()}):
                message += f"; {STATUS_FILE} could not be updated"
        self._tracking().end_for(run, "FAILED", self.cfg)
        return message

    def _completed(self, result) -> Any:
        self.run.set_status("completed")
        self._tracking().end_for(self.run, "FINISHED", self.cfg, result if isinstance(result, dict) else None)
        if not isinstance(result, dict):
            return result
        if self.multirun:
            _job_line(self.run, result)
        elif result.get("outcome") == "partial":  # done and recorded, but some inputs were left out (skipped.csv)
            raise CommandExit(EXIT_PARTIAL)
        key = self.cfg.get("objective")
        return result.get(key) if key else None  # never another metric in its place (a test score would be one)


def _close_live() -> None:
    from cifarx.console import close_live

    close_live()


def _interrupted_line(command: str, run) -> str:
    """The one line an interrupted run ends with: what it kept and, for train, the exact command
    that continues it."""
    if command != "train" or not run.begun:
        return f"cifarx {command}: interrupted; partial results kept in {run.path}"
    from cifarx.run.history import checkpoint_epochs
    from cifarx.run.rundir import resume_hint

    last = run.file("last.keras")
    held = checkpoint_epochs(last) if last.exists() else 0  # None: a last.keras that does not say
    kept = ("no finished epoch yet" if held == 0 else "last.keras" if held is None
            else f"{held} finished epoch{'s' if held != 1 else ''} (last.keras)")
    return f"cifarx train: interrupted; kept {kept} in {run.path}; continue with: {resume_hint(run.path)}"


def _tell(message: str) -> None:
    """``message`` on the terminal, through the console live progress uses (so on a line of its
    own), and in the run's log file: logged through the ``cifarx`` logger marked for the log
    file only (``cifarx.console.ConsoleHandler`` would print it a second time)."""
    from cifarx.console import err_console, wrap_words

    if log.hasHandlers():  # else logging's last-resort handler would print it on stderr again
        log.warning(message, extra={"log_file_only": True})
    out = err_console()
    out.print(wrap_words(message, out.width) if out.is_terminal else message, markup=False, highlight=False,
              soft_wrap=True)


def _job_line(run, result: dict) -> None:
    """A sweep job's one line: its number, what it set, its scores, its time."""
    scores = "  ".join(f"{k.split('_')[0]} {result[k]:.4f}" for k in ("val_accuracy", "test_accuracy")
                       if isinstance(result.get(k), (int, float)))
    seconds = result.get("seconds")
    from cifarx.config.overrides import varying_overrides

    log.info("job %s %s  %s%s  %s", run.job.number, " ".join(varying_overrides(run.job.overrides)) or "(defaults)",
             scores,
             f"  {seconds:.0f}s" if isinstance(seconds, (int, float)) else "", run.path.name)


def _record(run, status: str, **fields) -> None:
    """Write the final status if the directory still can take it (it may be gone, or the disk full)."""
    try:
        run.set_status(status, **fields)
    except (CifarxError, OSError) as exc:
        log.warning("could not record status '%s' in %s (%s)", status, run.path, one_line(str(exc)))
