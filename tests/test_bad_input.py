"""Bad input: one clear line on stderr, a non-zero exit, no traceback, no run directory left."""

from __future__ import annotations

import pytest

from conftest import run_cli, write_batches_dir

CASES = {
    "unknown model": (["model=vgg99"], "unknown model 'vgg99'; choose one of: airbench, simple_cnn, vgg16, vgg19"),
    "unimportable model class": (["model._target_=nope.Foo"], "model._target_='nope.Foo' cannot be imported"),
    "not an optimizer class": (["optimizer._target_=keras.layers.Dense"],
                               "optimizer._target_='keras.layers.Dense' is not a Keras optimizer class"),
    "optimizer argument its class lacks": (["optimizer=sgd", "+optimizer.beta_1=0.9"],
                                           "optimizer.beta_1 is not an argument of keras.optimizers.SGD; it takes: "
                                           "learning_rate, momentum, nesterov"),
    "model value of the wrong type": (["model.width=wide"], "model.width: Value 'wide' of type 'str' could not be converted"),
    "schedule argument its class lacks": (["schedule=plateau", "+schedule.warmup_epochs=2"],
                                          "schedule.warmup_epochs is not an argument of cifarx.training.schedules.Plateau"),
    "unknown data option": (["data=fancy"], "unknown data 'fancy'; choose one of: augment, normalize, raw"),
    "misspelled key": (["trainer.epoch=3"], "unknown config key 'trainer.epoch'"),
    "wrong type": (["trainer.epochs=many"], "invalid value for 'trainer.epochs'"),
    "non-positive epochs": (["trainer.epochs=0"], "trainer.epochs=0 must be a positive integer"),
    "bad enum": (["data.normalize=minmax"], "invalid value for 'data.normalize'"),
    "bad fraction": (["data.val_fraction=1.5"], "data.val_fraction=1.5 must be in [0, 1)"),
    "missing data root": (["data.root=/nonexistent/cifar"], "data.root='/nonexistent/cifar' does not exist"),
    "bad step schedule": (["schedule.factors=[1.0]"], "schedule.factors needs one more entry"),
    "another command's group": (["clf=rf"], "clf is not an option of cifarx train; it belongs to cifarx classic"),
    "bad time budget": (["trainer.time_budget=-5"], "must be a finite number of seconds > 0, or null"),
    "unknown logger": (["logger=wandb"], "unknown logger 'wandb'; choose one of: mlflow, none"),
}


def assert_clean_failure(result, expected: str, cwd):
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("cifarx") and "error:" in ln]
    assert len(errors) == 1 and errors[0] == lines[-1], result.stderr  # progress lines may precede it
    assert expected in errors[0], errors[0]
    assert "Traceback" not in result.stderr + result.stdout
    runs = list((cwd / "outputs").rglob("status.json")) if (cwd / "outputs").exists() else []
    assert runs == []


def assert_refused_in_preflight(command: str, args: list[str], expected: str) -> None:
    """The pre-flight check (what the CLI runs before Hydra makes any directory) refuses it in one line."""
    from cifarx.cli import preflight

    message = preflight(command, args)
    assert message is not None and expected in message, message
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_train_override(case):
    overrides, expected = CASES[case]
    assert_refused_in_preflight("train", overrides, expected)


@pytest.mark.parametrize("case", ["unknown model", "wrong type", "another command's group", "missing data root"])
def test_bad_train_override_end_to_end(case, tmp_path):
    """The same refusals through the real entry point: one line, exit 2, no traceback, no run left."""
    overrides, expected = CASES[case]
    result = run_cli(["train", *overrides], cwd=tmp_path)
    assert result.returncode == 2
    assert_clean_failure(result, expected, tmp_path)


def test_wrong_layout_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli(["train", f"data.root={tmp_path / 'empty'}", f"data.cache_dir={tmp_path / 'c'}"], cwd=tmp_path)
    assert_clean_failure(result, "has an unknown layout", tmp_path)


def test_corrupt_batch_file(tmp_path):
    folder = write_batches_dir(tmp_path / "data")
    (folder / "data_batch_3").write_bytes(b"this is not a pickle")
    result = run_cli(["train", f"data.root={folder}", f"data.cache_dir={tmp_path / 'c'}"], cwd=tmp_path)
    assert_clean_failure(result, "corrupt CIFAR-10 batch file 'data_batch_3'", tmp_path)


def test_evaluate_on_a_directory_that_is_not_a_run(tmp_path):
    result = run_cli(["evaluate", f"run={tmp_path}"], cwd=tmp_path)
    assert_clean_failure(result, "is not a cifarx run directory", tmp_path)


def test_evaluate_without_run(tmp_path):
    result = run_cli(["evaluate"], cwd=tmp_path)
    assert_clean_failure(result, "no run given: `cifarx evaluate run=<train run dir>`", tmp_path)


# -- the rest of the catalogue: every command, config, files and data ----------------------------

