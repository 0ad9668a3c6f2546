"""Hostile cases for run directories: configs read from a run are data, not code; a refused
resume, evaluate or extract leaves the source run byte for byte; every run can be finished, at any
instant after its last checkpoint or before its first; resume checks the data it started on; bad
batch sizes, budgets and sweep values are one line."""

from __future__ import annotations

import csv
import json
import pickle
import shutil
import time
from pathlib import Path

import pytest
import yaml

from conftest import run_cli, write_batches_dir

pytestmark = pytest.mark.slow

TINY = ["model.filters=[4,8,8]", "trainer.batch_size=32", "figures=false"]
SAME = ("test_accuracy", "test_loss", "val_accuracy", "train_accuracy", "best_epoch", "epochs")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    return write_batches_dir(tmp / "data"), tmp / "cache"


def train(where: Path, data, name: str, *extra: str):
    root, cache = data
    out = where / name
    result = run_cli(["train", f"data.root={root}", f"data.cache_dir={cache}", *TINY, f"hydra.run.dir={out}", *extra],
                     cwd=where)
    return out, result


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data):
    """An uninterrupted 2-epoch run: what every run killed and finished must end as."""
    out, result = train(tmp_path_factory.mktemp("reference"), data, "run", "trainer.epochs=2")
    assert result.returncode == 0, result.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data):
    """A completed 1-epoch run, copied by each refusal case."""
    out, result = train(tmp_path_factory.mktemp("finished"), data, "run", "trainer.epochs=1")
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def snapshot(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def status(run: Path) -> str:
    return json.loads((run / "status.json").read_text())["status"]


def edit_config(run: Path, change) -> None:
    saved = yaml.safe_load((run / "config.yaml").read_text())
    change(saved)
    (run / "config.yaml").write_text(yaml.safe_dump(saved))


class Boom:
    """A pickle that would leave a marker file if anything ever unpickled it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# -- a config read from a run directory is data, not code ---------------------------------------

def _joblib_schedule(run: Path, tmp: Path) -> str:
    (tmp / "evil.pkl").write_bytes(pickle.dumps(Boom(tmp / "PWNED")))
    edit_config(run, lambda c: c.update(schedule={"_target_": "joblib.load", "filename": str(tmp / "evil.pkl")}))
    return "schedule._target_='joblib.load' is not a cifarx schedule class"


def _system_model(run: Path, tmp: Path) -> str:
    edit_config(run, lambda c: c.update(model={"_target_": "os.system", "command": f"touch {tmp / 'PWNED'}"}))
    return "model._target_='os.system' is not a cifarx Architecture class"


def _nested_optimizer_target(run: Path, tmp: Path) -> str:
    (tmp / "evil.pkl").write_bytes(pickle.dumps(Boom(tmp / "PWNED")))
    edit_config(run, lambda c: c["optimizer"].update(
        learning_rate={"_target_": "joblib.load", "filename": str(tmp / "evil.pkl")}))
    return "optimizer.learning_rate._target_='joblib.load': an argument of optimizer cannot build an object"


def _positional_optimizer_target(run: Path, tmp: Path) -> str:
    edit_config(run, lambda c: c["optimizer"].update(
        _args_=[{"_target_": "pathlib.Path.touch", "_args_": [str(tmp / "PWNED")]}]))
    return "optimizer._args_ is not allowed"


def _complete(run: Path, tmp: Path) -> str:
    return "is complete (1 epochs); pass trainer.epochs > 1 to extend it"


def _fixed_length_schedule(run: Path, tmp: Path) -> str:
    edit_config(run, lambda c: c.update(schedule={"_target_": "cifarx.training.schedules.Cosine", "name": "cosine",
                                                  "warmup_epochs": 0, "alpha": 0.0}))
    return "ends at its 1 epochs"


def _damaged_checkpoint(run: Path, tmp: Path) -> str:
    (run / "last.keras").write_bytes((run / "last.keras").read_bytes()[:300])
    return "is damaged or not a Keras model file"


def _foreign_status(run: Path, tmp: Path) -> str:
    (run / "status.json").write_text("[1, 2]")
    return "has a damaged status.json"


REFUSED_RESUMES = {
    "joblib.load as the schedule": (_joblib_schedule, []),
    "os.system as the model": (_system_model, []),
    "a _target_ inside the optimizer": (_nested_optimizer_target, []),
    "a _target_ among the optimizer's _args_": (_positional_optimizer_target, []),
    "a complete run, no more epochs": (_complete, []),
    "extending a fixed-length schedule": (_fixed_length_schedule, ["trainer.epochs=3"]),
    "a truncated last.keras": (_damaged_checkpoint, ["trainer.epochs=3"]),
    "a damaged status.json": (_foreign_status, ["trainer.epochs=3"]),
    "an override that changes the experiment": (lambda run, tmp: "refusing overrides that would change the "
                                                "experiment: optimizer=sgd", ["optimizer=sgd"]),
}


@pytest.mark.parametrize("case", REFUSED_RESUMES)
def test_a_refused_resume_leaves_the_run_byte_for_byte(tmp_path, finished, case):
    prepare, extra = REFUSED_RESUMES[case]
    run = tmp_path / "copy"
    shutil.copytree(finished, run)
    expected = prepare(run, tmp_path)
    before = snapshot(run)
    result = run_cli(["train", f"resume={run}", *extra], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert expected in result.stderr
    assert result.stderr.strip().count("\n") == 0 or "schedule.boundaries" in result.stderr  # one line
    assert snapshot(run) == before  # not a byte changed, no .hydra/resume, no lock left
    assert not (tmp_path / "PWNED").exists()  # nothing named by the config was ever called


def test_a_clf_that_is_not_an_estimator_is_refused_before_anything_runs(tmp_path, data):
    root, cache = data
    result = run_cli(["classic", "features=pixels", f"data.root={root}", f"data.cache_dir={cache}",
                      "clf.estimator._target_=builtins.exec", "+clf.estimator.source=1/0",
                      f"hydra.run.dir={tmp_path / 'c'}"], cwd=tmp_path)
    assert result.returncode == 2
    assert "clf.estimator._target_='builtins.exec' is not a scikit-learn estimator class" in result.stderr
    assert not (tmp_path / "c").exists()


def test_a_pipeline_step_that_is_not_an_estimator_is_refused(tmp_path, data):
    root, cache = data
    result = run_cli(["classic", "features=pixels", "clf=svm", f"data.root={root}", f"data.cache_dir={cache}",
                      "clf.estimator._args_.1._target_=pickle.loads", f"hydra.run.dir={tmp_path / 'c'}"], cwd=tmp_path)
    assert result.returncode == 2
    assert "clf.estimator._args_.1._target_='pickle.loads' is not a scikit-learn estimator" in result.stderr
    assert not (tmp_path / "c").exists()


def test_refused_evaluate_and_extract_leave_the_source_run_byte_for_byte(tmp_path, finished):
    before = snapshot(finished)
    bad_layer = run_cli(["extract", f"run={finished}", "layer=no_such_layer", f"hydra.run.dir={tmp_path / 'x'}"],
                        cwd=tmp_path)
    assert bad_layer.returncode == 2 and "no_such_layer" in bad_layer.stderr
    no_best = tmp_path / "nobest"
    shutil.copytree(finished, no_best)
    (no_best / "best.keras").unlink()
    copy_before = snapshot(no_best)
    missing = run_cli(["evaluate", f"run={no_best}", "checkpoint=best", f"hydra.run.dir={tmp_path / 'e'}"],
                      cwd=tmp_path)
    assert missing.returncode == 2 and "has no best.keras" in missing.stderr
    assert snapshot(finished) == before and snapshot(no_best) == copy_before
    assert not (tmp_path / "x").exists() and not (tmp_path / "e").exists()


# -- every run is finishable -----------------------------------------------------------------------

def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def _kill_at(monkeypatch, instant: str) -> None:
    """Stop a run (as Ctrl-C does) at ``instant``, after its last checkpoint or before its first."""
    import cifarx.evaluation
    from cifarx.run.rundir import RunDir
    from cifarx.training.callbacks import AtomicCheckpoint

    if instant == "before scoring":
        monkeypatch.setattr(cifarx.evaluation, "predict_proba", _interrupt)
    elif instant == "saving model.keras":
        save = RunDir.save_model
        monkeypatch.setattr(RunDir, "save_model", lambda self, name, model, **kw: _interrupt()
                            if name == "model.keras" else save(self, name, model, **kw))
    elif instant == "writing the report":
        monkeypatch.setattr(cifarx.evaluation, "write_evaluation", _interrupt)
    elif instant == "writing metrics.json":
        monkeypatch.setattr(RunDir, "write_metrics", _interrupt)
    elif instant == "after metrics.json":
        write = RunDir.write_provenance
        monkeypatch.setattr(RunDir, "write_provenance", lambda self, **kw: _interrupt()
                            if "wall_seconds" in kw else write(self, **kw))
    elif instant == "before the first checkpoint":
        monkeypatch.setattr(AtomicCheckpoint, "commit", _interrupt)


AFTER_TRAINING = ["before scoring", "saving model.keras", "writing the report", "writing metrics.json",
                  "after metrics.json"]


def _killed_then_told(run: Path, killed, tmp_path: Path, instant: str) -> None:
    assert killed.returncode == 130, (instant, killed.stderr[-2000:])
    assert f"continue with: cifarx train resume={run}" in killed.stderr, instant
    assert status(run) == "interrupted", instant
    told = run_cli(["evaluate", f"run={run}"], cwd=tmp_path)  # evaluate points to the one next step
    assert told.returncode == 2 and f"finish it with: cifarx train resume={run}" in told.stderr, instant


def _finished_like(run: Path, reference: Path, tmp_path: Path) -> None:
    finished = run_cli(["train", f"resume={run}"], cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert status(run) == "completed"
    assert {k: metrics(run)[k] for k in SAME} == {k: metrics(reference)[k] for k in SAME}
    assert (run / "confusion_matrix.csv").read_bytes() == (reference / "confusion_matrix.csv").read_bytes()
    with open(run / "history.csv") as f, open(reference / "history.csv") as g:
        assert list(csv.reader(f)) == list(csv.reader(g))


def test_a_run_killed_at_every_instant_after_training_finishes_like_an_uninterrupted_one(tmp_path, data, reference,
                                                                                         monkeypatch):
    """Killed at each instant between its last checkpoint and its end, one after another: the
    first kill during the run, each next one during the resume before it."""
    run = tmp_path / "run"
    for i, instant in enumerate(AFTER_TRAINING):
        with monkeypatch.context() as patch:
            _kill_at(patch, instant)
            if i == 0:
                run, killed = train(tmp_path, data, "run", "trainer.epochs=2")
            else:
                killed = run_cli(["train", f"resume={run}"], cwd=tmp_path)
        _killed_then_told(run, killed, tmp_path, instant)
    _finished_like(run, reference, tmp_path)


def test_a_run_killed_before_its_first_checkpoint_finishes_like_an_uninterrupted_one(tmp_path, data, reference,
                                                                                    monkeypatch):
    with monkeypatch.context() as patch:
        _kill_at(patch, "before the first checkpoint")
        run, killed = train(tmp_path, data, "run", "trainer.epochs=2")
    _killed_then_told(run, killed, tmp_path, "before the first checkpoint")
    _finished_like(run, reference, tmp_path)


@pytest.mark.parametrize("recipe", [
    ("trainer.epochs=6", "trainer.early_stopping=1", "optimizer.learning_rate=0.05"),  # stops before its 6 epochs
    ("trainer.epochs=2", "optimizer.use_ema=true", "trainer.evaluate=last"),  # the EMA's average goes in at the end
], ids=["early stopping", "EMA"])
def test_a_run_killed_after_training_finishes_like_an_uninterrupted_one(tmp_path, data, monkeypatch, recipe):
    reference, straight = train(tmp_path, data, "reference", *recipe)
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert "trainer.early_stopping=1" not in recipe or metrics(reference)["epochs"] < 6  # it did stop early
    with monkeypatch.context() as patch:
        _kill_at(patch, "before scoring")
        run, killed = train(tmp_path, data, "run", *recipe)
    assert killed.returncode == 130 and status(run) == "interrupted"
    finished = run_cli(["train", f"resume={run}"], cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "epochs are trained; evaluating" in finished.stderr
    assert {k: metrics(run)[k] for k in SAME} == {k: metrics(reference)[k] for k in SAME}
    again = run_cli(["train", f"resume={run}"], cwd=tmp_path)
    assert again.returncode == 2 and "is complete" in again.stderr


# -- resume checks the data it started on; provenance keeps every process --------------------------

def _change_images(batches: Path) -> None:
    with open(batches / "test_batch", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    batch[b"data"] = 255 - batch[b"data"]
    with open(batches / "test_batch", "wb") as f:
        pickle.dump(batch, f)


def test_resume_on_changed_data_is_refused_unless_allowed_and_then_both_are_recorded(tmp_path, data):
    root = tmp_path / "data" / "cifar-10-batches-py"
    shutil.copytree(data[0], root)
    run, first = train(tmp_path, (root, tmp_path / "cache"), "run", "trainer.epochs=1")
    assert first.returncode == 0, first.stderr[-2000:]
    started_on = json.loads((run / "provenance.json").read_text())
    _change_images(root)
    before = snapshot(run)
    refused = run_cli(["train", f"resume={run}", "trainer.epochs=2"], cwd=tmp_path)
    assert refused.returncode == 2
    assert started_on["data"]["sha256"] in refused.stderr and "resume_new_data=true" in refused.stderr
    assert snapshot(run) == before
    allowed = run_cli(["train", f"resume={run}", "trainer.epochs=2", "resume_new_data=true"], cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    record = json.loads((run / "provenance.json").read_text())
    assert record["argv"] == started_on["argv"] and record["hardware"] == started_on["hardware"]
    assert record["data"]["sha256"] == started_on["data"]["sha256"]  # what it started on
    [resumed] = record["resumes"]
    assert resumed["data"]["sha256"] not in (None, started_on["data"]["sha256"])  # what it went on with
    assert any(a.startswith("resume=") for a in resumed["argv"]) and resumed["versions"] and resumed["backend"]


# -- one line, nothing half-made -------------------------------------------------------------------

@pytest.mark.parametrize("override, expected", [
    ("trainer.time_budget=inf", "trainer.time_budget=inf must be a finite number of seconds"),
])
def test_a_bad_budget_is_one_line_and_leaves_no_run(tmp_path, data, override, expected):
    out, result = train(tmp_path, data, "run", "trainer.epochs=1", override)
    assert result.returncode == 2 and expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_a_batch_memory_cannot_hold_is_refused_and_evaluation_batches_shrink(monkeypatch):
    import keras
    from omegaconf import OmegaConf

    from cifarx.errors import ConfigError
    from cifarx.training import backend

    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(64, 3, padding="same")(inputs))
    per_image = backend.activation_bytes(model)
    assert per_image == 32 * 32 * 3 * 4 + 32 * 32 * 64 * 4
    trainer = OmegaConf.create({"batch_size": 64, "eval_batch_size": None})
    monkeypatch.setattr(backend, "available_memory", lambda: per_image * 64 * backend.TRAINING_FACTOR)  # needs 1/MEMORY_SHARE more
    with pytest.raises(ConfigError, match=r"trainer.batch_size=64 needs about .* GiB .* use at most \d+"):
        backend.check_batches(model, trainer, 1000, 1000)
    backend.check_batches(model, trainer, 20, 20)  # a batch larger than the data is the data
    assert trainer.eval_batch_size is None
    trainer.batch_size = 16
    backend.check_batches(model, trainer, 1000, 1000)
    assert 16 <= trainer.eval_batch_size < 256  # lowered from max(256, batch) to what fits


def test_a_bad_value_inside_a_sweep_is_one_line_and_leaves_no_sweep_folder(tmp_path, data):
    root, cache = data
    result = run_cli(["train", "-m", f"data.root={root}", f"data.cache_dir={cache}", "trainer.epochs=1",
                      "trainer.batch_size=32,abc", f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    assert result.returncode == 2
    assert "'abc'" in result.stderr and "(in the sweep trainer.batch_size=32,abc)" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "multirun").exists()


def test_without_a_validation_split_best_means_last_and_early_stopping_is_refused(tmp_path, data):
    run, result = train(tmp_path, data, "run", "trainer.epochs=2", "split=none", "trainer.evaluate=best")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trainer.evaluate=best means last here" in result.stderr
    assert metrics(run)["evaluated_checkpoint"] == "last" and not (run / "best.keras").exists()
    out, refused = train(tmp_path, data, "stop", "split=none", "trainer.early_stopping=3")
    assert refused.returncode == 2 and "trainer.early_stopping=3 needs a validation split" in refused.stderr
    assert not out.exists()


def test_step_boundaries_past_the_run_are_said(tmp_path, data):
    out, told = train(tmp_path, data, "run", "trainer.epochs=1", "schedule.boundaries=[5,7]", "data.max_train=50")
    assert told.returncode == 0
    assert "train 40 (data.max_train=50 less 10 for validation), val 10" in told.stderr  # the subset explained
    said = "schedule.boundaries [5, 7]: all lie past trainer.epochs=1, so the rate stays 1x"
    assert said in told.stderr and said in (out / "train.log").read_text()


@pytest.mark.parametrize("name", ["it's", "trailing\\", "a=b,c d"])
def test_resume_continues_in_the_directory_it_names(tmp_path, name):
    from cifarx.config.overrides import explicit_dir, split_overrides
    from cifarx.run.resume import continue_in_place

    run = tmp_path / name
    args = continue_in_place(["trainer.epochs=3", f"resume={run}"], str(run))
    assert explicit_dir(split_overrides(args)) == str(run)
    quoted = [a for a in args if a.startswith("resume=")][0]
    assert explicit_dir([quoted.replace("resume=", "hydra.run.dir=")]) == str(run)


def test_the_budget_clock_starts_with_the_command_not_the_import():
    from cifarx import process
    from cifarx.training import budget

    process.COMMAND_STARTED.clear()  # a library caller: no command started
    assert abs(budget.job_started() - time.monotonic()) < 1
    process.COMMAND_STARTED[:] = [time.monotonic() - 5]  # what cli.main records
    assert 4 < time.monotonic() - budget.job_started() < 6
    assert not process.COMMAND_STARTED  # a later sweep job counts from its own start


def test_a_model_file_with_python_code_is_refused_in_one_whole_sentence(tmp_path):
    import keras

    from cifarx.errors import RunError
    from cifarx.models import load_model

    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(tmp_path / "lambda.keras")
    with pytest.raises(RunError) as refused:
        load_model(tmp_path / "lambda.keras")
    message = str(refused.value)
    assert "holds Python code (a Lambda layer" in message and "safe mode refuses to run" in message
    assert message.endswith("changed since") and "\n" not in message


def test_an_in_process_resume_ignores_a_previous_hydra_jobs_overrides(tmp_path, finished, monkeypatch):
    """run_command(..., run_dir=...) from a library or a search: Hydra's global state, if any, is a
    previous job's, and its trainer.epochs once cut a resumed run short (found by CI's test order)."""
    from cifarx.commands.train import run_train
    from cifarx.run import lifecycle as runtime
    from helpers import compose

    run = tmp_path / "copy"
    shutil.copytree(finished, run)
    edit_config(run, lambda c: c["trainer"].update(epochs=2))
    (run / "status.json").write_text(json.dumps({**json.loads((run / "status.json").read_text()),
                                                 "status": "interrupted"}))
    from cifarx.run.job import Job

    stale = Job(run, overrides=("trainer.epochs=1",), hydra_job=True)  # what Hydra's global state would say
    monkeypatch.setattr(Job, "from_hydra", classmethod(lambda cls, preflighted=False: stale))
    runtime.run_command("train", run_train, compose("train", [f"resume={run}"]), run_dir=run)
    assert metrics(run)["epochs"] == 2 and status(run) == "completed"
