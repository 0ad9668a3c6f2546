"""A sweep with ``logger=mlflow``: one MLflow parent run, each job's run its child
(``cifarx.tracking`` re-exports all of it)."""

from __future__ import annotations

import logging
from pathlib import Path

from cifarx.tracking_run import Tracker, _record
from cifarx.tracking_store import _client, _quiet_mlflow, connect

log = logging.getLogger("cifarx")

PARENT_FILE = "mlflow_parent_run.json"  # in a sweep directory: the sweep's MLflow parent run


def start_sweep(config) -> None:
    """At the start of a multirun with logger=mlflow: the parent run, its id in the sweep folder."""
    logger_cfg = config.get("logger")
    if logger_cfg is None or str(logger_cfg.name) != "mlflow":
        return
    from cifarx.artifacts import write_json_atomic

    client, experiment_id, uri = connect(logger_cfg)
    sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    run = client.create_run(experiment_id, tags={"mlflow.runName": f"sweep {sweep_dir.name}",
                                                  "cifarx.sweep_dir": str(sweep_dir),
                                                  "cifarx.command": str(config.hydra.job.name),
                                                  "cifarx.overrides": " ".join(config.hydra.overrides.task)})
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
    record = _record(Path(sweep_dir) / PARENT_FILE)
    if not record.get("run_id"):
        return
    _quiet_mlflow(logger_cfg)
    tracker = Tracker(_client(record["tracking_uri"]), record["run_id"], record["tracking_uri"])
    summary = _record(Path(sweep_dir) / "summary.json")
    best = summary.get("best") or {}
    sort_by = summary.get("sort_by")
    tracker.log_metrics({"jobs": summary.get("jobs"), "failed_jobs": summary.get("failed"),
                         **({f"best_{sort_by}": best.get(sort_by)} if sort_by else {})}, step=0)
    tracker.set_tags({"cifarx.best_run": summary.get("best_run")})
    for name in ("summary.csv", "summary.json"):
        if (Path(sweep_dir) / name).exists():
            tracker._safely(f"uploading {name}", tracker.client.log_artifact, tracker.run_id, str(Path(sweep_dir) / name))
    tracker.end(status)
