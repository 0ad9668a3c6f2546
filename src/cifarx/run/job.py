"""The job being run: what Hydra knows about it (mode, overrides, job number, directories, how many
jobs run at once), read once where Hydra hands over to cifarx and passed on with the run directory.
Nothing below reads Hydra's global state, so a library caller (a search trial, a test) never sees a
previous job's."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Job:
    run_dir: Path
    multirun: bool = False  # a job of a Hydra sweep: one line per job, the sweep goes on after a failure
    overrides: tuple[str, ...] = ()  # as given on the command line
    number: int | None = None  # the job's number in its sweep
    sweep_dir: Path | None = None
    parallel_jobs: int = 1  # jobs the launcher runs at once on this machine (they share its cores)
    hydra_job: bool = False  # Hydra runs this job (else a library caller named run_dir)
    preflighted: bool = False  # its config passed pre-flight in this process just before: not checked twice

    @classmethod
    def in_process(cls, run_dir: str | os.PathLike) -> Job:
        """A job a library caller runs in ``run_dir``, outside any Hydra job."""
        return cls(Path(run_dir).resolve())

    @classmethod
    def from_hydra(cls, preflighted: bool = False) -> Job:
        """The job Hydra is running now (called only inside Hydra's task function). ``preflighted``:
        the CLI checked this job's config before Hydra ran (a single run; a sweep's jobs are checked)."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        launcher = hc.launcher
        joblib = "joblib" in str(launcher.get("_target_", ""))
        return cls(run_dir=Path(hc.runtime.output_dir).resolve(), multirun=multirun,
                   overrides=tuple(hc.overrides.task), number=hc.job.get("num") if multirun else None,
                   sweep_dir=Path(hc.sweep.dir).resolve() if multirun else None,
                   parallel_jobs=int(launcher.get("n_jobs") or 1) if joblib else 1, hydra_job=True,
                   preflighted=preflighted and not multirun)
