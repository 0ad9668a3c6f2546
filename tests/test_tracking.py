"""logger=mlflow against real MLflow stores: an embedded SQLite store and a real `mlflow server`."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cifarx.errors import CommandExit
from conftest import compose, run_cli, write_batches_dir
from helpers import free_port, wait_for_health

mlflow = pytest.importorskip("mlflow")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("track")
    return write_batches_dir(tmp / "data"), tmp / "cache"


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory):
    """An empty SQLite store with MLflow's tables made once (its migrations take seconds)."""
    db = tmp_path_factory.mktemp("db") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def store(tmp_path, migrated_db):
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(migrated_db, db)
    return f"sqlite:///{db}", tmp_path / "store" / "artifacts"


def _logger(uri: str, artifacts: Path | None = None) -> list[str]:
    return ["logger=mlflow", f"logger.tracking_uri={uri}",
            *([f"logger.artifact_location={artifacts}"] if artifacts else [])]


def _train(out: Path, data, *extra):
    from cifarx.commands.train import run_train
    from cifarx.run.lifecycle import run_command

    root, cache = data
    cfg = compose("train", [f"data.root={root}", f"data.cache_dir={cache}", "model.filters=[4,8,8]",
                            "trainer.batch_size=32", *extra])
    return run_command("train", run_train, cfg, run_dir=out)


def _runs(uri: str, **tags):
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("cifarx")
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"  # the UI's training view
    where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return client, client.search_runs([experiment.experiment_id], filter_string=where)


def _artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def _history(run_dir: Path) -> dict[str, list[float]]:
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows] for k in rows[0] if k != "epoch" and rows[0][k] != "NA"}


def _assert_mirrors(client, mlrun, run_dir: Path, model_file: str) -> None:
    """The MLflow run holds what the run directory holds."""
    run_id = mlrun.info.run_id
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["mlflow_run_id"] == run_id
    assert json.loads((run_dir / "provenance.json").read_text())["mlflow"]["run_id"] == run_id
    assert mlrun.data.tags["cifarx.run_dir"] == str(run_dir.resolve())
    assert mlrun.data.tags["cifarx.seed"] == str(yaml.safe_load((run_dir / "config.yaml").read_text())["seed"])
    assert "cifarx.versions.numpy" in mlrun.data.tags and "cifarx.hardware.cpu_count" in mlrun.data.tags
    assert mlrun.data.metrics["test_accuracy"] == metrics["test_accuracy"]
    assert mlrun.info.status == "FINISHED"
    files = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    expected = {f for f in files if not f.startswith(".cifarx") and f not in ("best.keras", "last.keras")}
    assert _artifacts(client, run_id) == expected
    assert model_file in expected and "metrics.json" in expected and "confusion_matrix.csv" in expected
    if (run_dir / "confusion_matrix.png").exists():  # figures=true: the PNGs go along
        assert "confusion_matrix.png" in expected


def test_a_train_run_is_mirrored_into_an_embedded_store(tmp_path, data, store):
    uri, artifacts = store
    out = tmp_path / "run"
    _train(out, data, "trainer.epochs=2", "figures=true", *_logger(uri, artifacts))
    assert (out / "confusion_matrix.png").exists()
    client, runs = _runs(uri, **{"cifarx.command": "train"})
    assert len(runs) == 1
    mlrun = runs[0]
    assert mlrun.data.params["trainer.epochs"] == "2" and mlrun.data.params["model.name"] == "simple_cnn"
    assert mlrun.data.params["model.filters"] == "[4, 8, 8]"
    for key, values in _history(out).items():  # every epoch's value, at step = the epoch's number (1-based)
        logged = client.get_metric_history(mlrun.info.run_id, f"epoch_{key}")
        assert [(m.step, m.value) for m in logged] == list(enumerate(values, start=1)), key
    final = json.loads((out / "metrics.json").read_text())
    assert mlrun.data.metrics["val_accuracy"] == final["val_accuracy"] and mlrun.data.metrics["params"] == final["params"]
    assert len(client.get_metric_history(mlrun.info.run_id, "epoch_time")) == 2
    _assert_mirrors(client, mlrun, out, "model.keras")
    assert str(artifacts.resolve()) in mlrun.info.artifact_uri


