"""One cifarx run mirrored as one MLflow run: the :class:`Tracker` (params, tags, per-epoch and
final metrics, the run directory as artifacts, its end) and the record readers it relies on
(``cifarx.tracking.hooks`` re-exports all of it)."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("cifarx")

SKIPPED = {".cifarx.lock"}
CHECKPOINTS = {"best.keras", "last.keras"}
MODEL_FILES = {"model.keras", "pipeline.joblib"}
_BATCH = 100  # MLflow's limit of params (and tags) per log_batch call


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


class Tracker:
    """One cifarx run mirrored as one MLflow run; after the first failure it warns once and stops.

    ``first_step``: the MLflow step of a run's first epoch. 1, as people count (history.csv's
    ``epoch``, ``best_epoch``, the console); 0 only when resuming into an MLflow run that an older
    cifarx logged from step 0 (MLflow cannot move logged points: that run's curves stay one
    numbering, with no gap at the resume)."""

    first_step = 1

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

    def log_keras_model(self, model, example, register_as: str | None = None) -> str | None:
        """The trained model as an MLflow model of this run (its id; None after a failure, which only
        warns): Keras flavour saved as a TensorFlow SavedModel, so `mlflow models serve` needs no
        cifarx code for its custom layers; a signature and an input ``example`` (uint8 NHWC images
        in, probabilities out). ``register_as``: also a new version of that registered model."""
        return self._safely("logging the MLflow model", self._log_keras_model, model, example, register_as)

    def _log_keras_model(self, model, example, register_as: str | None) -> str:
        # Through this run's client, as mlflow.keras.log_model would through the global active run.
        import contextlib
        import io
        import tempfile

        import mlflow.keras
        import numpy as np
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus
        from mlflow.models import Model, ModelSignature
        from mlflow.types import Schema, TensorSpec

        example = np.asarray(example)
        signature = ModelSignature(
            inputs=Schema([TensorSpec(example.dtype, (-1, *example.shape[1:]))]),
            outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, int(model.output.shape[-1])))]))
        run = self.client.get_run(self.run_id)
        logged = self.client.create_logged_model(run.info.experiment_id, name="model", source_run_id=self.run_id,
                                                 tags={"cifarx.run_dir": run.data.tags.get("cifarx.run_dir", "")})
        self.client.log_outputs(self.run_id, [LoggedModelOutput(logged.model_id, step=0)])
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):  # Keras' export lines
            path = Path(tmp) / "model"
            path.mkdir()  # mlflow.keras.save_model writes the input example before it makes the folder
            # requirements given, not inferred: inferring them loads the model again in a subprocess
            pins = _pins("keras", "tensorflow", "tensorflow-cpu")
            mlflow.keras.save_model(model, str(path), save_exported_model=True, signature=signature,
                                    input_example=example, pip_requirements=pins,
                                    mlflow_model=Model(artifact_path=logged.artifact_location, run_id=self.run_id,
                                                       model_uuid=logged.model_id, model_id=logged.model_id))
            self.client.log_model_artifacts(logged.model_id, str(path))
        self.client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        if register_as:
            from mlflow.exceptions import MlflowException

            try:
                self.client.create_registered_model(register_as)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            # the artifact location, not models:/<id>: MLflow's SQL registry would look that id up in
            # the global tracking URI's store, not this client's
            version = self.client.create_model_version(register_as, logged.artifact_location, run_id=self.run_id,
                                                       model_id=logged.model_id)
            log.info("MLflow: registered model '%s' version %s", register_as, version.version)
        return logged.model_id

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
            another number), at step = the epoch's number, 1-based (history.csv's ``epoch``
            column; see ``Tracker.first_step``)."""

            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                seconds = time.perf_counter() - getattr(self, "t0", time.perf_counter())
                tracker.log_metrics({**{f"epoch_{k}": v for k, v in (logs or {}).items()}, "epoch_time": seconds},
                                    step=epoch + tracker.first_step)

        return LogEpochs()


def _pins(*distributions: str) -> list[str]:
    """``name==version`` of each of ``distributions`` that is installed."""
    from cifarx.run.rundir import package_versions

    return [f"{name}=={version}" for name, version in package_versions(*distributions).items()
            if name in distributions]
