"""Resume, determinism, interruption, divergence and concurrent caches."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import shutil
import signal

import pytest

from cifarx.errors import CommandExit
from conftest import run_cli, write_batches_dir

pytestmark = pytest.mark.slow

KEYS = ("train_accuracy", "val_accuracy", "test_accuracy", "train_loss", "val_loss", "test_loss")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rel")
    return write_batches_dir(tmp / "data"), tmp / "cache"


@pytest.fixture(scope="module")
def straight4(tmp_path_factory, data):
    """An uninterrupted 4-epoch run: what every interrupted-then-resumed run must end as."""
    out = tmp_path_factory.mktemp("straight") / "run"
    _train_inprocess(out, data, "trainer.epochs=4")
    return out


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory, data):
    """A finished 2-epoch run (seed 42) that tests compare with or copy, never change."""
    tmp = tmp_path_factory.mktemp("two")
    out, result = train(tmp, data, "run", "trainer.epochs=2")
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def train(tmp_path, data, name, *extra):
    root, cache = data
    out = tmp_path / name
    result = run_cli(["train", f"data.root={root}", f"data.cache_dir={cache}", "model.filters=[4,8,8]",
                      "trainer.batch_size=32", "data=augment", f"hydra.run.dir={out}", *extra], cwd=tmp_path)
    return out, result


def metrics(run):
    return json.loads((run / "metrics.json").read_text())


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path, data, two_epochs):
    a = two_epochs
    b, rb = train(tmp_path, data, "b", "trainer.epochs=2")
    c, rc = train(tmp_path, data, "c", "trainer.epochs=2", "seed=7")
    assert rb.returncode == rc.returncode == 0, rb.stderr[-2000:]
    assert [metrics(a)[k] for k in KEYS] == [metrics(b)[k] for k in KEYS]
    assert [metrics(a)[k] for k in KEYS] != [metrics(c)[k] for k in KEYS]


def test_resumed_run_ends_like_an_uninterrupted_one(tmp_path, data, straight4, two_epochs):
    straight = straight4
    part = tmp_path / "part"
    shutil.copytree(two_epochs, part)  # a run moved or copied elsewhere resumes where it now is
    resumed = run_cli(["train", f"resume={part}", "trainer.epochs=4"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stderr
    assert [metrics(part)[k] for k in KEYS] == [metrics(straight)[k] for k in KEYS]
    with open(part / "history.csv") as f, open(straight / "history.csv") as g:
        assert list(csv.reader(f)) == list(csv.reader(g))  # every epoch, identical
    assert metrics(part)["epochs"] == 4 and metrics(part)["resumed"] is True


def test_resume_refuses_overrides_that_change_the_experiment(tmp_path, two_epochs):
    part = tmp_path / "p"
    shutil.copytree(two_epochs, part)
    result = run_cli(["train", f"resume={part}", "optimizer=sgd"], cwd=tmp_path)
    assert result.returncode == 2
    assert "refusing overrides that would change the experiment: optimizer=sgd" in result.stderr
    before = {p.name: p.read_bytes() for p in part.iterdir() if p.is_file()}
    result = run_cli(["train", f"resume={part}", "trainer.epochs=2"], cwd=tmp_path)
    assert result.returncode == 2 and "is complete (2 epochs); pass trainer.epochs > 2" in result.stderr
    after = {p.name: p.read_bytes() for p in part.iterdir() if p.is_file()}
    assert after == before  # a refused resume leaves the run exactly as it was (regression: it was deleted)


def test_sigterm_saves_state_and_says_how_to_resume(tmp_path, data, monkeypatch):
    """SIGTERM (a scheduler's stop) arrives from another thread while the second epoch trains, as
    a signal from outside does; the run stops as Ctrl-C stops it. (A fresh process on a terminal,
    TensorFlow's import included: test_screen's start-line test.)"""
    import threading

    from cifarx.training.callbacks import EpochSeeds

    root, cache = data
    out = tmp_path / "killed"
    begin = EpochSeeds.on_epoch_begin

    def terminate_in_epoch_2(self, epoch, logs=None):
        begin(self, epoch, logs)
        if epoch == 1:
            threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGTERM)).start()

    monkeypatch.setattr(EpochSeeds, "on_epoch_begin", terminate_in_epoch_2)
    killed = run_cli(["train", f"data.root={root}", f"data.cache_dir={cache}", "model.filters=[4,8,8]",
                      "trainer.batch_size=8", "trainer.epochs=500", f"hydra.run.dir={out}"], cwd=tmp_path)
    monkeypatch.undo()
    assert killed.returncode == 130, killed.stderr[-2000:]
    assert f"continue with: cifarx train resume={out}" in killed.stderr
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "interrupted"
    assert (out / "last.keras").exists() and not (out / "metrics.json").exists()
    resumed = run_cli(["train", f"resume={out}", "trainer.epochs=4"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((out / "status.json").read_text())["status"] == "completed"


def test_a_run_saved_before_newer_config_keys_still_resumes(tmp_path, two_epochs):
    """Regression: resuming a run whose config.yaml predates trainer.time_budget, logger and
    data.other_sizes crashed on the missing keys and marked the run failed."""
    import yaml

    out = tmp_path / "old"
    shutil.copytree(two_epochs, out)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    for section, key in (("trainer", "time_budget"), ("trainer", "time_budget_reserve"),
                         ("trainer", "budget_probe_steps"), ("data", "other_sizes")):
        del saved[section][key]
    del saved["logger"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    resumed = run_cli(["train", f"resume={out}", "trainer.epochs=3"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert metrics(out)["epochs"] == 3
    assert json.loads((out / "status.json").read_text())["status"] == "completed"


def test_nan_loss_fails_the_run_with_a_clear_message(tmp_path, data):
    out, result = train(tmp_path, data, "nan", "trainer.epochs=3", "model.l2=1e38")  # the L2 term overflows
    assert result.returncode == 2
    assert "training loss became inf" in result.stderr or "training loss became nan" in result.stderr
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "failed" and "lower optimizer.learning_rate" in status["error"]
    assert not (out / "model.keras").exists() and not (out / "metrics.json").exists()


def _build_cache(args):
    root, cache = args
    from cifarx.data import load_raw

    raw, info = load_raw(root, cache)
    return info["sha256"], int(raw.x_train.sum())


def test_two_jobs_building_the_same_cache_at_once(tmp_path):
    root = str(write_batches_dir(tmp_path / "d", train_per_class=40))
    cache = str(tmp_path / "cache")
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(_build_cache, [(root, cache)] * 4)
    assert len(set(results)) == 1
    entries = [p for p in (tmp_path / "cache").iterdir()]
    assert len(entries) == 1 and not entries[0].name.startswith(".")  # no temporary leftovers


# -- a kill (or a full disk) at the epoch boundary, in-process -----------------------------------

class _Killed(BaseException):
    """Stands for SIGKILL: run_command catches no BaseException, so status stays 'running'."""


def _train_inprocess(out, data, *extra):
    from cifarx.commands.train import run_train
    from cifarx.run.lifecycle import run_command
    from conftest import compose

    root, cache = data
    cfg = compose("train", [f"data.root={root}", f"data.cache_dir={cache}", "model.filters=[4,8,8]",
                            "trainer.batch_size=32", "data=augment", *extra])
    return run_command("train", run_train, cfg, run_dir=out)


# (epoch, where the process dies in it): epoch 2's history row is written and nothing else; epoch
# 3's best.keras is written, its last.keras is not; the disk fills while epoch 4's last.keras is saved.
KILLS = [(2, "after_history_row"), (3, "between_best_and_last"), (4, "disk_full_at_last")]


def test_kills_at_the_epoch_boundary_each_resumed_end_as_the_uninterrupted_run(tmp_path, data, straight4,
                                                                               monkeypatch, capsys):
    """One run killed three times, at each point of the epoch boundary, and resumed after each:
    a resume of a resume drops the rows its checkpoint lacks, retrains them, and ends as straight4."""
    from cifarx.run.rundir import RunDir
    from cifarx.training.callbacks import AtomicCheckpoint

    part = tmp_path / "part"
    commit, save_model = AtomicCheckpoint.commit, RunDir.save_model
    for kill_epoch, where in KILLS:
        def killing_commit(self, kill_epoch=kill_epoch):
            if self._pending and self._pending[0] == kill_epoch:  # the epoch's history row is out, nothing else
                raise _Killed
            commit(self)

        def killing_save(self, name, model, epochs=None, kill_epoch=kill_epoch, where=where, **kw):
            if name == "last.keras" and epochs == kill_epoch:
                if where == "disk_full_at_last":
                    raise OSError(28, "No space left on device", str(self.file(name)))
                raise _Killed
            return save_model(self, name, model, epochs=epochs, **kw)

        if where == "after_history_row":
            monkeypatch.setattr(AtomicCheckpoint, "commit", killing_commit)
        else:
            monkeypatch.setattr(RunDir, "save_model", killing_save)
        args = ["trainer.epochs=4"] if kill_epoch == KILLS[0][0] else [f"resume={part}"]
        if where == "disk_full_at_last":
            with pytest.raises(CommandExit) as exc:
                _train_inprocess(part, data, *args)
            assert exc.value.code == 2
            err = capsys.readouterr().err + exc.value.message
            assert err.count("error:") == 1 and "no space left on device" in err and "resume=" in err
            assert json.loads((part / "status.json").read_text())["status"] == "failed"
        else:
            with pytest.raises(_Killed):
                _train_inprocess(part, data, *args)
            assert json.loads((part / "status.json").read_text())["status"] == "running"
        monkeypatch.undo()
        with open(part / "history.csv") as f:
            assert len(list(csv.reader(f))) == 1 + kill_epoch, where  # the epoch's row got out, its checkpoint did not

    _train_inprocess(part, data, f"resume={part}")
    assert [metrics(part)[k] for k in KEYS] == [metrics(straight4)[k] for k in KEYS]
    with open(part / "history.csv") as f, open(straight4 / "history.csv") as g:
        assert list(csv.reader(f)) == list(csv.reader(g))
    assert metrics(part)["epochs"] == 4 and metrics(part)["best_epoch"] == metrics(straight4)["best_epoch"]


def test_checkpoint_every_n_epochs_resumes_from_the_last_saved_one_to_the_same_numbers(tmp_path, data, straight4,
                                                                                     monkeypatch):
    """trainer.checkpoint_every=2: last.keras after epochs 2 and 4 (the end) only; a kill during
    epoch 4's save resumes from epoch 2, repeats epochs 3 and 4 exactly, and ends as a run that
    saved every epoch (saving never changes the numbers)."""
    from cifarx.run.rundir import RunDir

    saves: list[int | None] = []
    save_model = RunDir.save_model

    def killing_save(self, name, model, epochs=None, **kw):
        if name == "last.keras":
            saves.append(epochs)
        if epochs == 4:
            raise _Killed  # epoch 4 is over and in history.csv, epoch 3 was never saved
        return save_model(self, name, model, epochs=epochs, **kw)

    part = tmp_path / "part"
    monkeypatch.setattr(RunDir, "save_model", killing_save)
    with pytest.raises(_Killed):
        _train_inprocess(part, data, "trainer.epochs=4", "trainer.checkpoint_every=2")
    monkeypatch.undo()
    assert saves == [2, 4]  # last.keras after epoch 2, then (killed) after epoch 4: never after 1 or 3
    _train_inprocess(part, data, f"resume={part}")
    assert [metrics(part)[k] for k in KEYS] == [metrics(straight4)[k] for k in KEYS]
    with open(part / "history.csv") as f, open(straight4 / "history.csv") as g:
        assert list(csv.reader(f)) == list(csv.reader(g))


def test_a_lookahead_run_killed_mid_training_resumes_to_the_same_numbers(tmp_path, data, monkeypatch):
    """optimizer=sgd_lookahead: the average lives in the optimizer's state, saved with last.keras,
    so a resumed run continues it (and its decay's place in the run) exactly; it cannot be lengthened."""
    from cifarx.training.callbacks import AtomicCheckpoint

    recipe = ("trainer.epochs=3", "optimizer=sgd_lookahead", "optimizer.learning_rate=0.05", "trainer.evaluate=last")
    straight = tmp_path / "straight"
    _train_inprocess(straight, data, *recipe)
    commit = AtomicCheckpoint.commit

    def killing_commit(self):
        if self._pending and self._pending[0] == 2:
            raise _Killed
        commit(self)

    part = tmp_path / "part"
    monkeypatch.setattr(AtomicCheckpoint, "commit", killing_commit)
    with pytest.raises(_Killed):
        _train_inprocess(part, data, *recipe)
    monkeypatch.undo()
    _train_inprocess(part, data, f"resume={part}")
    assert [metrics(part)[k] for k in KEYS] == [metrics(straight)[k] for k in KEYS]
    longer = run_cli(["train", f"resume={part}", "trainer.epochs=5"], cwd=tmp_path)
    assert longer.returncode == 2 and "optimizer LookaheadSGD of run" in longer.stderr and "ends at its 3 epochs" in longer.stderr


def test_resume_may_change_how_steps_run_but_nothing_else(tmp_path, two_epochs):
    from cifarx.run.resume import problem, resume_config
    from conftest import compose

    assert problem(["resume=x", "trainer.run_eagerly=false", "trainer.epochs=3"], multirun=False) is None
    part = tmp_path / "p"
    shutil.copytree(two_epochs, part)
    saved = resume_config(compose("train", [f"resume={part}"]), ["trainer.run_eagerly=false", "trainer.epochs=3"])
    assert saved.trainer.run_eagerly is False and saved.trainer.epochs == 3
