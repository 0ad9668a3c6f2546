"""A trained run as a predictor: ``cifarx.load(run).predict(images)``; `cifarx predict` uses it too,
so the command and the Python API cannot disagree.

A train run predicts with its saved network (the preprocessing is inside it) and, by default, its
own test-time augmentation. A classic run chains what it was fitted on: the network its extract
run cut at the feature layer (or the raw pixels), then its fitted scikit-learn pipeline, unpickled
only after the checks `cifarx classic` applies (it must be signed by cifarx on this machine). Files
are decoded exactly as training decoded its image folders, with the run's size policy.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifarx.errors import ConfigError, DataError, RunError

log = logging.getLogger("cifarx")

CHUNK_IMAGES = 4096  # files decoded, then predicted, at a time: memory stays bounded for any number of files
RUN_KINDS = ("train", "classic")


@dataclass
class Predictions:
    """Class predictions for a batch of images, in the order given (files that could not be read
    are left out and listed in ``skipped``)."""

    class_names: list[str]  # the run's classes, in its label order
    indices: np.ndarray  # (n,) the predicted class of each image: an index into class_names
    proba: np.ndarray | None  # (n, classes) probabilities; None when the classifier gives none (a linear SVM)
    paths: list[str] | None = None  # the files predicted (None for an array of images)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why) for files that could not be read
    seconds: dict[str, float] = field(default_factory=dict)  # time spent decoding and predicting

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def labels(self) -> list[str]:
        """The predicted class name of each image."""
        return [self.class_names[i] for i in self.indices]

    @property
    def confidence(self) -> np.ndarray | None:
        """The probability of each predicted class (None without probabilities)."""
        return None if self.proba is None else self.proba[np.arange(len(self)), self.indices]

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(indices, probabilities) of the ``k`` most probable classes of each image, most probable
        first, ties in the run's class order (the first is always ``indices``). Without
        probabilities: the predicted class only."""
        if self.proba is None:
            return self.indices[:, None], None
        k = max(1, min(int(k), len(self.class_names)))
        order = np.argsort(-self.proba, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(self.proba, order, axis=1)

    def counts(self) -> dict[str, int]:
        """Images predicted per class, in the run's class order."""
        found = np.bincount(self.indices, minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, found)}


@dataclass(frozen=True)
class RunInfo:
    """What a run needs to predict, read from its files without loading anything heavy."""

    path: Path
    kind: str  # train | classic
    class_names: list[str]
    other_sizes: str  # the size policy its images were decoded with (data.other_sizes)
    tta: str  # its own test-time augmentation
    model_path: Path | None  # the network: the run's checkpoint, or the model a classic run's features came from
    layer: str | None = None  # classic: the layer its features were taken from (None: the network's output)
    pipeline_run: Path | None = None  # classic: the run holding the fitted pipeline
    features: str | None = None  # classic: the extract run, or "pixels"
    dim: int | None = None  # classic: feature dimension the pipeline expects


def _recorded_path(run: Path, value: str) -> Path:
    """A path a run's config recorded as typed: a relative one is relative to where that run was started."""
    from cifarx.run.rundir import read_record

    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    cwd = read_record(run / "provenance.json").get("cwd")
    return (Path(cwd) / path) if cwd else path.resolve()


def run_kind(run: str | os.PathLike) -> str:
    """The command that made ``run`` (RunError unless it is a train or classic run)."""
    from cifarx.run.rundir import read_record, require_run

    path = Path(run).expanduser()
    kind = read_record(path / "status.json").get("command") if path.is_dir() else None
    if kind in RUN_KINDS:
        return kind
    if kind is None:  # missing, not a run, or a damaged status.json: require_run says which
        require_run(path, "train")
    raise RunError(f"'{run}' is a '{kind}' run; predict needs a 'train' or 'classic' run (its model)")


