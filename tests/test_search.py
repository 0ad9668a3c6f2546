"""`cifarx search`: Optuna (>= 4) studies shared by many workers, pruning, continuing, a real PostgreSQL."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from conftest import run_cli, write_batches_dir
from helpers import free_port

optuna = pytest.importorskip("optuna", minversion="4")

pytestmark = pytest.mark.slow

PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit()
             else 0, default=Path("/usr/lib/postgresql/15/bin"))  # Debian's postgresql package


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search")
    return write_batches_dir(tmp / "data"), tmp / "cache"


def _args(data, out: Path, *extra, epochs: int = 2) -> list[str]:
    root, cache = data
    return ["search", f"search.dir={out}", "search.startup_trials=1", f"data.root={root}", f"data.cache_dir={cache}",
            f"trainer.epochs={epochs}", "model.filters=[4,8,8]", "model.width=1.0", *extra]


def _study(out: Path, name: str = "simple_cnn_optuna", storage: str | None = None):
    from cifarx.commands.search import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(storage or str(out / "study.journal")))


def _states(study) -> list[str]:
    return sorted(t.state.name for t in study.get_trials() if not t.user_attrs.get("surplus"))


def test_two_worker_processes_share_one_study_in_a_journal_file(tmp_path, data, capfd):
    out = tmp_path / "search"
    result = run_cli(_args(data, out, "search.n_trials=3", "search.workers=2", "search.pruner=none", epochs=1),
                     cwd=tmp_path)  # the launcher in this process; its two workers are processes of their own
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout + capfd.readouterr().out  # the workers write to this process's own stdout
    assert printed.count("cifarx search: study 'simple_cnn_optuna'") == 3  # two workers, then the launcher
    study = _study(out)
    assert _states(study) == ["COMPLETE"] * 3
    assert {t.user_attrs["worker"]["worker"] for t in study.get_trials()} <= {0, 1}
    summary = json.loads((out / "search.json").read_text())
    assert summary["counts"]["complete"] == 3 and summary["best"]["value"] == study.best_value
    assert summary["best"]["run_dir"] == study.best_trial.user_attrs["run_dir"] == study.user_attrs["best_run_dir"]
    for t in study.get_trials():
        run_dir = Path(t.user_attrs["run_dir"])
        assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
        assert json.loads((run_dir / "trial.json").read_text())["number"] == t.number
        threads = yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]["threads"]
        assert threads == max(1, (os.cpu_count() or 1) // 2)  # the workers share the cores


class _PruneTrialOne(optuna.pruners.BasePruner):
    """Prunes trial 1 after its second epoch, nothing else (a pruner a tiny test can rely on)."""

    def prune(self, study, trial) -> bool:
        return trial.number == 1 and max(trial.intermediate_values, default=0) >= 2


def _a_pruned_trial_says_pruned_keeps_its_history_and_compare_shows_it(out: Path, study) -> None:
    assert _states(study) == ["COMPLETE", "COMPLETE", "PRUNED"]
    pruned = study.trials[1]
    assert sorted(pruned.intermediate_values) == [1, 2]  # of 3 epochs
    run_dir = Path(pruned.user_attrs["run_dir"])
    assert json.loads((run_dir / "status.json").read_text())["status"] == "pruned"
    with open(run_dir / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]
    assert not (run_dir / "metrics.json").exists()
    record = json.loads((run_dir / "trial.json").read_text())
    assert record["state"] == "pruned" and record["value"] == pytest.approx(pruned.intermediate_values[2])
    assert json.loads((out / "search.json").read_text())["counts"] == {"complete": 2, "pruned": 1, "fail": 0,
                                                                        "running": 0}
    table = run_cli(["compare", str(out), "--csv", "-"], cwd=out.parent)
    assert table.returncode == 0, table.stderr
    rows = {int(r["trial"]): r for r in csv.DictReader(table.stdout.splitlines())}
    assert {n: r["status"] for n, r in rows.items()} == {0: "completed", 1: "pruned", 2: "completed"}
    assert float(rows[1]["objective"]) == pytest.approx(pruned.intermediate_values[2])
    assert float(rows[0]["objective"]) == pytest.approx(study.trials[0].value)
    shown = run_cli(["compare", str(out)], cwd=out.parent, env={"COLUMNS": "200"})
    assert "trial" in shown.stdout and "objective" in shown.stdout and "pruned" in shown.stdout


def test_a_pruned_search_says_pruned_and_in_mlflow_the_study_is_a_parent_run_and_each_trial_a_child(
        tmp_path, data, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    import cifarx.commands.search

    monkeypatch.setattr(cifarx.commands.search, "make_pruner", lambda settings: _PruneTrialOne())
    out, uri = tmp_path / "search", f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(_args(data, out, "search.n_trials=3", "logger=mlflow", f"logger.tracking_uri={uri}", epochs=3),
                     cwd=tmp_path)  # trial 1 pruned after 2 of 3 epochs
    assert result.returncode == 0, result.stderr[-3000:]
    study = _study(out)
    _a_pruned_trial_says_pruned_keeps_its_history_and_compare_shows_it(out, study)  # checked on this search
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("cifarx").experiment_id])
    parents = [r for r in runs if r.data.tags.get("cifarx.search_study") == "simple_cnn_optuna"
               and "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    children = {int(r.data.tags["cifarx.trial"]): r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == [0, 1, 2] and len(runs) == 4
    assert {n: (r.data.tags["cifarx.trial_state"], r.info.status) for n, r in children.items()} == {
        0: ("complete", "FINISHED"), 1: ("pruned", "KILLED"), 2: ("complete", "FINISHED")}
    for t in study.trials:
        child = children[t.number]
        assert t.user_attrs["mlflow_run_id"] == child.info.run_id
        assert {k: child.data.params[f"trial.{k}"] for k in t.params} == {k: str(v) for k, v in t.params.items()}
        history = client.get_metric_history(child.info.run_id, "trial_val_accuracy")
        assert sorted((m.step, m.value) for m in history) == sorted(t.intermediate_values.items())
    assert sorted(study.trials[1].intermediate_values) == [1, 2]
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)
    assert parent.data.tags["cifarx.best_trial"] == str(study.best_trial.number)
    assert parent.data.tags["cifarx.best_run_dir"] == study.best_trial.user_attrs["run_dir"]
    assert parent.data.tags["cifarx.best_run_id"] == children[study.best_trial.number].info.run_id
    again = run_cli(_args(data, out, "search.n_trials=3", "logger=mlflow", f"logger.tracking_uri={uri}", epochs=3),
                    cwd=tmp_path)  # a continued (here: finished) search finds the same parent run
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(client.search_runs([parent.info.experiment_id])) == 4
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    from cifarx.tracking.hooks import search_parent
    from helpers import compose

    storage = parent.data.tags["cifarx.search_storage"]  # two workers that both made one: the oldest is it
    client.create_run(parent.info.experiment_id, tags={"cifarx.search_study": "simple_cnn_optuna",
                                                       "cifarx.search_storage": storage})
    logger_cfg = compose("train", ["logger=mlflow", f"logger.tracking_uri={uri}"]).logger
    assert search_parent(logger_cfg, "simple_cnn_optuna", storage, {}).run_id == parent.info.run_id


def test_a_killed_search_continues_with_the_same_command(tmp_path, data):
    out = tmp_path / "search"
    args = _args(data, out, "search.pruner=none", epochs=1)
    first = run_cli([*args, "search.n_trials=1"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    # A worker killed mid-trial: its trial stays RUNNING, owned by a process that is gone.
    dead = subprocess.Popen(["true"])
    dead.wait()
    study = _study(out)
    orphan = study.ask()
    orphan.set_user_attr("worker", {"host": socket.gethostname(), "pid": dead.pid, "worker": 0})
    assert _states(study) == ["COMPLETE", "RUNNING"]
    again = run_cli([*args, "search.n_trials=2"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "left running by a stopped process" in again.stderr
    study = _study(out)
    assert _states(study) == ["COMPLETE", "COMPLETE", "FAIL"]
    assert study.trials[orphan.number].user_attrs["abandoned"] is True
    assert json.loads((out / "search.json").read_text())["counts"]["complete"] == 2
    done = run_cli([*args, "search.n_trials=2"], cwd=tmp_path)  # finished: nothing more runs
    assert done.returncode == 0 and len(_study(out).trials) == 3


@pytest.mark.parametrize("args, says", [
    (["split=none"], "needs a validation split"),
    (["objective=test_accuracy"], "would let the search select on the test set"),
    (["objective=val_loss"], "would pick the worst trial"),
    (["search.pruner=sometimes"], "search.pruner=sometimes: choose median, halving or none"),
    (["search.trials=3"], "the search keys are"),
    (["hparams_search=nope"], "no such space"),
])
def test_a_bad_search_is_one_line_and_writes_nothing(tmp_path, args, says):
    result = run_cli(["search", "search.n_trials=2", *args], cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert not (tmp_path / "outputs").exists()


def test_train_with_a_search_space_points_to_the_search_command(tmp_path):
    result = run_cli(["train", "hparams_search=simple_cnn_optuna"], cwd=tmp_path)
    assert result.returncode == 2 and "cifarx search hparams_search=" in result.stderr


def test_the_space_file_maps_to_optuna_distributions():
    from cifarx.commands.search import load_space, suggest

    space = load_space("simple_cnn_optuna")
    trial = optuna.create_study().ask()
    overrides = suggest(trial, space)
    assert [o.split("=")[0] for o in overrides] == ["optimizer.learning_rate", "trainer.batch_size", "model.width",
                                                   "schedule", "optimizer"]
    lr = trial.distributions["optimizer.learning_rate"]
    assert lr.log and (lr.low, lr.high) == (1e-4, 1e-2)
    assert trial.distributions["trainer.batch_size"].choices == (32, 64, 128)


# --------------------------------------------------------------------------- a real PostgreSQL server


@pytest.fixture
def postgres():
    """A throw-away PostgreSQL server on a free localhost port; yields a database URL."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL is not installed ({PG_BIN}/initdb missing; apt-get install postgresql)")
    from importlib.util import find_spec

    if find_spec("psycopg") is None and find_spec("psycopg2") is None:
        pytest.skip('no PostgreSQL driver for SQLAlchemy (pip install "psycopg[binary]")')
    root = Path(tempfile.mkdtemp(prefix="cifarx-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            shutil.chown(root, "postgres", "postgres")
        except LookupError:
            shutil.rmtree(root)
            pytest.skip("running as root, and there is no 'postgres' user to run PostgreSQL as")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()

    def pg(*args, check=True):
        return subprocess.run([*as_postgres, *args], capture_output=True, text=True, check=check, timeout=120)

    try:
        pg(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        pg(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "-o",
           f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {(exc.stderr or exc.stdout).strip().splitlines()[-1:]}")
    try:
        pg(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "cifarx")
        yield f"postgresql://postgres@127.0.0.1:{port}/cifarx"
    finally:
        pg(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)


def test_a_study_in_postgresql_is_continued_from_any_machine_that_reaches_it(tmp_path, data, postgres):
    # Worker processes sharing one study are test_two_worker_processes_share_one_study_in_a_journal_file's;
    # here the storage is a real PostgreSQL server, which is what workers on other machines share.
    out = tmp_path / "search"
    args = _args(data, out, f"search.storage={postgres}", "search.study=pg", "search.pruner=none", epochs=1)
    first = run_cli([*args, "search.n_trials=1"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_cli([*args, "search.n_trials=2", "search.worker=1"], cwd=tmp_path)  # another worker, later
    assert again.returncode == 0, again.stderr[-3000:]
    study = _study(out, "pg", postgres)
    assert _states(study) == ["COMPLETE"] * 2
    assert [t.user_attrs["worker"]["worker"] for t in study.trials] == [0, 1]
    summary = json.loads((out / "search.json").read_text())
    assert summary["storage"] == postgres and summary["counts"]["complete"] == 2
    assert not (out / "study.journal").exists()
