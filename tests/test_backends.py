"""Any Keras backend: a tiny train + extract under JAX and PyTorch, with TensorFlow made unimportable."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import write_batches_dir

pytestmark = pytest.mark.slow
BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(module) is None,
                                                        reason=f"{module} is not installed"))
            for name, module in (("jax", "jax"), ("torch", "torch"))]

BLOCK_TF = """
import importlib.abc, importlib.machinery, sys
class Absent(importlib.abc.Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r}", name=spec.name)
    def exec_module(self, module):
        pass
class NoTensorFlow:  # `import tensorflow` fails as on a machine without it; probes see no origin
    def find_spec(self, name, path, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            return importlib.machinery.ModuleSpec(name, Absent())
sys.meta_path.insert(0, NoTensorFlow())
from cifarx.cli import main
from hydra.core.global_hydra import GlobalHydra
args, code = sys.argv[1:], 0
while args and code == 0:  # commands separated by "--then": one interpreter, one backend start-up
    cut = args.index("--then") if "--then" in args else len(args)
    GlobalHydra.instance().clear()
    code, args = main(args[:cut]), args[cut + 1:]
assert "tensorflow" not in sys.modules
sys.exit(code)
"""


def cli_without_tensorflow(backend, args, cwd):
    env = {"KERAS_BACKEND": backend, "CI": "true", "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "",
           "PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(cwd / "xdg-cache")}  # JAX's compilation cache
    return subprocess.run([sys.executable, "-c", BLOCK_TF, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=600)


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
