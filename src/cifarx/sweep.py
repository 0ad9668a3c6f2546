"""Hydra callback: at the end of a multirun, one table, `summary.csv` and the best run.

Jobs record their own status (a failing job does not stop the sweep), so the summary reads the
job directories; it works the same for the basic, joblib and submitit launchers. The sweep exits
non-zero, saying how many jobs failed, when any did. After Ctrl-C (or SIGTERM) the CLI writes
the same summary of what finished, marked interrupted, and lists the jobs that never ran.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from cifarx.config.overrides import VARYING_ENV, varying_keys

# The sweep this process is running (set before any job starts), for the summary after Ctrl-C.
CURRENT: dict[str, Any] = {}


def planned_jobs(overrides: list[str]) -> list[str] | None:
    """Every job the basic sweeper makes of these overrides, as space-joined 'key=value' lists;
    None when another sweeper decides the jobs (Optuna)."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser

    task = [o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    if any(o.lstrip("+~").startswith(("hydra/sweeper", "hparams_search")) for o in overrides):
        return None
    try:
        choices: dict[str, list[str]] = {}  # the basic sweeper's product, in order, last value of a key winning
        for override in OverridesParser.create().parse_overrides(task):
            key = override.get_key_element()
            choices[key] = ([f"{key}={v}" for v in override.sweep_string_iterator()] if override.is_sweep_override()
                            else [f"{key}={override.get_value_element_as_str()}"])
    except Exception:  # a sweep the basic sweeper cannot enumerate (interval), or a glob it expands itself
        return None
    return [" ".join(job) for job in itertools.product(*choices.values())]


def _job_overrides(run: Path) -> str:
    """A job's recorded overrides, space-joined as :func:`planned_jobs` joins them ('' when absent or damaged)."""
    from cifarx.commands.compare import job_overrides

    return " ".join(job_overrides(run))


def summarize_interrupted(overrides: list[str], sort_by: str = "val_accuracy") -> list[str] | None:
    """After Ctrl-C: the summary of the jobs that ran, and the jobs that never did (returned)."""
    sweep_dir = CURRENT.get("dir")
    if sweep_dir is None:
        return None
    planned = planned_jobs(overrides)
    ran = {_job_overrides(r) for r in Path(sweep_dir).iterdir() if (r / "status.json").exists()} \
        if Path(sweep_dir).is_dir() else set()
    missing = None if planned is None else [job for job in planned if job not in ran]
    if missing:  # name each job by what tells it apart (the overrides every job shares are dropped)
        common = set.intersection(*(set(job.split()) for job in planned))
        missing = [" ".join(o for o in job.split() if o not in common) for job in missing]
    write_summary(Path(sweep_dir), sort_by, interrupted=True, not_run=missing)
    from cifarx.tracking.hooks import finish_sweep

    finish_sweep(Path(sweep_dir), CURRENT.get("logger"), status="KILLED")
    return missing


def search_objective_problem(config: Any) -> str | None:
    """A search (a sweeper that uses the jobs' return values, such as Optuna) must maximise a
    validation metric that exists: never one computed on the test set."""
    sweeper = str(config.hydra.get("sweeper", {}).get("_target_", ""))
    if "BasicSweeper" in sweeper or not sweeper:
        return None  # the grid sweeper runs every job whatever they return
    objective = str(config.get("objective") or "")
    if not objective.startswith("val_"):
        return (f"objective={objective} would let the search select on the test set; a search optimises a "
                "validation metric: objective=val_accuracy with data.val_fraction > 0")
    direction = str(config.hydra.sweeper.get("direction", "")).lower()
    if direction and ("loss" in objective) == ("max" in direction):
        return (f"objective={objective} with hydra.sweeper.direction={direction} would pick the worst trial; "
                f"use objective=val_accuracy, or direction={'minimize' if 'loss' in objective else 'maximize'}")
    features = config.get("features")
    if features is not None and str(features) != "pixels":
        return None  # classic on extracted features: the validation split is the features' own
    data = config.get("data")
    if data is not None and not float(data.get("val_fraction") or 0) > 0:
        return (f"objective={objective} needs a validation split, but data.val_fraction="
                f"{data.get('val_fraction')} holds none out; set data.val_fraction=0.1 (the search must not "
                "select on the test set)")
    return None


class SweepSummary(Callback):
    def __init__(self, sort_by: str = "val_accuracy") -> None:
        self.sort_by = sort_by

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        from cifarx.errors import CifarxError, CommandExit, one_line
        from cifarx.tracking.hooks import start_sweep

        problem = search_objective_problem(config)
        if problem:
            raise CommandExit(2, f"cifarx {config.hydra.job.name}: error: {problem}")
        CURRENT.update(dir=str(Path(str(config.hydra.sweep.dir)).resolve()), sort_by=self.sort_by,
                       logger=config.get("logger"))
        os.environ[VARYING_ENV] = ",".join(varying_keys(config))
        try:
            start_sweep(config)  # logger=mlflow: the sweep's parent run (jobs become its children)
        except CifarxError as exc:
            raise CommandExit(2, f"cifarx {config.hydra.job.name}: error: {one_line(str(exc))}") from None

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        from cifarx.tracking.hooks import finish_sweep

        CURRENT.clear()
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        try:
            write_summary(sweep_dir, self.sort_by)
        finally:
            finish_sweep(sweep_dir, config.get("logger"))


def write_summary(sweep_dir: Path, sort_by: str, interrupted: bool = False,
                  not_run: list[str] | None = None) -> None:
    """summary.csv, summary.json and the table; exits 1 when a job failed (not when interrupted)."""
    from cifarx.commands.compare import print_rows, table, to_csv
    from cifarx.run.rundir import write_bytes_atomic, write_json_atomic

    rows = table([sweep_dir], sort_by) if sweep_dir.is_dir() else []
    if not rows and not interrupted:
        return
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(sweep_dir / "summary.csv", to_csv(rows).encode())
    done = [r for r in rows if r["status"] == "completed" and r.get(sort_by) is not None]
    best = done[0] if done else None
    failed = [r for r in rows if r["status"] != "completed"]
    record = {"sort_by": sort_by, "jobs": len(rows), "failed": len(failed),
              "best_run": best["run"] if best else None, "best": best}
    if interrupted:
        record.update(interrupted=True, not_run=not_run)
    write_json_atomic(sweep_dir / "summary.json", record)
    if rows:
        from cifarx.commands.compare import short_path

        print_rows(rows, f"sweep {short_path(str(sweep_dir))}: {len(rows)} jobs, by {sort_by}", common=sweep_dir)
    if best:
        print(f"best: {best['run']} ({sort_by} {best[sort_by]:.4f})")
    if interrupted:
        return
    if failed:
        from cifarx.errors import CommandExit

        raise CommandExit(1, f"cifarx: error: {len(failed)} of {len(rows)} sweep jobs failed; their status.json "
                             f"holds the error (first: {Path(failed[0]['run']).name}: {failed[0]['error']})")


def report_interrupted(name: str, overrides: list[str]) -> int:
    """Ctrl-C in a sweep: summarise the jobs that finished, list those that never ran."""
    sweep_dir = CURRENT.get("dir")
    missing = summarize_interrupted(overrides)
    where = f"; summary in {sweep_dir}" if sweep_dir else ""
    if missing is None:
        detail = "the sweeper decides its jobs, so the ones not run cannot be listed"
    elif missing:
        detail = f"{len(missing)} jobs did not run: " + "; ".join(m or "(no overrides)" for m in missing)
    else:
        detail = "every job had started"
    print(f"cifarx {name}: sweep interrupted{where}; {detail}", file=sys.stderr)
    return 130
