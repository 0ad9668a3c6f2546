"""``logger=mlflow``: every train and classic run (and each sweep, as a parent run) in MLflow.

Everything goes through one ``MlflowClient`` per run and explicit run ids: no global "active run",
so sweep jobs that share a process never log into each other. The run directory stays the record
of truth: the tracker mirrors it (flat config as params, per-epoch metrics, final metrics, tags
for provenance, the directory's files as artifacts), and a tracker that goes away mid-run is
warned about once and then left alone, so training and the run directory never depend on it.

MLflow's own ``mlflow.keras.MlflowCallback`` is not used: it logs through the global active run
and logs the optimizer's config as params, which a fine-tuning stage (a second optimizer) would
contradict.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from cifarx.errors import CifarxError, ConfigError, one_line

log = logging.getLogger("cifarx")

PARENT_FILE = "mlflow_parent_run.json"  # in a sweep directory: the sweep's MLflow parent run
SKIPPED = {".cifarx.lock"}
CHECKPOINTS = {"best.keras", "last.keras"}
MODEL_FILES = {"model.keras", "pipeline.joblib"}
_BATCH = 100  # MLflow's limit of params (and tags) per log_batch call
_SET_HERE: dict[str, str] = {}  # MLFLOW_HTTP_* variables cifarx set (a user's own are never changed)


def require_mlflow() -> None:
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError("logger=mlflow needs MLflow, which is not installed: pip install 'cifarx[mlflow]'")


def default_store(cwd: Path | None = None) -> tuple[str, str]:
    """(tracking URI, artifact folder) of the embedded store: ``outputs/`` of the working directory."""
    outputs = (cwd or Path.cwd()).resolve() / "outputs"
    return f"sqlite:///{outputs / 'mlflow.db'}", str(outputs / "mlartifacts")


def store_of(logger_cfg) -> tuple[str, str | None]:
    if logger_cfg.tracking_uri:
        return str(logger_cfg.tracking_uri), (str(logger_cfg.artifact_location) if logger_cfg.artifact_location else None)
    uri, artifacts = default_store()
    return uri, str(logger_cfg.artifact_location or artifacts)


def ui_command(uri: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {uri}"


def _quiet_mlflow(logger_cfg) -> None:
    """Keep MLflow's and Alembic's start-up chatter off the terminal, and bound how long an
    unreachable server can stall a call (the user's own MLFLOW_HTTP_* settings win)."""
    import mlflow  # noqa: F401  (importing it sets its loggers to INFO: lower them afterwards)

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, value in (("MLFLOW_HTTP_REQUEST_TIMEOUT", logger_cfg.http_timeout),
                        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", logger_cfg.http_retries)):
        if os.environ.get(name, _SET_HERE.get(name)) == _SET_HERE.get(name):  # unset, or set by cifarx
            os.environ[name] = _SET_HERE[name] = str(int(value))


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as {'a.b.c': leaf}; lists stay leaves."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def final_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """metrics.json's numeric leaves, under the same (dotted) keys."""
    return {k: v for k, v in ((k, _number(v)) for k, v in flatten(metrics).items()) if v is not None}


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment_id(client, name: str, artifact_location: str | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = Path(artifact_location).resolve().as_uri() if artifact_location and "://" not in artifact_location \
        else artifact_location
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # another process created it in between
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _check_sqlite(uri: str, create_folder: bool) -> None:
    """A SQLite store that cannot work, said at once (MLflow retries opening it for ~100 s)."""
    path = Path(uri[len("sqlite:///"):])
    if create_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    problem = None
    if path.exists() and not path.is_file():
        problem = f"{path} is not a database file"
    elif path.exists() and not os.access(path, os.R_OK | os.W_OK):
        problem = f"{path} is not readable and writable"
    elif not path.exists() and path.parent.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        problem = f"{path.parent} is not writable"
    if problem:
        raise ConfigError(f"cannot reach the MLflow store logger.tracking_uri={uri} ({problem}); fix the URI, "
                          "or run without tracking (logger=none)")


def connect(logger_cfg) -> tuple[Any, str, str]:
    """(client, experiment id, tracking URI), or one ConfigError line naming the store and the fix."""
    require_mlflow()
    _quiet_mlflow(logger_cfg)
    uri, artifacts = store_of(logger_cfg)
    if uri.startswith("sqlite:///"):
        _check_sqlite(uri, create_folder=not logger_cfg.tracking_uri)
    try:
        client = _client(uri)
        return client, _experiment_id(client, str(logger_cfg.experiment), artifacts), uri
    except Exception as exc:
        from cifarx.errors import one_line

        reason = one_line(f"{type(exc).__name__}: {exc}")[:300]
        raise ConfigError(f"cannot reach the MLflow store logger.tracking_uri={uri} ({reason}); start the server, "
                          "fix the URI, or run without tracking (logger=none)") from exc


class Tracker:
    """One cifarx run mirrored as one MLflow run; after the first failure it warns once and stops."""

    def __init__(self, client, run_id: str, uri: str):
        self.client, self.run_id, self.uri = client, run_id, uri
        self.broken: str | None = None

    def _safely(self, what: str, fn, *args, **kwargs) -> Any:
        if self.broken:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            from cifarx.errors import one_line

            self.broken = one_line(f"{type(exc).__name__}: {exc}")[:300]
            log.warning("MLflow tracking stopped (%s failed: %s); training goes on and the run directory "
                        "stays complete, but MLflow run %s is missing what follows", what, self.broken, self.run_id)
            return None

    # -- what gets logged ----------------------------------------------------------------
    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k[:250], json.dumps(v) if isinstance(v, (list, dict)) else str(v)) for k, v in params.items()]
        for i in range(0, len(items), _BATCH):
            self._safely("logging params", self.client.log_batch, self.run_id, params=items[i:i + _BATCH])

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k[:250], str(v)[:5000]) for k, v in tags.items() if v is not None]
        for i in range(0, len(items), _BATCH):
            self._safely("setting tags", self.client.log_batch, self.run_id, tags=items[i:i + _BATCH])

    def log_metrics(self, values: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, int(step)) for k, v in ((k, _number(v)) for k, v in values.items()) if v is not None]
        if items:
            self._safely(f"logging step {step}", self.client.log_batch, self.run_id, metrics=items)

    def log_run_dir(self, run_dir: Path, model: bool = True, checkpoints: bool = False) -> None:
        for path in sorted(p for p in Path(run_dir).rglob("*") if p.is_file()):
            name = path.name
            if name in SKIPPED or name.startswith(".") and path.parent == run_dir or ".tmp" in name \
                    or (name in CHECKPOINTS and not checkpoints) or (name in MODEL_FILES and not model):
                continue
            folder = path.parent.relative_to(run_dir).as_posix()
            self._safely(f"uploading {name}", self.client.log_artifact, self.run_id, str(path),
                         None if folder == "." else folder)

    def end(self, status: str) -> None:
        """Always tried, even after an earlier failure (a server back up should not leave the
        MLflow run 'running' forever); a failure here is only logged."""
        try:
            self.client.set_terminated(self.run_id, status)
        except Exception as exc:
            if not self.broken:
                from cifarx.errors import one_line

                log.warning("MLflow: could not end run %s (%s)", self.run_id, one_line(str(exc))[:200])

    def keras_callback(self):
        import keras

        tracker = self

        class LogEpochs(keras.callbacks.Callback):
            """Each epoch's logs (loss, accuracy, val_*, learning rate) and its wall time as
            ``epoch_<name>`` (Keras' TensorBoard names; metrics.json's final ``val_accuracy`` is
            another number), at step = the epoch's index (history.csv's ``epoch`` column)."""

            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                seconds = time.perf_counter() - getattr(self, "t0", time.perf_counter())
                tracker.log_metrics({**{f"epoch_{k}": v for k, v in (logs or {}).items()}, "epoch_time": seconds},
                                    step=epoch)

        return LogEpochs()


