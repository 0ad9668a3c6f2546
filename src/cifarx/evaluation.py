"""The evaluator shared by `train`, `evaluate` and `classic`: metrics, reports, matrices, plots.

Everything is computed from predictions with scikit-learn; nothing is re-implemented.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, log_loss

from cifarx.console import print_matrix, print_table
from cifarx.run.rundir import RunDir

log = logging.getLogger("cifarx")

TOP_CONFUSED = 5
MISCLASSIFIED_SHOWN = 24


def _shift(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """NHWC images moved by (dy, dx) pixels, the uncovered border filled by reflection."""
    pad = max(abs(dy), abs(dx))
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    h, w = x.shape[1:3]
    return padded[:, pad - dy:pad - dy + h, pad - dx:pad - dx + w]


def tta_views(x: np.ndarray, tta: str) -> list[tuple[float, np.ndarray]]:
    """(weight, images) pairs whose weighted mean of predictions is the TTA prediction.

    ``flip``: the image and its mirror image, equally (so a mirrored input gets exactly the same
    prediction). ``flip_translate``: half that, half the same for 1-pixel shifts up-left and
    down-right (airbench's level-2 TTA).
    """
    mirror = x[:, :, ::-1]
    if tta == "none":
        return [(1.0, x)]
    if tta == "flip":
        return [(0.5, x), (0.5, mirror)]
    if tta == "flip_translate":
        shifted = [_shift(v, d, d) for d in (-1, 1) for v in (x, mirror)]
        return [(0.25, x), (0.25, mirror)] + [(0.125, v) for v in shifted]
    from cifarx.config.schema import TTA

    raise ValueError(f"tta={tta!r}; choose one of: {', '.join(t.value for t in TTA)}")


def predict_proba(model, x: np.ndarray, batch_size: int, tta: str = "none",
                  description: str | None = None) -> np.ndarray:
    """Class probabilities; with ``tta`` the weighted mean over augmented views (inference mode,
    so augmentation layers inside the model stay off). With ``description``, a bar (or, in logs,
    a line now and then) counts the images predicted, over all views."""
    from contextlib import nullcontext

    from cifarx.console import progress

    views = tta_views(np.asarray(x), tta)
    with progress(description, len(x) * len(views)) if description else nullcontext() as advance:
        return average_views(lambda view: predict_in_full_batches(model, view, batch_size, advance), views)


def average_views(predict: Callable[[np.ndarray], np.ndarray], views) -> np.ndarray:
    """The weighted mean of ``predict``'s probabilities over test-time augmentation ``views``
    (:func:`tta_views`), in float64."""
    total = None
    for weight, view in views:
        part = weight * np.asarray(predict(view), dtype=np.float64)
        total = part if total is None else total + part
    return total


def predict_in_full_batches(model, x: np.ndarray, batch_size: int,
                            advance: Callable[[int], None] | None = None) -> np.ndarray:
    """``model.predict`` with every batch the same shape (the last one zero-padded, its padding
    dropped): one traced prediction function serves every split and view, where each distinct
    remainder would trace (compile) it again. Inference is per image, so the result is the same.
    ``advance(n)`` is told each batch's images as they are predicted."""
    n = len(x)
    full = n - n % batch_size
    counter = [_batch_counter(advance, batch_size, full)] if advance is not None else []
    parts = [np.asarray(model.predict(x[:full], batch_size=batch_size, verbose=0, callbacks=counter))] if full else []
    if full < n:
        tail = np.zeros((batch_size, *x.shape[1:]), x.dtype)
        tail[:n - full] = x[full:]
        parts.append(np.asarray(model.predict(tail, batch_size=batch_size, verbose=0))[:n - full])
        if advance is not None:
            advance(n - full)
    return np.concatenate(parts)


def _batch_counter(advance: Callable[[int], None], batch_size: int, total: int):
    """A Keras callback that tells ``advance`` how many more of ``total`` images are predicted.
    Keras calls it once per execution: with ``steps_per_execution`` > 1, ``batch`` is the last of
    several (Keras is imported by then)."""
    import keras

    class BatchCounter(keras.callbacks.Callback):
        async_safe = True  # counts only: Keras need not wait for each batch's outputs (JAX)
        done = 0

        def on_predict_batch_end(self, batch, logs=None):
            now = min((batch + 1) * batch_size, total)
            advance(now - self.done)
            self.done = now

    return BatchCounter()


def split_scores(y_true: np.ndarray, proba: np.ndarray | None, y_pred: np.ndarray,
                 num_classes: int) -> dict[str, float]:
    scores = {"accuracy": float(accuracy_score(y_true, y_pred))}
    if proba is not None:
        p = np.clip(proba, 1e-7, 1.0)
        p /= p.sum(axis=1, keepdims=True)  # float32 softmax rows can miss 1.0 by more than sklearn allows
        scores["loss"] = float(log_loss(y_true, p, labels=range(num_classes)))
    return scores


def most_confused(matrix: np.ndarray, class_names: list[str], top: int = TOP_CONFUSED) -> list[dict]:
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.dstack(np.unravel_index(np.argsort(-off, axis=None), off.shape))[0]
    pairs = []
    for true, pred in order[:top]:
        if off[true, pred] == 0:
            break
        pairs.append({"true": class_names[true], "predicted": class_names[pred],
                      "count": int(off[true, pred]),
                      "rate": float(off[true, pred] / max(matrix[true].sum(), 1))})
    return pairs


@dataclass
class TestPredictions:
    """The test split and what a model (or pipeline) made of it: the reports and figures come from it."""

    y: np.ndarray
    pred: np.ndarray
    proba: np.ndarray | None = None  # class probabilities, when the model gives them (misclassified.png)
    x: np.ndarray | None = None  # the images (misclassified.png)


@dataclass
class Evaluation:
    """Everything an evaluation writes: per-split scores, the test predictions, the training history
    (curves.png) and what the command adds to metrics.json (``extra``)."""

    class_names: list[str]
    scores: dict[str, dict[str, float]]
    test: TestPredictions
    history: dict[str, list[float]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scoring:
    """How a Keras model is scored: batch size, test-time augmentation (val and test), whether the
    train split is scored too, whether the PNG figures are drawn."""

    batch_size: int
    tta: str = "none"
    score_train: bool = True
    figures: bool = True


def write_evaluation(run: RunDir, evaluation: Evaluation, figures: bool = True) -> dict[str, Any]:
    """Write every evaluation artifact into ``run`` (the PNG figures only with ``figures``) and
    return the metrics dict it saved."""
    class_names, scores, test = evaluation.class_names, evaluation.scores, evaluation.test
    y_test, pred_test = test.y, test.pred
    log.info("writing the report, confusion matrix%s into %s", " and figures" if figures else "", run.path)
    labels = list(range(len(class_names)))
    matrix = confusion_matrix(y_test, pred_test, labels=labels)
    report_text = classification_report(y_test, pred_test, labels=labels, target_names=class_names,
                                         digits=4, zero_division=0)
    report = classification_report(y_test, pred_test, labels=labels, target_names=class_names,
                                   output_dict=True, zero_division=0)
    run.write_text("classification_report.txt", report_text)
    run.write_json("classification_report.json", report)
    run.write_csv("confusion_matrix.csv", ["true\\predicted", *class_names],
                  [[name, *row] for name, row in zip(class_names, matrix.tolist())])
    if figures:
        _write_figures(run, matrix, evaluation)
    pairs = most_confused(matrix, class_names)
    metrics: dict[str, Any] = {}
    for split, values in scores.items():
        for key, value in values.items():
            metrics[f"{split}_{key}"] = value
    metrics.update({"test_count": int(len(y_test)), "class_names": class_names, "most_confused": pairs})
    metrics.update(evaluation.extra)
    run.write_metrics(metrics)
    if run.job.multirun:  # one line per job and one table at the end (cifarx.sweep); the files hold the rest
        return metrics
    print_table("accuracy", ["split", "accuracy", "loss"],
                [[s, v["accuracy"], v.get("loss", "-")] for s, v in scores.items()])
    print_matrix("test confusion matrix (rows: true, columns: predicted)", class_names, matrix.tolist())
    if pairs:
        print_table("most confused pairs (test)", ["true", "predicted", "count", "share of true class"],
                    [[p["true"], p["predicted"], p["count"], p["rate"]] for p in pairs])
    return metrics


def _write_figures(run: RunDir, matrix, evaluation: Evaluation) -> None:
    """confusion_matrix(_normalized).png, curves.png, misclassified.png (seconds: matplotlib), with
    a bar that counts them."""
    from cifarx.console import progress_steps

    class_names, history = evaluation.class_names, evaluation.history
    y_test, pred_test, proba_test, x_test = (evaluation.test.y, evaluation.test.pred, evaluation.test.proba,
                                             evaluation.test.x)

    def plots():  # imported in the first step: matplotlib's import is part of the wait
        from cifarx import plots as module

        return module

    def misclassified():
        wrong = np.flatnonzero(pred_test != y_test)
        confidence = proba_test[wrong, pred_test[wrong]]
        shown = wrong[np.argsort(-confidence)][:MISCLASSIFIED_SHOWN]
        titles = [f"{class_names[y_test[i]]} -> {class_names[pred_test[i]]}\n{proba_test[i, pred_test[i]]:.2f}"
                  for i in shown]
        return plots().image_grid_figure(np.asarray(x_test[shown]), titles,
                                         title="most confident mistakes (true -> predicted, confidence)")

    figures = {"confusion_matrix.png": lambda: plots().confusion_figure(matrix, class_names, False,
                                                                        "test confusion matrix"),
               "confusion_matrix_normalized.png": lambda: plots().confusion_figure(
                   matrix, class_names, True, "test confusion matrix (row-normalised)")}
    if history:
        figures["curves.png"] = lambda: plots().curves_figure(history)
    if x_test is not None and proba_test is not None:
        figures["misclassified.png"] = misclassified
    for name in progress_steps(list(figures), "writing figures"):
        run.save_figure(name, figures[name]())


def evaluate_model(run: RunDir, model, data, scoring: Scoring, history=None,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Predict every split with a Keras model and write the evaluation. Test-time augmentation
    applies to val and test; the train split is scored plainly (a fit diagnostic), or not at all."""
    tta = scoring.tta
    scores, test = {}, None
    for split, (x, y) in data.splits().items():
        if split == "train" and not scoring.score_train:
            continue
        views = "" if split == "train" or tta == "none" else f", {tta} test-time augmentation"
        log.info("scoring %s (%s images%s) ...", split, f"{len(y):,}", views)
        proba = predict_proba(model, x, scoring.batch_size, "none" if split == "train" else tta,
                              description=f"scoring {split}")
        pred = proba.argmax(axis=1)
        scores[split] = split_scores(y, proba, pred, data.num_classes)
        if split == "test":
            test = (proba, pred)
    evaluation = Evaluation(data.class_names, scores, TestPredictions(data.y_test, test[1], test[0], data.x_test),
                            history, {**(extra or {}), "tta": tta})
    return write_evaluation(run, evaluation, figures=scoring.figures)
