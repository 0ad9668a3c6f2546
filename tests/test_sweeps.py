"""Multirun sweeps: one directory per job, a summary that matches the jobs, failures recorded."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import run_cli, write_batches_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    root = write_batches_dir(tmp / "data")
    result = run_cli(["train", "-m", f"data.root={root}", f"data.cache_dir={tmp / 'c'}", "trainer.epochs=1",
                      "trainer.batch_size=32", "model.filters=[4,8,8]", "optimizer=adam,sgd",
                      "data.max_train=null,5"], cwd=tmp)  # 5 < 10 classes: fails in the job, past pre-flight
    (sweep_dir,) = (tmp / "outputs" / "train" / "multirun").iterdir()
    return tmp, sweep_dir, result


def test_every_job_has_its_own_readable_directory(sweep):
    _, sweep_dir, _ = sweep
    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    assert len(jobs) == 4
    assert all("optimizer=" in j and "data.max_train=" in j and "data.root" not in j for j in jobs)
    assert not any("trainer.epochs" in j or "model.filters" in j for j in jobs)  # same in every job: not in names


def test_jobs_print_one_line_each_and_the_sweep_one_table(sweep):
    _, _, result = sweep
    lines = [line for line in result.stderr.splitlines() if line.startswith("job ")]
    assert len(lines) == 2 and all("optimizer=" in line and "test " in line for line in lines)  # the completed jobs
    assert "confusion matrix" not in result.stdout and result.stdout.count("┏") == 1


def test_summary_matches_each_jobs_metrics(sweep):
    _, sweep_dir, result = sweep
    with open(sweep_dir / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    completed = [r for r in rows if r["status"] == "completed"]
    assert len(completed) == 2
    for row in completed:
        metrics = json.loads((sweep_dir / row["run"] / "metrics.json").read_text())
        assert float(row["test_accuracy"]) == pytest.approx(metrics["test_accuracy"])
        assert float(row["val_accuracy"]) == pytest.approx(metrics["val_accuracy"])
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["best_run"] in {r["run"] for r in completed}
    assert "sweep" in result.stdout and "best:" in result.stdout


def test_failing_jobs_are_recorded_and_the_sweep_exits_non_zero(sweep):
    _, sweep_dir, result = sweep
    assert result.returncode != 0
    assert "2 of 4 sweep jobs failed" in result.stderr
    failed = [p for p in sweep_dir.iterdir() if p.is_dir() and "max_train=5" in p.name]
    assert len(failed) == 2
    for job in failed:
        status = json.loads((job / "status.json").read_text())
        assert status["status"] == "failed" and "data.max_train=5 is smaller than the number of classes (10)" in status["error"]


def test_compare_prints_the_same_numbers(sweep):
    tmp, sweep_dir, _ = sweep
    result = run_cli(["compare", str(sweep_dir), "--csv", "-"], cwd=tmp)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (sweep_dir / "summary.csv").read_text()
    table = run_cli(["compare", str(sweep_dir), "--sort", "test_accuracy"], cwd=tmp)
    assert table.returncode == 0 and "4 runs under" in table.stdout and "sorted by test_accuracy" in table.stdout


def test_compare_on_nothing_is_an_error(tmp_path):
    result = run_cli(["compare", str(tmp_path)], cwd=tmp_path)
    assert result.returncode == 2 and "no cifarx runs" in result.stderr


@pytest.mark.skipif(__import__("importlib").util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
                    reason="hydra-joblib-launcher is not installed")
def test_parallel_sweep_with_the_joblib_launcher(tmp_path):
    root = write_batches_dir(tmp_path / "data")
    result = run_cli(["train", "-m", "hydra/launcher=parallel", f"data.root={root}", f"data.cache_dir={tmp_path / 'c'}",
                      "trainer.epochs=1", "model.filters=[4,8,8]", "optimizer=adam,sgd"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "outputs" / "train" / "multirun").iterdir()
    with open(sweep_dir / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["status"] for r in rows) == ["completed", "completed"]
    assert {r["overrides"].split()[-1] for r in rows} == {"optimizer=adam", "optimizer=sgd"}


@pytest.mark.skipif(__import__("importlib").util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
                    reason="hydra-submitit-launcher is not installed")
def test_cluster_sweep_through_submitit_local_executor(tmp_path):
    """The SLURM path minus SLURM: submitit's local executor runs each job in its own process."""
    root = write_batches_dir(tmp_path / "data")
    result = run_cli(["train", "-m", "hydra/launcher=submitit_local", f"data.root={root}",
                      f"data.cache_dir={tmp_path / 'c'}", "trainer.epochs=1", "model.filters=[4,8,8]",
                      "optimizer=adam,sgd"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "outputs" / "train" / "multirun").iterdir()
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["jobs"] == 2 and summary["failed"] == 0
    slurm = run_cli(["train", "hydra/launcher=slurm", "--cfg", "hydra"], cwd=tmp_path)
    assert slurm.returncode == 0 and "SlurmLauncher" in slurm.stdout and "gpus_per_node: 1" in slurm.stdout


# The Optuna search (formerly hydra-optuna-sweeper) and its objective guard: tests/test_search.py.


def test_a_job_without_its_objective_returns_nothing_to_the_sweeper(tmp_path):
    from cifarx.run.lifecycle import run_command
    from helpers import compose

    def no_validation_split(cfg, run):
        run.write_metrics({"test_accuracy": 0.9})
        return {"test_accuracy": 0.9}

    assert run_command("train", no_validation_split, compose("train", []), run_dir=tmp_path / "a") is None
    assert run_command("train", lambda cfg, run: {"val_accuracy": 0.7, "test_accuracy": 0.9},
                       compose("train", []), run_dir=tmp_path / "b") == 0.7