def test_a_classic_run_is_mirrored_with_its_pipeline(tmp_path, data, store):
    from cifarx.commands.classic import run_classic
    from cifarx.run.lifecycle import run_command

    uri, _ = store
    root, cache = data
    out = tmp_path / "classic"
    cfg = compose("classic", ["clf=logreg", "features=pixels", f"data.root={root}", f"data.cache_dir={cache}",
                              "data.val_fraction=0.2", *_logger(uri)])
    run_command("classic", run_classic, cfg, run_dir=out)
    client, runs = _runs(uri, **{"cifarx.command": "classic"})
    assert len(runs) == 1 and runs[0].data.params["clf.name"] == "logreg"
    assert runs[0].data.metrics["val_accuracy"] == json.loads((out / "metrics.json").read_text())["val_accuracy"]
    _assert_mirrors(client, runs[0], out, "pipeline.joblib")
    db_folder = Path(uri[len("sqlite:///"):]).parent  # no artifact_location: beside the database, not ./mlruns
    assert runs[0].info.artifact_uri.startswith((db_folder / "mlartifacts").resolve().as_uri())


def test_resume_continues_the_same_mlflow_run(tmp_path, data, store):
    uri, _ = store
    out = tmp_path / "run"
    _train(out, data, "trainer.epochs=1", "data.val_fraction=0.2", *_logger(uri))
    first = json.loads((out / "metrics.json").read_text())["mlflow_run_id"]
    resumed = run_cli(["train", f"resume={out}", "trainer.epochs=2"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((out / "metrics.json").read_text())["mlflow_run_id"] == first
    client, runs = _runs(uri)
    assert [r.info.run_id for r in runs] == [first] and runs[0].info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(first, "epoch_val_accuracy")] == [1, 2]
    assert runs[0].data.tags["cifarx.resumed"] == "true"


def test_a_failed_run_ends_its_mlflow_run_as_failed(tmp_path, data, store):
    uri, _ = store
    out = tmp_path / "nan"
    with pytest.raises(CommandExit):
        _train(out, data, "trainer.epochs=2", "model.l2=1e38", *_logger(uri))  # the loss overflows
    client, runs = _runs(uri)
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert json.loads((out / "status.json").read_text())["status"] == "failed"
    assert "status.json" in _artifacts(client, runs[0].info.run_id)


def test_a_sweep_is_a_parent_run_with_one_child_per_job(tmp_path, data, store):
    uri, _ = store
    root, cache = data
    sweep = tmp_path / "sweep"
    result = run_cli(["train", "-m", "seed=1,2", f"data.root={root}", f"data.cache_dir={cache}", "trainer.epochs=1",
                      "model.filters=[4,8,8]", "trainer.batch_size=32", *_logger(uri), f"hydra.sweep.dir={sweep}"],
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    client, parents = _runs(uri, **{"cifarx.sweep_dir": str(sweep.resolve()), "cifarx.command": "train"})
    parent = [r for r in parents if "mlflow.parentRunId" not in r.data.tags]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    children = [r for r in parents if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id]
    assert sorted(r.data.params["seed"] for r in children) == ["1", "2"]
    jobs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").exists())
    assert {r.data.tags["cifarx.run_dir"] for r in children} == {str(j.resolve()) for j in jobs}
    for child in children:
        _assert_mirrors(client, child, Path(child.data.tags["cifarx.run_dir"]), "model.keras")
    assert {"summary.csv", "summary.json"} <= _artifacts(client, parent[0].info.run_id)
    assert parent[0].data.metrics["jobs"] == 2.0


# -- a real tracking server over HTTP ----------------------------------------------------------

@pytest.fixture
def server(tmp_path, migrated_db):
    db = tmp_path / "server.db"
    shutil.copy(migrated_db, db)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination",
                             str(tmp_path / "served"), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_for_health(url, proc, 60, "mlflow server")
    yield url, proc
    proc.terminate()
    proc.wait(timeout=30)


def test_runs_are_logged_to_a_tracking_server_over_http_and_one_it_stops_for_costs_only_a_warning(
        tmp_path, data, server, monkeypatch, caplog):
    from cifarx.tracking import hooks as tracking

    url, proc = server
    out = tmp_path / "run"
    _train(out, data, "trainer.epochs=1", *_logger(url))
    client, runs = _runs(url)
    assert len(runs) == 1
    _assert_mirrors(client, runs[0], out, "model.keras")
    assert runs[0].info.artifact_uri.startswith("mlflow-artifacts:")  # uploaded through the server

    # The same server stops after the first epoch of the next run (one server start for both).
    logged = tracking.Tracker.log_metrics

    def log_then_stop_the_server(self, values, step):
        logged(self, values, step)
        if step == 1 and proc.poll() is None:  # after the first epoch (steps count from 1)
            proc.terminate()
            proc.wait(timeout=30)

    monkeypatch.setattr(tracking.Tracker, "log_metrics", log_then_stop_the_server)
    out = tmp_path / "stopped"
    with caplog.at_level(logging.WARNING, logger="cifarx"):
        _train(out, data, "trainer.epochs=2", *_logger(url), "logger.http_retries=0", "logger.http_timeout=5")
    warnings = [r for r in caplog.records if "MLflow tracking stopped" in r.getMessage()]
    assert len(warnings) == 1
    assert json.loads((out / "status.json").read_text())["status"] == "completed"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and (out / "model.keras").exists() and (out / "history.csv").exists()


def test_an_unreachable_store_at_start_fails_in_one_line_before_anything_is_written(tmp_path, data):
    root, cache = data
    out = tmp_path / "run"
    result = run_cli(["train", f"data.root={root}", f"data.cache_dir={cache}", "trainer.epochs=1",
                      *_logger(f"http://127.0.0.1:{free_port()}"), "logger.http_retries=0", "logger.http_timeout=2",
                      f"hydra.run.dir={out}"], cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot reach the MLflow store" in lines[0] and "logger=none" in lines[0], result.stderr
    assert not out.exists()


def test_logger_mlflow_without_mlflow_names_the_extra(monkeypatch):
    import importlib.util

    from cifarx.cli import preflight

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    message = preflight("train", ["logger=mlflow"])
    assert message == "logger=mlflow needs MLflow, which is not installed: pip install 'cifarx[mlflow]'"


def test_without_a_logger_nothing_is_tracked(tmp_path, data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    _train(out, data, "trainer.epochs=1")
    assert "mlflow_run_id" not in json.loads((out / "metrics.json").read_text())
    assert not (tmp_path / "outputs").exists()


def test_the_default_store_is_embedded_in_outputs(tmp_path, data, monkeypatch, migrated_db):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()  # the store a first run made (MLflow's own schema set-up is not what is tested)
    shutil.copy(migrated_db, tmp_path / "outputs" / "mlflow.db")
    out = tmp_path / "run"
    _train(out, data, "trainer.epochs=1", "logger=mlflow")
    uri = f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    client, runs = _runs(uri)
    assert len(runs) == 1 and runs[0].info.artifact_uri.startswith((tmp_path / "outputs" / "mlartifacts").as_uri())
    assert (tmp_path / "outputs" / "mlartifacts").is_dir()
    _assert_mirrors(client, runs[0], out, "model.keras")


def test_a_resume_whose_store_is_gone_leaves_the_run_untouched(tmp_path, data, store):
    uri, _ = store
    out = tmp_path / "run"
    _train(out, data, "trainer.epochs=1", *_logger(uri))
    before = {name: (out / name).read_bytes() for name in ("config.yaml", "status.json", "provenance.json")}
    db = Path(uri[len("sqlite:///"):])
    db.unlink()
    db.mkdir()  # a directory where the database was: SQLite cannot open it
    result = run_cli(["train", f"resume={out}", "trainer.epochs=2"], cwd=tmp_path)
    assert result.returncode == 2
    assert "cannot reach the MLflow store" in result.stderr.strip().splitlines()[-1]
    assert {name: (out / name).read_bytes() for name in before} == before
