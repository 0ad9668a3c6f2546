"""``logger=mlflow``: every train and classic run (and each sweep, as a parent run) in MLflow.

Everything goes through one ``MlflowClient`` per run and explicit run ids: no global "active run",
so sweep jobs that share a process never log into each other. The run directory stays the record
of truth: the tracker mirrors it (flat config as params, per-epoch metrics, final metrics, tags
for provenance, the directory's files as artifacts), and a tracker that goes away mid-run is
warned about once and then left alone, so training and the run directory never depend on it.

MLflow's own ``mlflow.keras.MlflowCallback`` is not used: it logs through the global active run
and logs the optimizer's config as params, which a fine-tuning stage (a second optimizer) would
contradict.

The work is split by concern: the store and its connection (:mod:`cifarx.tracking.store`), one
run's logging (:mod:`cifarx.tracking.run`), a sweep's parent run (:mod:`cifarx.tracking.sweep`).
This module opens and closes each run and holds the run lifecycle's hooks; every name of the
three is importable from here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cifarx.errors import CifarxError, ConfigError, one_line
from cifarx.run.atomic_io import read_record
from cifarx.tracking.run import (  # noqa: F401  (re-exported: cifarx.tracking.hooks is what callers import)
    CHECKPOINTS,
    MODEL_FILES,
    SKIPPED,
    Tracker,
    final_metrics,
    flatten,
)
from cifarx.tracking.store import (  # noqa: F401  (re-exported)
    connect,
    default_store,
    mlflow_client,
    quiet_mlflow,
    require_mlflow,
    store_of,
    ui_command,
)
from cifarx.tracking.sweep import (  # noqa: F401  (re-exported)
    PARENT_FILE,
    finish_search_parent,
    finish_sweep,
    search_parent,
    start_sweep,
)

log = logging.getLogger("cifarx")


def _job_facts(job) -> dict[str, Any]:
    """What the MLflow run records of the Hydra job (nothing for a library caller's job)."""
    if not job.hydra_job:
        return {}
    facts = {"overrides": " ".join(job.overrides)}
    if job.sweep_dir is not None:
        facts["sweep_dir"] = str(job.sweep_dir)
    return facts


def _parent_of(sweep_dir: str | None, uri: str) -> str | None:
    record = read_record(Path(sweep_dir) / PARENT_FILE) if sweep_dir else {}
    return record.get("run_id") if record.get("tracking_uri") == uri else None


def recorded_store(run_dir) -> str | None:
    """The tracking URI a run logged to (from its provenance.json), if it was tracked."""
    return (read_record(Path(str(run_dir)) / "provenance.json").get("mlflow") or {}).get("tracking_uri")


def start(command: str, cfg, run, store) -> Tracker:
    """Open this run's MLflow run in ``store`` (what :func:`connect` returned): a new one, the same
    one for ``resume=``, a child of the sweep's parent run in a multirun."""
    from omegaconf import OmegaConf

    client, experiment_id, uri = store
    facts = _job_facts(run.job)
    provenance = read_record(run.file("provenance.json"))  # a resumed run's still holds its MLflow run
    recorded = provenance.get("mlflow") or {}
    run_id = recorded.get("run_id") if cfg.get("resume") is not None and recorded.get("tracking_uri") == uri else None
    if run_id is not None:
        try:
            client.update_run(run_id, status="RUNNING")
        except Exception:
            log.warning("MLflow run %s of the resumed run is not in %s; logging into a new MLflow run", run_id, uri)
            run_id = None
    tracker = None
    if run_id is None:
        tags = {"mlflow.runName": run.path.name, "cifarx.command": command, "cifarx.run_dir": str(run.path)}
        parent = _parent_of(facts.get("sweep_dir"), uri)
        if parent:
            tags["mlflow.parentRunId"] = parent
        try:
            created = client.create_run(experiment_id, tags=tags)
        except Exception as exc:
            from cifarx.errors import one_line

            raise ConfigError(f"cannot create a run in the MLflow store logger.tracking_uri={uri} "
                              f"({one_line(str(exc))[:300]}); check that it is writable, or use logger=none") from exc
        tracker = Tracker(client, created.info.run_id, uri)
        params = flatten(OmegaConf.to_container(cfg, resolve=True))
        if (cfg.get("trainer") or {}).get("time_budget") is not None:
            params.pop("trainer.epochs", None)  # chosen by the budget; logged once it is (cifarx.commands.train)
        tracker.log_params(params)
    if tracker is None:
        tracker = Tracker(client, run_id, uri)
        try:  # a failed look-up must not switch tracking off: new runs count from 1 anyway
            logged = client.get_metric_history(run_id, "epoch_loss")
        except Exception:
            logged = []
        if logged and min(m.step for m in logged) == 0:  # logged by a cifarx that counted epochs from 0
            tracker.first_step = 0
    tracker.set_tags({
        "cifarx.config.overrides": facts.get("overrides"), "cifarx.experiment": cfg.get("experiment_name"),
        "cifarx.seed": cfg.get("seed"), "cifarx.sweep_dir": facts.get("sweep_dir"),
        **{f"cifarx.{k}": v for k, v in flatten({k: provenance.get(k) for k in ("versions", "hardware")}).items()},
    })
    if cfg.get("resume") is not None:
        tracker.set_tags({"cifarx.resumed": "true"})
    run.write_provenance(mlflow={"run_id": tracker.run_id, "tracking_uri": uri, "experiment_id": experiment_id})
    log.info("MLflow: run %s in %s", tracker.run_id, uri)
    return tracker


def finish(tracker: Tracker, run, status: str, metrics: dict[str, Any] | None, logger_cfg) -> None:
    """Final metrics, provenance tags, the run directory as artifacts, the MLflow run's end."""
    if metrics:
        tracker.log_metrics(final_metrics(metrics), step=int(metrics.get("epochs") or 0))
    record = read_record(run.file("provenance.json"))
    tracker.set_tags({f"cifarx.{k}": v for k, v in flatten(
        {k: record.get(k) for k in ("data", "backend", "devices", "wall_seconds")}).items()})
    tracker.log_run_dir(run.path, model=bool(logger_cfg.log_model), checkpoints=bool(logger_cfg.log_checkpoints))
    tracker.end(status)
    if not tracker.broken:
        log.info("MLflow run %s; browse with: %s", tracker.run_id, ui_command(tracker.uri))


# -- the run lifecycle's hooks (cifarx.run.lifecycle) ----------------------------------------------

TRACKED_COMMANDS = ("train", "classic")


def connect_for(command: str, cfg, resuming: bool):
    """With logger=mlflow, the store (a ConfigError when it cannot be reached: before the run
    directory is touched); None otherwise. A resumed run logs into the store it used."""
    if command not in TRACKED_COMMANDS or cfg.get("logger") is None or cfg.logger.name != "mlflow":
        return None
    if resuming and not cfg.logger.tracking_uri:
        recorded = recorded_store(cfg.resume)
        if recorded:
            from omegaconf import read_write

            with read_write(cfg):
                cfg.logger.tracking_uri = recorded
    return connect(cfg.logger)


def start_for(command: str, cfg, run, store, resuming: bool):
    """The run's MLflow tracker (None without a store). A resumed run whose MLflow run cannot be
    opened goes on untracked, with a warning: its directory is never marked failed for that."""
    if store is None:
        return None
    try:
        return start(command, cfg, run, store)
    except CifarxError as exc:
        if not resuming:
            raise
        log.warning("MLflow: %s; the resumed run goes on without tracking", one_line(str(exc)))
        return None


def end_for(run, status: str, cfg, metrics: dict | None = None, discard: bool = False) -> None:
    """End the run's MLflow run with ``status`` (``discard``: a run that produced nothing, whose
    directory is removed: its MLflow run is deleted too)."""
    tracker = getattr(run, "tracker", None)
    if tracker is None:
        return
    run.tracker = None
    if discard:
        tracker.end(status)
        tracker._safely("deleting the run", tracker.client.delete_run, tracker.run_id)
        return
    finish(tracker, run, status, metrics, cfg.logger)
