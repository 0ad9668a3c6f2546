"""Multi-device training: MirroredStrategy on a CPU split into two logical devices."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli, write_batches_dir

pytestmark = pytest.mark.slow

COMPILED_STEPS = True  # a strategy's replicated steps are traced ones (conftest: other modules run steps eagerly)


def test_mirrored_training_on_two_logical_cpus(tmp_path):
    root = write_batches_dir(tmp_path / "data")
    result = run_cli(["train", "trainer.distribute=mirrored", "trainer.cpu_devices=2", f"data.root={root}",
                      f"data.cache_dir={tmp_path / 'c'}", "trainer.epochs=2", "model.filters=[4,8,8]",
                      "data=augment", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path,
                     subprocess_=True)  # logical CPU devices need a TensorFlow not yet started
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MirroredStrategy over 2 devices" in result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["epochs"] == 2 and metrics["test_count"] == 40
    assert 0 <= metrics["test_accuracy"] <= 1
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "completed"
