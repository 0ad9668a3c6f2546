"""Any Keras backend: a tiny train + extract under PyTorch, with TensorFlow made unimportable. JAX
runs the same commands without TensorFlow in test_compile_cache (train, evaluate, extract)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from conftest import write_batches_dir
from helpers import cli_without_tensorflow

pytestmark = pytest.mark.slow
BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(module) is None,
                                                        reason=f"{module} is not installed"))
            for name, module in (("torch", "torch"),)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_and_extract_without_tensorflow(backend, tmp_path):
    root = write_batches_dir(tmp_path / "data")
    common = [f"data.root={root}", f"data.cache_dir={tmp_path / 'c'}"]
    both = cli_without_tensorflow(backend, ["train", *common, "trainer.epochs=1", "model.filters=[4,8,8]", "data=augment",
                                   f"hydra.run.dir={tmp_path / 'run'}", "--then",
                                   "extract", f"run={tmp_path / 'run'}", f"hydra.run.dir={tmp_path / 'ext'}"], tmp_path)
    assert both.returncode == 0, both.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["backend"] == backend and metrics["test_count"] == 40
    assert json.loads((tmp_path / "ext" / "features.json").read_text())["dim"] == 8