def describe_run(run: str | os.PathLike, checkpoint: str = "model") -> RunInfo:
    """Check ``run`` (a finished train or classic run, and every run its model came from) and
    describe it; nothing heavy is imported."""
    from omegaconf import OmegaConf

    from cifarx.data.raw import IMAGE_SHAPE
    from cifarx.run.rundir import check_keras_file, read_json, require_run

    kind = run_kind(run)
    if kind == "train":
        path = require_run(run, "train", needs=(f"{checkpoint}.keras", "metrics.json"))
        cfg = OmegaConf.load(path / "config.yaml")
        names = read_json(path / "metrics.json").get("class_names")
        if not names:
            raise RunError(f"run '{run}' records no class names in metrics.json; evaluate it again "
                           f"(`cifarx evaluate run={run}`) or train again")
        return RunInfo(path, kind, list(names), str(cfg.data.get("other_sizes") or "refuse"),
                       str(cfg.get("tta") or "none"), path / f"{checkpoint}.keras")
    if checkpoint != "model":
        raise ConfigError(f"checkpoint={checkpoint} chooses a train run's weights; a classic run predicts with the "
                          "model its features were extracted with: leave checkpoint=model")
    path = require_run(run, "classic", needs=("metrics.json",))
    cfg = OmegaConf.load(path / "config.yaml")
    metrics = read_json(path / "metrics.json")
    pipeline_run = _recorded_path(path, str(cfg.pipeline)) if cfg.get("pipeline") else path
    features = str(metrics.get("features") or cfg.features)
    if features == "pixels":
        return RunInfo(path, kind, list(metrics["class_names"]), str(cfg.data.get("other_sizes") or "refuse"),
                       "none", None, pipeline_run=pipeline_run, features="pixels", dim=int(np.prod(IMAGE_SHAPE)))
    extract = require_run(_recorded_path(path, features), "extract", needs=("features.json", "config.yaml"))
    meta = read_json(extract / "features.json")
    model_path = Path(meta["model_path"])
    if not model_path.is_file():
        raise RunError(f"the model classic run '{run}' got its features from, '{model_path}' (recorded by extract "
                       f"run '{extract}'), no longer exists; restore it, or extract and fit again")
    check_keras_file(model_path, f"'{model_path}'")
    data = (meta.get("source_config") or OmegaConf.to_container(OmegaConf.load(extract / "config.yaml")))["data"]
    return RunInfo(path, kind, list(meta["class_names"]), str(data.get("other_sizes") or "refuse"), "none",
                   model_path, layer=str(meta["layer"]), pipeline_run=pipeline_run, features=str(extract),
                   dim=int(meta["dim"]))


