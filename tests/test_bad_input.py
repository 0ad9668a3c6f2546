"""Bad input: one clear line on stderr, a non-zero exit, no traceback, no run directory left."""

from __future__ import annotations

import pytest

from conftest import run_cli, write_batches_dir

CASES = {
    "unknown model": (["model=vgg99"], "unknown model 'vgg99'; choose one of: simple_cnn, vgg16, vgg19"),
    "unknown data option": (["data=fancy"], "unknown data 'fancy'; choose one of: augment, normalize, raw, split"),
    "misspelled key": (["trainer.epoch=3"], "unknown config key 'trainer.epoch'"),
    "wrong type": (["trainer.epochs=many"], "invalid value for 'trainer.epochs'"),
    "non-positive epochs": (["trainer.epochs=0"], "trainer.epochs=0 must be a positive integer"),
    "bad enum": (["data.normalize=minmax"], "invalid value for 'data.normalize'"),
    "bad fraction": (["data.val_fraction=1.5"], "data.val_fraction=1.5 must be in [0, 1)"),
    "missing data root": (["data.root=/nonexistent/cifar"], "data.root='/nonexistent/cifar' does not exist"),
    "bad step schedule": (["schedule.factors=[1.0]"], "schedule.factors needs one more entry"),
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


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_train_override(case, tmp_path):
    overrides, expected = CASES[case]
    result = run_cli(["train", *overrides], cwd=tmp_path)
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
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "run" in result.stderr