def _hydra_facts() -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    facts = {"overrides": " ".join(hc.overrides.task)}
    if hc.mode == RunMode.MULTIRUN:
        facts["sweep_dir"] = str(Path(hc.sweep.dir).resolve())
    return facts


def _record(path: Path) -> dict[str, Any]:
    """A JSON record cifarx wrote ({} when it is absent or unreadable: tracking is best effort)."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _parent_of(sweep_dir: str | None, uri: str) -> str | None:
    record = _record(Path(sweep_dir) / PARENT_FILE) if sweep_dir else {}
    return record.get("run_id") if record.get("tracking_uri") == uri else None


def recorded_store(run_dir) -> str | None:
    """The tracking URI a run logged to (from its provenance.json), if it was tracked."""
    return (_record(Path(str(run_dir)) / "provenance.json").get("mlflow") or {}).get("tracking_uri")


def start(command: str, cfg, run, store) -> Tracker:
    """Open this run's MLflow run in ``store`` (what :func:`connect` returned): a new one, the same
    one for ``resume=``, a child of the sweep's parent run in a multirun."""
    from omegaconf import OmegaConf

    client, experiment_id, uri = store
    facts = _hydra_facts()
    provenance = _record(run.file("provenance.json"))  # a resumed run's still holds its MLflow run
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
            params.pop("trainer.epochs", None)  # chosen by the budget; logged once it is (cifarx.train)
        tracker.log_params(params)
    tracker = tracker or Tracker(client, run_id, uri)
    tracker.set_tags({
        "cifarx.overrides": facts.get("overrides"), "cifarx.experiment": cfg.get("experiment_name"),
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
    record = _record(run.file("provenance.json"))
    tracker.set_tags({f"cifarx.{k}": v for k, v in flatten(
        {k: record.get(k) for k in ("data", "backend", "devices", "wall_seconds")}).items()})
    tracker.log_run_dir(run.path, model=bool(logger_cfg.log_model), checkpoints=bool(logger_cfg.log_checkpoints))
    tracker.end(status)
    if not tracker.broken:
        log.info("MLflow run %s; browse with: %s", tracker.run_id, ui_command(tracker.uri))


# -- the run lifecycle's hooks (cifarx.runtime) ----------------------------------------------

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


# -- sweeps: one parent run, one child per job ----------------------------------------------
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
