"""A sweep with ``logger=mlflow``: one MLflow parent run, each job's run its child
(``cifarx.tracking.hooks`` re-exports all of it)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from cifarx.run.atomic_io import read_record
from cifarx.tracking.run import Tracker
from cifarx.tracking.store import connect, mlflow_client, quiet_mlflow

log = logging.getLogger("cifarx")

PARENT_FILE = "mlflow_parent_run.json"  # in a sweep directory: the sweep's MLflow parent run


def start_sweep(config) -> None:
    """At the start of a multirun with logger=mlflow: the parent run, its id in the sweep folder."""
    logger_cfg = config.get("logger")
    if logger_cfg is None or str(logger_cfg.name) != "mlflow":
        return
    from cifarx.run.rundir import write_json_atomic

    client, experiment_id, uri = connect(logger_cfg)
    sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    run = client.create_run(experiment_id, tags={"mlflow.runName": f"sweep {sweep_dir.name}",
                                                  "cifarx.sweep_dir": str(sweep_dir),
                                                  "cifarx.command": str(config.hydra.job.name),
                                                  "cifarx.config.overrides": " ".join(config.hydra.overrides.task)})
    write_json_atomic(sweep_dir / PARENT_FILE, {"run_id": run.info.run_id, "tracking_uri": uri})
    log.info("MLflow: sweep parent run %s in %s", run.info.run_id, uri)


def finish_sweep(sweep_dir: Path, logger_cfg, status: str = "FINISHED") -> None:
    """Log the sweep summary to the parent run and end it (best effort: the jobs are recorded
    already, so nothing here may fail the sweep)."""
    if logger_cfg is None or str(logger_cfg.name) != "mlflow":
        return
    try:
        _finish_sweep(sweep_dir, logger_cfg, status)
    except Exception as exc:
        from cifarx.errors import one_line

        log.warning("MLflow: could not close the sweep's parent run (%s)", one_line(str(exc))[:200])


def _finish_sweep(sweep_dir: Path, logger_cfg, status: str) -> None:
    record = read_record(Path(sweep_dir) / PARENT_FILE)
    if not record.get("run_id"):
        return
    quiet_mlflow(logger_cfg)
    tracker = Tracker(mlflow_client(record["tracking_uri"]), record["run_id"], record["tracking_uri"])
    summary = read_record(Path(sweep_dir) / "summary.json")
    best = summary.get("best") or {}
    sort_by = summary.get("sort_by")
    tracker.log_metrics({"jobs": summary.get("jobs"), "failed_jobs": summary.get("failed"),
                         **({f"best_{sort_by}": best.get(sort_by)} if sort_by else {})}, step=0)
    tracker.set_tags({"cifarx.best_run": summary.get("best_run")})
    for name in ("summary.csv", "summary.json"):
        if (Path(sweep_dir) / name).exists():
            tracker._safely(f"uploading {name}", tracker.client.log_artifact, tracker.run_id, str(Path(sweep_dir) / name))
    tracker.end(status)


# -- `cifarx search`: the study as a parent run, each trial's train run its child -----------------

STUDY_TAG, STORAGE_TAG = "cifarx.search_study", "cifarx.search_storage"


def search_parent(logger_cfg, study: str, storage: str, facts: dict[str, Any]) -> Tracker:
    """The study's parent run: the one in the store tagged with this study and storage (a continued
    search, a worker on another machine), or a new one. Two workers that both create it keep the
    oldest (and the newer one is deleted). Back to RUNNING while a worker works."""
    client, experiment_id, uri = connect(logger_cfg)
    found = _study_runs(client, experiment_id, study, storage)
    if not found:
        created = client.create_run(experiment_id, tags={
            "mlflow.runName": f"search {study}", STUDY_TAG: study, STORAGE_TAG: storage,
            "cifarx.command": "search", **{f"cifarx.{k}": str(v) for k, v in facts.items() if v is not None}})
        found = _study_runs(client, experiment_id, study, storage)
        mine = created.info.run_id
        if found and found[0].info.run_id != mine:  # another worker's came first: that one is the study's
            with contextlib.suppress(Exception):
                client.delete_run(mine)
        elif not found:
            found = [created]
    run_id = found[0].info.run_id
    if found[0].info.status != "RUNNING":
        client.update_run(run_id, status="RUNNING")
    log.info("MLflow: search parent run %s in %s", run_id, uri)
    return Tracker(client, run_id, uri)


def _study_runs(client, experiment_id: str, study: str, storage: str) -> list:
    where = f"tags.`{STUDY_TAG}` = '{study}'" if "'" not in study and "\\" not in study else ""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=where, max_results=1000, page_token=token)
        runs += [r for r in page if r.data.tags.get(STUDY_TAG) == study and r.data.tags.get(STORAGE_TAG) == storage]
        token = page.token
        if not token:
            break
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def finish_search_parent(tracker: Tracker, summary: dict[str, Any], done: bool) -> None:
    """A worker's end: the study's best value and best trial (its run directory, its MLflow run,
    its parameters) on the parent run, which ends once no trial is left running."""
    counts, best = summary.get("counts") or {}, summary.get("best") or {}
    step = sum(int(v or 0) for k, v in counts.items() if k != "running")
    tracker.log_metrics({"complete_trials": counts.get("complete"), "pruned_trials": counts.get("pruned"),
                         "failed_trials": counts.get("fail"), "best_value": best.get("value")}, step=step)
    if best:
        tracker.set_tags({"cifarx.best_trial": best.get("number"), "cifarx.best_run_dir": best.get("run_dir"),
                          "cifarx.best_run_id": best.get("mlflow_run_id"),
                          **{f"cifarx.best_param.{k}": v for k, v in (best.get("params") or {}).items()}})
    if done:
        tracker.end("FINISHED")
