"""The MLflow store behind ``logger=mlflow``: where it is (tracking URI, artifact folder), a
SQLite file that cannot work said at once, bounded HTTP waits, and the one connection a run uses
(``cifarx.tracking.hooks`` re-exports all of it)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from cifarx.errors import ConfigError

_SET_HERE: dict[str, str] = {}  # MLFLOW_HTTP_* variables cifarx set (a user's own are never changed)


def require_mlflow() -> None:
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError("logger=mlflow needs MLflow, which is not installed: pip install 'cifarx[mlflow]'")


def default_store(cwd: Path | None = None) -> tuple[str, str]:
    """(tracking URI, artifact folder) of the embedded store: ``outputs/`` of the working directory."""
    from cifarx.run.layout import OUTPUTS

    outputs = (cwd or Path.cwd()).resolve() / OUTPUTS
    return f"sqlite:///{outputs / 'mlflow.db'}", str(outputs / "mlartifacts")


def store_of(logger_cfg) -> tuple[str, str | None]:
    """(tracking URI, artifact folder of a new experiment): a SQLite store keeps its artifacts beside
    its database file (MLflow's own default, ``./mlruns``, would land in whatever folder the command
    ran in); a server keeps its own."""
    if logger_cfg.artifact_location:
        artifacts = str(logger_cfg.artifact_location)
    elif str(logger_cfg.tracking_uri or "").startswith("sqlite:///"):
        artifacts = str(Path(str(logger_cfg.tracking_uri)[len("sqlite:///"):]).parent / "mlartifacts")
    else:
        artifacts = None
    if logger_cfg.tracking_uri:
        return str(logger_cfg.tracking_uri), artifacts
    uri, artifacts = default_store()
    return uri, str(logger_cfg.artifact_location or artifacts)


def ui_command(uri: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {uri}"


def quiet_mlflow(logger_cfg) -> None:
    """Keep MLflow's and Alembic's start-up chatter off the terminal, and bound how long an
    unreachable server can stall a call (the user's own MLFLOW_HTTP_* settings win)."""
    import mlflow  # noqa: F401  (importing it sets its loggers to INFO: lower them afterwards)

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, value in (("MLFLOW_HTTP_REQUEST_TIMEOUT", logger_cfg.http_timeout),
                        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", logger_cfg.http_retries)):
        if os.environ.get(name, _SET_HERE.get(name)) == _SET_HERE.get(name):  # unset, or set by cifarx
            os.environ[name] = _SET_HERE[name] = str(int(value))


def mlflow_client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"  # the UI's model-training view


def _experiment_id(client, name: str, artifact_location: str | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = Path(artifact_location).resolve().as_uri() if artifact_location and "://" not in artifact_location \
        else artifact_location
    try:  # MLflow 3's UI opens an experiment without this tag in its GenAI view ("Evaluation runs")
        return client.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND: MODEL_TRAINING})
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
    quiet_mlflow(logger_cfg)
    uri, artifacts = store_of(logger_cfg)
    if uri.startswith("sqlite:///"):
        _check_sqlite(uri, create_folder=not logger_cfg.tracking_uri)
    try:
        client = mlflow_client(uri)
        return client, _experiment_id(client, str(logger_cfg.experiment), artifacts), uri
    except Exception as exc:
        from cifarx.errors import one_line

        reason = one_line(f"{type(exc).__name__}: {exc}")[:300]
        raise ConfigError(f"cannot reach the MLflow store logger.tracking_uri={uri} ({reason}); start the server, "
                          "fix the URI, or run without tracking (logger=none)") from exc
