"""Any Keras backend: a tiny train + extract under JAX, with TensorFlow made unimportable."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import write_batches_dir

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")]

BLOCK_TF = """
import sys
class NoTensorFlow:
    def find_spec(self, name, path, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("TensorFlow is not installed on this machine")
sys.meta_path.insert(0, NoTensorFlow())
from cifarx.cli import main
code = main(sys.argv[1:])
assert "tensorflow" not in sys.modules
sys.exit(code)
"""


def cli_without_tensorflow(args, cwd):
    env = {"KERAS_BACKEND": "jax", "CI": "true", "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", BLOCK_TF, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=600)


def test_train_and_extract_under_jax_without_tensorflow(tmp_path):
    root = write_batches_dir(tmp_path / "data")
    common = [f"data.root={root}", f"data.cache_dir={tmp_path / 'c'}"]
    train = cli_without_tensorflow(["train", *common, "trainer.epochs=1", "model.filters=[4,8,8]", "data=augment",
                                    f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert train.returncode == 0, train.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["backend"] == "jax" and metrics["test_count"] == 40
    extract = cli_without_tensorflow(["extract", f"run={tmp_path / 'run'}", f"hydra.run.dir={tmp_path / 'ext'}"], tmp_path)
    assert extract.returncode == 0, extract.stderr[-3000:]
    assert json.loads((tmp_path / "ext" / "features.json").read_text())["dim"] == 8