class Predictor:
    """A run's model, loaded once; :meth:`predict` takes images (arrays or files)."""

    def __init__(self, info: RunInfo, network, pipeline=None, tta: str | None = None,
                 other_sizes: str | None = None, batch_size: int = 256):
        self.info = info
        self.network = network  # a Keras model: the classifier (train) or the feature extractor (classic)
        self.pipeline = pipeline
        self.tta = str(tta if tta is not None else info.tta)
        self.other_sizes = str(other_sizes if other_sizes is not None else info.other_sizes)
        self.batch_size = int(batch_size)
        if self.pipeline is not None and self.tta != "none" and not hasattr(self.pipeline, "predict_proba"):
            raise ConfigError(f"tta={self.tta} averages probabilities, and this classic run's classifier gives none; "
                              "use tta=none")

    @property
    def class_names(self) -> list[str]:
        return list(self.info.class_names)

    def __repr__(self) -> str:
        return (f"Predictor({self.info.kind} run '{self.info.path}', {len(self.class_names)} classes, "
                f"tta={self.tta}, other_sizes={self.other_sizes})")

    # -- arrays ------------------------------------------------------------------------------
    def predict_arrays(self, x: np.ndarray, advance: Callable[[float], None] | None = None
                       ) -> tuple[np.ndarray, np.ndarray | None]:
        """(top-1 indices, probabilities or None) of uint8 NHWC images; ``advance`` counts images done.
        With test-time augmentation, the probabilities are the weighted mean over the views, as
        `cifarx evaluate` computes them."""
        from cifarx.evaluation import average_views, tta_views

        views = tta_views(x, self.tta)
        step = None if advance is None else (lambda n: advance(n / len(views)))
        if self.pipeline is not None and not hasattr(self.pipeline, "predict_proba"):  # tta is none: checked
            return np.asarray(self.pipeline.predict(self._features(x, step)), dtype=np.int64), None
        total = average_views(lambda view: self._proba(view, step), views)
        return total.argmax(axis=1), total

    def _network(self, x: np.ndarray, step) -> np.ndarray:
        from cifarx.evaluation import predict_in_full_batches

        return np.asarray(predict_in_full_batches(self.network, x, self.batch_size, step))

    def _features(self, x: np.ndarray, step) -> np.ndarray:
        if self.network is None:  # a classic run on raw pixels: exactly `cifarx classic features=pixels`'s
            if step is not None:
                step(len(x))
            return x.reshape(len(x), -1).astype(np.float32) / 255.0
        return self._network(x, step).reshape(len(x), -1).astype(np.float32)

    def _proba(self, x: np.ndarray, step) -> np.ndarray:
        if self.pipeline is None:
            return self._network(x, step).astype(np.float64)
        proba = np.zeros((len(x), len(self.class_names)))
        proba[:, np.asarray(self.pipeline.classes_, dtype=np.int64)] = self.pipeline.predict_proba(
            self._features(x, step))
        return proba

    # -- files and arrays --------------------------------------------------------------------
    def predict(self, images, *, skip_unreadable: bool = False, progress: bool = False) -> Predictions:
        """Predict ``images``: a uint8 array (N, 32, 32, 3) or one (32, 32, 3) image; a list of
        image paths; or a source as `cifarx predict source=` takes it (an image, folder, .zip, glob
        or .txt list file). A file that cannot be read raises DataError naming it, or with
        ``skip_unreadable`` is left out and listed in ``Predictions.skipped``."""
        from cifarx.data.image_files import ImageFile, open_source

        if isinstance(images, (str, os.PathLike)):
            with open_source(str(images)) as source:
                return self.predict_files(source.files, skip_unreadable=skip_unreadable, progress=progress)[0]
        if isinstance(images, np.ndarray):
            x = _as_batch(images)
            start = time.perf_counter()
            indices, proba = self._with_progress(len(x), progress, lambda adv: self.predict_arrays(x, adv))
            return Predictions(self.class_names, indices, proba, seconds={"predict": time.perf_counter() - start})
        if isinstance(images, Sequence) and all(isinstance(p, (str, os.PathLike)) for p in images):
            from cifarx.data.image_folders import read_image_file

            files = [ImageFile(str(p), lambda p=p: read_image_file(Path(p).expanduser(), str(p))) for p in images]
            return self.predict_files(files, skip_unreadable=skip_unreadable, progress=progress)[0]
        raise TypeError(f"images must be a uint8 array (N, 32, 32, 3), a list of image paths or a source path; "
                        f"got {type(images).__name__}")

    def _with_progress(self, total: int, shown: bool, work):
        if not shown:
            return work(None)
        from cifarx.console import progress

        with progress(f"predicting {total:,} images", total) as advance:
            return work(advance)

    def predict_files(self, files, *, skip_unreadable: bool = False, progress: bool = False,
                      on_skip: Callable[[str, str], None] | None = None,
                      keep: int = 0) -> tuple[Predictions, np.ndarray]:
        """Decode and predict ``files`` (:class:`cifarx.data.image_files.ImageFile`) CHUNK_IMAGES at a
        time; returns the predictions and the first ``keep`` images decoded (for a contact sheet)."""
        from cifarx.data.image_files import decode_file

        files = list(files)
        chunk = max(self.batch_size, CHUNK_IMAGES // self.batch_size * self.batch_size)
        names, skipped, indices, probas, kept = [], [], [], [], []
        seconds = {"decode": 0.0, "predict": 0.0}

        def work(advance):
            for start in range(0, len(files), chunk):
                t = time.perf_counter()
                batch, batch_names = [], []
                for file in files[start:start + chunk]:
                    try:
                        batch.append(decode_file(file, self.other_sizes))
                    except DataError as exc:
                        if not skip_unreadable:
                            raise
                        skipped.append((file.name, str(exc)))
                        if on_skip is not None:
                            on_skip(file.name, str(exc))
                        if advance is not None:
                            advance(1)
                        continue
                    batch_names.append(file.name)
                seconds["decode"] += time.perf_counter() - t
                if not batch:
                    continue
                x = np.stack(batch)
                if sum(len(k) for k in kept) < keep:
                    kept.append(x[:keep - sum(len(k) for k in kept)])
                t = time.perf_counter()
                top, proba = self.predict_arrays(x, advance)
                seconds["predict"] += time.perf_counter() - t
                names.extend(batch_names)
                indices.append(top)
                probas.append(proba)

        self._with_progress(len(files), progress, work)
        has_proba = all(p is not None for p in probas)
        result = Predictions(
            self.class_names,
            np.concatenate(indices).astype(np.int64) if indices else np.zeros(0, np.int64),
            (np.concatenate(probas) if probas else np.zeros((0, len(self.class_names)))) if has_proba else None,
            paths=names, skipped=skipped, seconds=seconds)
        images = np.concatenate(kept) if kept else np.zeros((0, 32, 32, 3), np.uint8)
        return result, images


def _as_batch(images: np.ndarray) -> np.ndarray:
    x = images[None] if images.ndim == 3 else images
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3) or x.dtype != np.uint8:
        raise DataError(f"images must be uint8 RGB of shape (N, 32, 32, 3) with values 0..255, as training saw them; "
                        f"got {x.dtype}{tuple(images.shape)} (decode files with a list of paths instead)")
    return np.ascontiguousarray(x)


