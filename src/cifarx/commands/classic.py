"""`cifarx classic`: a scikit-learn pipeline on extracted features (or raw pixels).

The classifier is whatever ``clf.estimator`` names (a ``_target_`` class and its parameters),
optionally behind StandardScaler and PCA. Predictions go to the same evaluator as training.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from cifarx.config.schema import Scale
from cifarx.config.validate import validate_data
from cifarx.console import working
from cifarx.errors import ConfigError, DataError, RunError, one_line, require
from cifarx.run.rundir import RunDir, atomic_path, read_json, require_run

log = logging.getLogger("cifarx")
EXTRACT_FIRST = ("run `cifarx extract run=<train run dir>` first, then "
                 "`cifarx classic features=<extract run dir>` (or features=pixels)")

PIPELINE_FILE = "pipeline.joblib"
PIPELINE_META = "pipeline.json"


def load_features(cfg) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str], dict]:
    """Splits of (features, labels), class names and a description of where they came from."""
    if str(cfg.features) == "pixels":
        from cifarx.data import load_dataset

        data = load_dataset(cfg.data, int(cfg.seed))
        splits = {k: (x.reshape(len(x), -1).astype(np.float32) / 255.0, y) for k, (x, y) in data.splits().items()}
        return splits, data.class_names, {"features": "pixels", "data": data.source}
    path = Path(str(cfg.features)).expanduser()
    if not (path / "features.json").exists():
        raise RunError(f"features='{cfg.features}' holds no extracted features; {EXTRACT_FIRST}")
    run = require_run(path, "extract", needs=("features.json", "features_train.npy", "features_test.npy"))
    meta = read_json(run / "features.json")
    splits = {}
    for split in meta["splits"]:
        x = np.load(run / f"features_{split}.npy", mmap_mode="r")
        y = np.load(run / f"labels_{split}.npy")
        if len(x) != len(y) or x.ndim != 2:
            raise DataError(f"{run}: features_{split}.npy {x.shape} does not match labels_{split}.npy {y.shape}")
        splits[split] = (np.asarray(x), y)
    return splits, meta["class_names"], {"features": str(run), "layer": meta["layer"], "dim": meta["dim"],
                                         "source_run": meta.get("source_run"),
                                         "source_test_accuracy": meta.get("source_test_accuracy")}


def build_pipeline(cfg):
    """StandardScaler? -> PCA? -> the configured estimator, as one sklearn Pipeline."""
    from hydra.utils import instantiate
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from cifarx.config.build import check_tree

    check_tree(cfg.clf.estimator, "clf.estimator")  # before anything is called: only scikit-learn estimators
    try:
        estimator = instantiate(cfg.clf.estimator)
    except Exception as exc:
        cause = exc.__cause__ or exc
        raise ConfigError(f"cannot build clf '{cfg.clf.name}': {one_line(str(cause)).split(' full_key')[0]}") from exc
    steps = []
    if str(cfg.scale) == "standard":
        steps.append(("scale", StandardScaler()))
    if cfg.pca:
        steps.append(("pca", PCA(n_components=int(cfg.pca), random_state=int(cfg.seed))))
    steps.append(("clf", estimator))
    return Pipeline(steps)


def _signing_key() -> bytes:
    """This machine's (this user's) secret for signing pipelines, made on first use (mode 0600)."""
    import os
    import secrets

    home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "cifarx"
    key_file = home / "pipeline-signing.key"
    if not key_file.exists():
        home.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(secrets.token_bytes(32))
            except BaseException:  # a full disk: never an empty key that would sign everything
                key_file.unlink(missing_ok=True)
                raise
    return key_file.read_bytes()


def pipeline_signature(path: Path) -> tuple[str, str]:
    """(SHA-256 of the file, HMAC-SHA256 of that hash under this machine's key)."""
    import hashlib
    import hmac

    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return digest, hmac.new(_signing_key(), digest.encode(), hashlib.sha256).hexdigest()


def load_pipeline(path_str: str, dim: int, class_names: list[str], trust: bool = False):
    """A fitted pipeline from a classic run, unpickled only if cifarx signed it on this machine
    (or ``trust``): a pickle runs code when loaded, so a file from elsewhere is refused first."""
    import hmac

    import joblib

    run = require_run(path_str, "classic", needs=(PIPELINE_FILE, PIPELINE_META))
    meta = read_json(run / PIPELINE_META)
    if meta.get("dim") != dim:
        raise DataError(f"the classifier in {run} expects {meta.get('dim')}-d features, these are {dim}-d")
    if meta.get("class_names") != class_names:
        raise DataError(f"the classifier in {run} was fitted on classes {meta.get('class_names')}, "
                        f"these features have {class_names}")
    digest, signature = pipeline_signature(run / PIPELINE_FILE)
    signed = hmac.compare_digest(str(meta.get("signature", "")), signature)
    if not signed and not trust:
        why = ("its contents changed since cifarx wrote it (damaged or replaced)" if meta.get("sha256") not in
               (None, digest) else "cifarx did not write it on this machine")
        raise RunError(f"refusing to unpickle '{run / PIPELINE_FILE}': {why}; loading a pickle runs code, so "
                       "only if you trust its source pass trust_pipeline=true")
    if not signed:
        log.warning("trust_pipeline=true: unpickling %s, which cifarx did not sign (it can run code)",
                    run / PIPELINE_FILE)
    try:
        return joblib.load(run / PIPELINE_FILE), meta
    except Exception as exc:
        raise RunError(f"cannot load '{run / PIPELINE_FILE}': {type(exc).__name__} (damaged?); "
                       "fit it again with `cifarx classic`") from exc




def _check_fit_sizes(cfg, n_samples: int, dim: int) -> None:
    """Limits scikit-learn checks only deep inside fit/predict, as one line naming the value."""
    if cfg.pca and int(cfg.pca) > min(n_samples, dim):
        raise ConfigError(f"pca={cfg.pca} is more components than the data has (min of {n_samples} training "
                          f"samples and {dim} features); choose pca <= {min(n_samples, dim)}")
    neighbors = cfg.clf.estimator.get("n_neighbors")
    if neighbors is not None and int(neighbors) > n_samples:
        raise ConfigError(f"clf.estimator.n_neighbors={neighbors} is more than the {n_samples} training samples; "
                          f"choose n_neighbors <= {n_samples} (or more data: max_train)")


def predict_in_chunks(pipeline, x: np.ndarray, split: str, chunk: int):
    """(probabilities or None, predictions) of ``x``, ``chunk`` rows at a time with progress:
    KNN and kernel SVMs take minutes to predict 50,000 rows, and rows are independent."""
    from cifarx.console import progress_steps

    has_proba = hasattr(pipeline, "predict_proba")
    probas, preds = [], []
    starts = range(0, len(x), max(1, chunk))
    start = time.perf_counter()
    for i in progress_steps(starts, f"scoring {split} ({len(x):,} rows)"):
        part = x[i:i + chunk]
        proba = pipeline.predict_proba(part) if has_proba else None
        probas.append(proba)
        preds.append(proba.argmax(axis=1) if proba is not None else np.asarray(pipeline.predict(part)))
    log.info("scored %s (%s rows) in %.1fs", split, f"{len(x):,}", time.perf_counter() - start)
    if not preds:
        return None, np.zeros(0, dtype=np.int64)
    return (np.concatenate(probas) if has_proba else None), np.concatenate(preds)


def validate_classic(cfg: DictConfig) -> None:
    from cifarx.config.build import check_tree

    check_tree(cfg.clf.estimator, "clf.estimator")
    require(not OmegaConf.is_missing(cfg, "features"), f"no features given: {EXTRACT_FIRST}")
    require(not (cfg.scale == Scale.standard and "StandardScaler" in str(cfg.clf.estimator)),
            f"clf={cfg.clf.name} already standardises its features (a StandardScaler in clf.estimator); "
            "scale=standard would do it twice: leave scale=none")
    if str(cfg.features) == "pixels":
        validate_data(cfg.data)
    else:
        require(Path(str(cfg.features)).expanduser().is_dir(),
                f"features='{cfg.features}' is not a directory; {EXTRACT_FIRST}")


def run_classic(cfg, run: RunDir) -> dict[str, Any]:
    import joblib

    from cifarx.data import stratified_subset
    from cifarx.evaluation import Evaluation, TestPredictions, split_scores, write_evaluation

    splits, class_names, origin = load_features(cfg)
    dim = splits["train"][0].shape[1]
    if cfg.score_train and cfg.score_train_max is not None and cfg.score_train_max < len(class_names):
        raise ConfigError(f"score_train_max={cfg.score_train_max} is smaller than the number of classes "
                          f"({len(class_names)}); a stratified sample needs one row per class")
    fit_seconds, fit_count = 0.0, None
    if cfg.pipeline is not None:
        pipeline, _ = load_pipeline(str(cfg.pipeline), dim, class_names, trust=bool(cfg.get("trust_pipeline")))
    else:
        pipeline = build_pipeline(cfg)
        x_fit, y_fit = stratified_subset(*splits["train"], cfg.max_train, int(cfg.seed), "max_train")
        fit_count = int(len(y_fit))
        _check_fit_sizes(cfg, fit_count, dim)
        log.info("fitting %s on %d x %d features ...", cfg.clf.name, *x_fit.shape)
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught, working(f"fitting {cfg.clf.name}"):
            warnings.simplefilter("always")
            try:
                pipeline.fit(x_fit, y_fit)
            except ValueError as exc:  # scikit-learn's own parameter and data checks
                raise ConfigError(f"clf '{cfg.clf.name}' refused its settings or data: "
                                  f"{one_line(str(exc))[:300]}") from exc
        fit_seconds = time.perf_counter() - start
        for message in {one_line(str(w.message)) for w in caught if issubclass(w.category, UserWarning)}:
            log.warning("scikit-learn: %s", message[:300])
        log.info("fitted in %.1fs", fit_seconds)
        with atomic_path(run.target(PIPELINE_FILE)) as tmp:
            joblib.dump(pipeline, tmp)
        digest, signature = pipeline_signature(run.file(PIPELINE_FILE))
        run.write_json(PIPELINE_META, {"dim": dim, "class_names": class_names, "clf": cfg.clf.name,
                                       "sha256": digest, "signature": signature})

    scores, predict_seconds, test, train_scored = {}, 0.0, None, 0
    for split, (x, y) in splits.items():
        if split == "train":
            if not cfg.score_train:
                log.info("not scoring the training split (score_train=false)")
                continue
            x, y = stratified_subset(x, y, cfg.score_train_max, int(cfg.seed), "score_train_max")
            train_scored = int(len(y))
        start = time.perf_counter()
        proba, pred = predict_in_chunks(pipeline, x, split, int(cfg.predict_chunk))
        predict_seconds += time.perf_counter() - start
        scores[split] = split_scores(y, proba, pred, len(class_names))
        if split == "test":
            test = (pred, proba)
    extra = {"clf": cfg.clf.name, "estimator": OmegaConf.to_container(cfg.clf.estimator, resolve=True),
             "scale": str(cfg.scale), "pca": cfg.pca, "fit_seconds": round(fit_seconds, 3),
             "predict_seconds": round(predict_seconds, 3), "train_count": int(len(splits["train"][1])),
             "train_scored": train_scored,
             "fit_count": fit_count,
             "dim": dim, "seed": int(cfg.seed), **origin}
    evaluation = Evaluation(class_names, scores, TestPredictions(splits["test"][1], test[0], test[1]), extra=extra)
    metrics = write_evaluation(run, evaluation, figures=bool(cfg.figures))
    log.info("%s: test accuracy %.4f; run directory %s", cfg.clf.name, metrics["test_accuracy"], run.path)
    return metrics
