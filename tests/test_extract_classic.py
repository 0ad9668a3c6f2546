"""`cifarx extract` then `cifarx classic`: features match the data, classifiers write every artifact."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import compose, run_cli, write_batches_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("features")
    root = write_batches_dir(tmp / "data", train_per_class=10, test_per_class=4)
    common = [f"data.root={root}", f"data.cache_dir={tmp / 'cache'}"]
    train = run_cli(["train", *common, "trainer.epochs=1", "trainer.batch_size=16"], cwd=tmp)
    assert train.returncode == 0, train.stderr[-2000:]
    (train_run,) = (tmp / "outputs" / "train").iterdir()
    result = run_cli(["extract", f"run={train_run}", "batch_size=32"], cwd=tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    (features,) = (tmp / "outputs" / "extract").iterdir()
    return tmp, train_run, features


def test_features_have_the_right_shape_dtype_and_labels(extracted):
    from omegaconf import OmegaConf

    from cifarx.data import load_dataset

    _, train_run, features = extracted
    meta = json.loads((features / "features.json").read_text())
    assert meta["layer"] == "flatten_1" and meta["dim"] == 64  # the layer before the classifier
    assert meta["splits"] == {"train": 80, "val": 20, "test": 40}
    assert meta["source_run"] == str(train_run) and meta["source_test_accuracy"] is not None
    cfg = OmegaConf.load(train_run / "config.yaml")
    data = load_dataset(cfg.data, cfg.seed)
    for split, (_, y) in data.splits().items():
        x = np.load(features / f"features_{split}.npy")
        assert x.dtype == np.float32 and x.shape == (len(y), 64)
        np.testing.assert_array_equal(np.load(features / f"labels_{split}.npy"), y)


def test_features_equal_the_model_layer_output(extracted):
    import keras
    from omegaconf import OmegaConf

    from cifarx.data import load_dataset
    from cifarx.models import load_model

    _, train_run, features = extracted
    model = load_model(train_run / "model.keras")
    cut = keras.Model(model.input, model.get_layer("flatten_1").output)
    data = load_dataset(OmegaConf.load(train_run / "config.yaml").data, 42)
    expected = np.asarray(cut(data.x_test, training=False))
    np.testing.assert_allclose(np.load(features / "features_test.npy"), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("clf", ["logreg", "rf", "knn", "svm"])
def test_each_classifier_runs_end_to_end(extracted, clf):
    tmp, _, features = extracted
    out = tmp / "classic" / clf
    figures = clf == "logreg"  # a classic run's figures, once (matplotlib's second a run)
    result = run_cli(["classic", f"clf={clf}", f"features={features}", f"hydra.run.dir={out}",
                      f"figures={str(figures).lower()}"], cwd=tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    with open(out / "confusion_matrix.csv") as f:
        matrix = np.array([[int(v) for v in row[1:]] for row in list(csv.reader(f))[1:]])
    assert matrix.sum() == metrics["test_count"] == 40
    assert metrics["test_accuracy"] == pytest.approx(np.trace(matrix) / 40)
    assert metrics["clf"] == clf and metrics["fit_seconds"] >= 0 and metrics["dim"] == 64
    assert 0 <= metrics["train_accuracy"] <= 1 and 0 <= metrics["val_accuracy"] <= 1
    for name in ("pipeline.joblib", "classification_report.txt", "status.json", *(["confusion_matrix.png"] * figures)):
        assert (out / name).exists()
    assert json.loads((out / "status.json").read_text())["status"] == "completed"


def test_saved_pipeline_reloads_and_predicts_the_same(extracted):
    import joblib

    tmp, _, features = extracted
    out = tmp / "classic" / "reload"
    result = run_cli(["classic", "clf=logreg", "scale=standard", "pca=8", f"features={features}",
                      f"hydra.run.dir={out}"], cwd=tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    pipeline = joblib.load(out / "pipeline.joblib")
    assert list(pipeline.named_steps) == ["scale", "pca", "clf"]
    x, y = np.load(features / "features_test.npy"), np.load(features / "labels_test.npy")
    accuracy = float((pipeline.predict(x) == y).mean())
    assert accuracy == pytest.approx(json.loads((out / "metrics.json").read_text())["test_accuracy"])
    again = tmp / "classic" / "again"
    result = run_cli(["classic", f"pipeline={out}", f"features={features}", f"hydra.run.dir={again}"], cwd=tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((again / "metrics.json").read_text())["test_accuracy"] == pytest.approx(accuracy)


def test_pixels_baseline(extracted):
    tmp, train_run, _ = extracted
    from omegaconf import OmegaConf

    root = OmegaConf.load(train_run / "config.yaml").data.root
    out = tmp / "classic" / "pixels"
    result = run_cli(["classic", "clf=knn", "features=pixels", "max_train=40", f"data.root={root}",
                      f"data.cache_dir={tmp / 'cache'}", f"hydra.run.dir={out}"], cwd=tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dim"] == 3072 and metrics["fit_count"] == 40 and metrics["train_count"] == 80


def test_classic_can_skip_or_sample_the_training_split_and_chunks_change_no_prediction(extracted):
    from cifarx.commands.classic import run_classic
    from cifarx.run.lifecycle import run_command

    tmp, _, features = extracted
    common = ["clf=knn", f"features={features}", "clf.estimator.n_neighbors=3"]
    runs = {}
    for name, extra in {"whole": ["predict_chunk=100000"], "chunked": ["predict_chunk=7"],
                        "skipped": ["score_train=false"], "sampled": ["score_train_max=30"]}.items():
        runs[name] = tmp / "classic" / f"scoring_{name}"
        run_command("classic", run_classic, compose("classic", [*common, *extra]), run_dir=runs[name])
    m = {name: json.loads((path / "metrics.json").read_text()) for name, path in runs.items()}
    assert m["chunked"]["test_accuracy"] == m["whole"]["test_accuracy"]
    assert m["chunked"]["train_accuracy"] == m["whole"]["train_accuracy"] and m["whole"]["train_scored"] == 80
    assert (runs["chunked"] / "confusion_matrix.csv").read_text() == (runs["whole"] / "confusion_matrix.csv").read_text()
    assert "train_accuracy" not in m["skipped"] and m["skipped"]["train_scored"] == 0
    assert m["skipped"]["test_accuracy"] == m["whole"]["test_accuracy"]
    assert m["sampled"]["train_scored"] == 30 and "train_accuracy" in m["sampled"]


def test_classic_without_features_says_to_extract_first(tmp_path):
    result = run_cli(["classic", "clf=rf"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("cifarx classic: error: no features given: run `cifarx extract")
    result = run_cli(["classic", f"features={tmp_path}"], cwd=tmp_path)
    assert result.returncode == 2 and "holds no extracted features; run `cifarx extract" in result.stderr


def test_pipeline_on_features_of_another_dimension_is_refused(extracted, tmp_path):
    from cifarx.commands.classic import run_classic
    from cifarx.run.lifecycle import run_command

    tmp, _, features = extracted
    fitted = tmp_path / "fitted"  # its own pipeline: no test depends on another having run first
    run_command("classic", run_classic, compose("classic", ["clf=logreg", f"features={features}"]), run_dir=fitted)
    other = tmp_path / "other"
    other.mkdir()
    for name in ("features.json", "status.json", "config.yaml"):
        (other / name).write_bytes((features / name).read_bytes())
    meta = json.loads((other / "features.json").read_text())
    meta["dim"] = 8
    (other / "features.json").write_text(json.dumps(meta))
    for split, n in meta["splits"].items():
        np.save(other / f"features_{split}.npy", np.zeros((n, 8), np.float32))
        np.save(other / f"labels_{split}.npy", np.load(features / f"labels_{split}.npy"))
    result = run_cli(["classic", f"pipeline={fitted}", f"features={other}"], cwd=tmp_path)
    assert result.returncode == 2
    assert "expects 64-d features, these are 8-d" in result.stderr


def test_extract_unknown_layer_lists_the_layers(extracted):
    tmp, train_run, _ = extracted
    result = run_cli(["extract", f"run={train_run}", "layer=nope"], cwd=tmp)
    assert result.returncode == 2
    assert "layer='nope' is not a layer of this model; choose one of:" in result.stderr
    assert "flatten_1" in result.stderr and "Traceback" not in result.stderr


def test_extract_on_a_run_without_a_model(tmp_path):
    run = tmp_path / "fake"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 1\n")
    (run / "status.json").write_text(json.dumps({"status": "completed", "command": "train"}))
    result = run_cli(["extract", f"run={run}"], cwd=tmp_path)
    assert result.returncode == 2 and "has no model.keras" in result.stderr