def load(run: str | os.PathLike, *, checkpoint: str = "model", tta: str | None = None,
         other_sizes: str | None = None, batch_size: int = 256, trust_pipeline: bool = False) -> Predictor:
    """The predictor of a finished train or classic run (``cifarx.load``).

    ``tta``: none | flip | flip_translate, None for the run's own; ``other_sizes``: refuse | pad |
    resize for images that are not 32x32, None for the run's own; ``checkpoint``: model | best |
    last (train runs); ``trust_pipeline``: unpickle a classic pipeline cifarx did not sign on this
    machine (it can run code).

        >>> import cifarx
        >>> p = cifarx.load("outputs/train/2025-01-01_12-00-00_123").predict(["cat.png", "ship.jpg"])
        >>> p.labels, p.confidence
    """
    from cifarx.config.schema import TTA, OtherSizes

    for key, value, allowed in (("tta", tta, TTA), ("other_sizes", other_sizes, OtherSizes)):
        if value is not None and str(value) not in {v.value for v in allowed}:
            raise ConfigError(f"{key}={value!r}; choose one of: {', '.join(v.value for v in allowed)}")
    if int(batch_size) <= 0:
        raise ConfigError(f"batch_size={batch_size} must be a positive integer")
    info = describe_run(run, str(checkpoint))
    network = pipeline = None
    if info.model_path is not None:
        from cifarx.models import load_model
        from cifarx.process import import_keras_quietly

        keras = import_keras_quietly()
        network = load_model(info.model_path)
        if info.layer is not None:
            network = keras.Model(network.input, network.get_layer(info.layer).output)
        elif int(network.output.shape[-1]) != len(info.class_names):
            raise RunError(f"the model of run '{run}' has {network.output.shape[-1]} outputs, but the run records "
                           f"{len(info.class_names)} classes; the run's files do not belong together")
    if info.kind == "classic":
        from cifarx.commands.classic import load_pipeline

        pipeline, _ = load_pipeline(str(info.pipeline_run), info.dim, info.class_names, trust=trust_pipeline)
    return Predictor(info, network, pipeline, tta=tta, other_sizes=other_sizes, batch_size=batch_size)


def describe(info: RunInfo) -> dict[str, Any]:
    """The run's facts a prediction records (metrics.json)."""
    out = {"run": str(info.path), "run_kind": info.kind, "class_names": list(info.class_names)}
    if info.model_path is not None:
        out["model_path"] = str(info.model_path)
    if info.kind == "classic":
        out.update(features=info.features, layer=info.layer, pipeline_run=str(info.pipeline_run))
    return out