COMMAND_CASES = {
    "unknown experiment": (["train", "experiment=nope"], "unknown experiment 'nope'; choose one of: cnn_wide, fast_cpu"),
    "added key past the schema": (["train", "+model.depth=5"], "model.depth is not an argument of cifarx.models.simple_cnn.SimpleCNN; it takes: name, filters"),
    "bad precision": (["train", "trainer.precision=float8"], "trainer.precision='float8' is not one of: float32"),
    "negative batch size": (["train", "trainer.batch_size=-4"], "trainer.batch_size=-4 must be a positive integer"),
    "vgg input too small": (["train", "model=vgg16", "model.input_size=16"], "model.input_size=16 must be >= 32"),
    "resume a missing run": (["train", "resume=/nonexistent/run"], "run directory '/nonexistent/run' does not exist"),
    "resume with another model": (["train", "resume=/nonexistent/run", "model=vgg16"], "refusing overrides"),
    "run dir under a file": (["train", "hydra.run.dir=/etc/hostname/run"], "is a file, not a directory"),
    "unknown classifier": (["classic", "clf=xgb", "features=pixels"], "unknown clf 'xgb'; choose one of: knn, logreg, rf, svm, svm_rbf"),
    "bad pca": (["classic", "features=pixels", "pca=0"], "pca=0 must be a positive number of components"),
    "features not a directory": (["classic", "features=/nonexistent"], "features='/nonexistent' is not a directory"),
    "extract with nothing": (["extract"], "give exactly one of run=<train run dir> or model_path=<file.keras>"),
    "extract missing model file": (["extract", "model_path=/nonexistent.keras"], "model_path='/nonexistent.keras' is not a file"),
    "data with a bad fraction": (["data", "data.val_fraction=-0.1"], "data.val_fraction=-0.1 must be in [0, 1)"),
    "compare a missing path": (["compare", "/nonexistent"], "'/nonexistent' does not exist"),
}


BEFORE_PREFLIGHT = {"compare a missing path", "resume with another model"}  # refused by cli.main itself


@pytest.mark.parametrize("case", sorted(COMMAND_CASES))
def test_bad_command_input(case, tmp_path):
    args, expected = COMMAND_CASES[case]
    if case in BEFORE_PREFLIGHT or case in ("unknown classifier", "extract with nothing"):  # and two end to end
        result = run_cli(args, cwd=tmp_path)
        assert_clean_failure(result, expected, tmp_path)
    else:
        assert_refused_in_preflight(args[0], args[1:], expected)


def _image_root(tmp_path, damage):
    from conftest import write_image_dir

    root = write_image_dir(tmp_path / "img", train_per_class=2, test_per_class=1)
    damage(root)
    return root


def _non_image(root):
    (root / "train" / "cat" / "notes.txt").write_text("hello")


def _wrong_size(root):
    from PIL import Image

    Image.new("RGB", (48, 48)).save(root / "test" / "dog" / "big.png")


def _mismatched(root):
    (root / "test" / "frog").rename(root / "test" / "toad")


def _corrupt_image(root):
    (root / "train" / "ship" / "0000.png").write_bytes(b"\x89PNG broken")


DATA_CASES = {
    "non-image file": (_non_image, "notes.txt' in"),
    "image of the wrong size": (_wrong_size, "big.png' is 48x48, not 32x32; set data.other_sizes=pad"),
    "mismatched class folders": (_mismatched, "train and test class folders differ"),
    "corrupt image": (_corrupt_image, "0000.png' is not a readable image"),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_bad_image_folder(case, tmp_path):
    damage, expected = DATA_CASES[case]
    root = _image_root(tmp_path, damage)
    result = run_cli(["data", f"data.root={root}", f"data.cache_dir={tmp_path / 'c'}"], cwd=tmp_path)
    assert_clean_failure(result, expected, tmp_path)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())  # nothing cached


def test_labels_out_of_range_via_the_cli(tmp_path):
    import pickle

    root = write_batches_dir(tmp_path / "d")
    entry = pickle.loads((root / "data_batch_2").read_bytes(), encoding="bytes")
    entry[b"labels"][3] = 11
    (root / "data_batch_2").write_bytes(pickle.dumps(entry))
    result = run_cli(["data", f"data.root={root}", f"data.cache_dir={tmp_path / 'c'}"], cwd=tmp_path)
    assert_clean_failure(result, "labels range 0..11 but there are 10 classes", tmp_path)


def test_truncated_tarball(tmp_path):
    from conftest import write_tarball

    archive = write_tarball(tmp_path)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    result = run_cli(["data", f"data.root={archive}", f"data.cache_dir={tmp_path / 'c'}"], cwd=tmp_path)
    assert_clean_failure(result, "cannot read archive", tmp_path)


@pytest.mark.parametrize(("command", "overrides", "expected"), [
    ("train", ["trainer.label_smoothing=1.0"], "trainer.label_smoothing=1.0 must be in [0, 1)"),
    ("train", ["data.augment.shift=0.5"], "data.augment.shift=0.5 must be in [0, 0.5)"),
    ("train", ["seed=-1"], "seed=-1 must be an integer in [0, 4294967295]"),
    ("classic", ["features=pixels", "predict_chunk=0"], "predict_chunk=0 must be positive"),
    ("export", ["run=x", "parity.min_agreement=1.5"], "parity.min_agreement=1.5 must be in (0, 1]"),
    ("predict", ["run=x", "source=y", "top_k=0"], "top_k=0 must be a positive integer"),
])
def test_ranges_live_in_the_schema_and_are_checked_before_anything_else(command, overrides, expected):
    """Ranges are the schema dataclasses' own (__post_init__): building the typed config refuses a
    bad value in one line, and pre-flight says so before it looks for runs or files."""
    from omegaconf import OmegaConf

    from cifarx.config import compose
    from cifarx.errors import ConfigError

    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        OmegaConf.to_object(compose(command, overrides))
    assert_refused_in_preflight(command, overrides, expected)


def test_a_required_value_inside_a_group_is_named():
    """A ??? left inside a group (an experiment file that forgot a value) is named in one line, not
    passed over: the ranges are still checked."""
    from omegaconf import OmegaConf

    from cifarx.config import compose
    from cifarx.config.validate import check_ranges
    from cifarx.errors import ConfigError

    cfg = compose("train", [])
    OmegaConf.update(cfg, "trainer.epochs", "???")
    with pytest.raises(ConfigError, match=r"trainer.epochs has no value"):
        check_ranges(cfg)
