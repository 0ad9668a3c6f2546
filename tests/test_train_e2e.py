"""`cifarx train` end to end on tiny data: every artifact exists and agrees with the others."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import (
    compose,
    run_cli,
    tiny_train_overrides,
    write_batches_dir,
    write_image_dir,
    write_zip,
)

pytestmark = pytest.mark.slow

COMPILED_STEPS = True  # every artifact of a run made by the compiled (traced) steps users run (conftest: other modules run steps eagerly)

ARTIFACTS = ["config.yaml", "status.json", "provenance.json", "metrics.json", "history.csv",
             "model_summary.txt", "best.keras", "last.keras", "model.keras", "classification_report.txt",
             "classification_report.json", "confusion_matrix.csv", "confusion_matrix.png",
             "confusion_matrix_normalized.png", "curves.png", "misclassified.png", "train.log"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real CLI training run (1 epoch, default seed CNN) shared by the tests below."""
    tmp = tmp_path_factory.mktemp("e2e")
    root = write_batches_dir(tmp / "data", train_per_class=12, test_per_class=5)
    result = run_cli(["train", f"data.root={root}", f"data.cache_dir={tmp / 'cache'}", "trainer.epochs=1",
                      "trainer.batch_size=16", "data=augment", "figures=true"], cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted((tmp / "outputs" / "train").iterdir())
    assert len(runs) == 1
    return runs[0], result, tmp


def test_eager_steps_train_the_numbers_the_traced_steps_do(trained):
    """trainer.run_eagerly (pdb-able steps; the suite's tiny runs use it) changes how a step runs,
    not what it computes: the traced run above, repeated eagerly, ends at the same losses."""
    run, _, tmp = trained
    cfg = OmegaConf.load(run / "config.yaml")
    eager = tmp / "eager"
    result = run_cli(["train", f"data.root={cfg.data.root}", f"data.cache_dir={cfg.data.cache_dir}", "trainer.epochs=1",
                      "trainer.batch_size=16", "data=augment", "trainer.run_eagerly=true", f"hydra.run.dir={eager}"],
                     cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    traced, stepped = (json.loads((r / "metrics.json").read_text()) for r in (run, eager))
    assert cfg.trainer.run_eagerly is False and OmegaConf.load(eager / "config.yaml").trainer.run_eagerly is True
    for key in ("train_loss", "val_loss", "test_loss"):
        assert stepped[key] == pytest.approx(traced[key], rel=1e-3), key


def read_matrix(run):
    with open(run / "confusion_matrix.csv") as f:
        rows = list(csv.reader(f))
    return rows[0][1:], np.array([[int(v) for v in r[1:]] for r in rows[1:]])


def test_every_artifact_is_written(trained):
    run, _, _ = trained
    missing = [name for name in ARTIFACTS if not (run / name).exists()]
    assert missing == []
    for png in run.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((run / "status.json").read_text())["status"] == "completed"


def test_metrics_agree_with_the_confusion_matrix(trained):
    run, _, _ = trained
    metrics = json.loads((run / "metrics.json").read_text())
    names, matrix = read_matrix(run)
    assert names == metrics["class_names"]
    assert matrix.sum() == metrics["test_count"] == 50
    assert metrics["test_accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    report = json.loads((run / "classification_report.json").read_text())
    assert report["accuracy"] == pytest.approx(metrics["test_accuracy"])
    for key in ("train_accuracy", "val_accuracy", "test_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["test_loss"] > 0
    assert metrics["params"] == 72_922 and metrics["epochs"] == 1 and metrics["seconds"] > 0
    assert metrics["augmentation"] is True and metrics["preprocessing"] == "zscore"


def test_saved_model_reproduces_the_test_accuracy(trained):
    from cifarx.data import load_dataset
    from cifarx.models import load_model

    run, _, _ = trained
    cfg = OmegaConf.load(run / "config.yaml")
    data = load_dataset(cfg.data, cfg.seed)
    model = load_model(run / "model.keras")
    pred = model.predict(data.x_test, verbose=0).argmax(axis=1)
    metrics = json.loads((run / "metrics.json").read_text())
    assert float((pred == data.y_test).mean()) == pytest.approx(metrics["test_accuracy"])


def test_run_explains_itself(trained):
    run, result, _ = trained
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["seed"] == 42 and prov["versions"]["keras"] and prov["hardware"]["cpu_count"]
    assert len(prov["data"]["sha256"]) == 64 and prov["data"]["format"] == "batches"
    cfg = OmegaConf.load(run / "config.yaml")
    assert cfg.trainer.epochs == 1 and "${" not in (run / "config.yaml").read_text()
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and {"loss", "val_accuracy", "learning_rate"} <= set(rows[0])
    assert "epoch 1/1" in result.stderr  # one plain progress line per epoch off a terminal
    assert "test confusion matrix" in result.stdout


def test_evaluate_reproduces_the_training_run(trained):
    run, _, tmp = trained
    result = run_cli(["evaluate", f"run={run}", "figures=true"], cwd=tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    (ev,) = (tmp / "outputs" / "evaluate").iterdir()
    metrics = json.loads((ev / "metrics.json").read_text())
    train_metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(train_metrics["test_accuracy"])
    assert metrics["source_run"] == str(run)
    assert (ev / "confusion_matrix.png").exists()
    now = f"{metrics['test_accuracy']:.4f}"
    assert f"test accuracy {now} now (model weights, tta none), {train_metrics['test_accuracy']:.4f} recorded by " \
           f"the run ({train_metrics['evaluated_checkpoint']} weights, tta none)" in result.stderr


def test_two_runs_started_at_once_get_their_own_directories(tmp_path):
    """Two processes started in the same second: the run directory names differ (the process id
    follows the timestamp), so neither writes into the other's run."""
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-m", "cifarx.cli", "train", "--cfg", "hydra", "-p", "hydra.run.dir"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL) for _ in range(2)]
    dirs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert dirs[0] != dirs[1]
    stamps = [d.rsplit("/", 1)[-1].rsplit("_", 1) for d in dirs]  # <date>_<time>, <pid>
    assert [int(pid) for _, pid in stamps] == [p.pid for p in procs]


def test_train_in_process_from_a_zip_of_image_folders(tmp_path):
    """Training reads the zip (image folders inside) as it reads any source; that every format
    loads to the same arrays is tests/test_data.py's test_every_format_loads_the_same_kind_of_arrays."""
    from cifarx.commands.train import run_train
    from cifarx.run.rundir import RunDir

    root = write_zip(tmp_path / "data")
    cfg = compose("train", [*tiny_train_overrides(root, tmp_path / "cache"), "figures=false"])
    run = RunDir(tmp_path / "run", "train")
    run.begin(cfg)
    metrics = run_train(cfg, run)
    assert metrics["test_count"] == 40 and metrics["epochs"] == 1
    for name in ("model.keras", "metrics.json", "classification_report.txt", "confusion_matrix.csv"):
        assert (tmp_path / "run" / name).exists(), name
    assert not list((tmp_path / "run").glob("*.png"))  # figures=false: no matplotlib, every record still written


def test_data_command_describes_the_dataset(tmp_path):
    root = write_image_dir(tmp_path / "data", train_per_class=10, test_per_class=3)
    result = run_cli(["data", f"data.root={root}", f"data.cache_dir={tmp_path / 'c'}",
                      "samples_per_class=2"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run,) = (tmp_path / "outputs" / "data").iterdir()
    summary = json.loads((run / "data_summary.json").read_text())
    assert summary["splits"]["test"]["per_class"]["cat"] == 3
    assert summary["splits"]["train"]["balanced"] and summary["splits"]["train"]["shape"] == [32, 32, 3]
    assert (run / "samples.png").exists()
    assert "images per class" in result.stdout



def test_two_commands_in_one_process_in_the_same_second_get_their_own_directories(tmp_path):
    """cifarx called as a library (or by a test) twice within a second: the second run's default
    directory carries its number after the process id."""
    dirs = []
    for _ in range(2):
        result = run_cli(["train", "--cfg", "hydra", "-p", "hydra.run.dir"], cwd=tmp_path)
        assert result.returncode == 0
        dirs.append(result.stdout.strip())
    assert dirs[0] != dirs[1]
