"""JAX's persistent compilation cache: a second run compiles nothing, and no run compiles a step per
batch shape or per epoch (counted from jax.monitoring events into metrics.json's `compile`)."""

from __future__ import annotations

import importlib.util
import json
import stat

import pytest

from cifarx.errors import ConfigError
from cifarx.training.compile_cache import default_dir, enable, private_dir
from conftest import write_batches_dir
from helpers import cli_without_tensorflow


def _jax_cli(args, cwd):
    done = cli_without_tensorflow("jax", args, cwd)  # also the JAX check of test_backends
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_a_second_run_loads_every_step_from_the_cache_and_no_step_compiles_per_batch_shape(tmp_path):
    root = write_batches_dir(tmp_path / "data")  # 80 training images after the validation split
    cache = tmp_path / "jax-cache"
    common = [f"data.root={root}", f"data.cache_dir={tmp_path / 'c'}", "model.filters=[4,8,8]", "data=augment",
              "trainer.epochs=2", "trainer.batch_size=24", f"trainer.compile_cache_dir={cache}", "figures=false"]
    _jax_cli(["train", *common, f"hydra.run.dir={tmp_path / 'cold'}", "--then",
              "train", *common, "trainer.drop_last=true", f"hydra.run.dir={tmp_path / 'dropped'}", "--then",
              "evaluate", f"run={tmp_path / 'cold'}", f"compile_cache_dir={cache}", f"hydra.run.dir={tmp_path / 'ev'}",
              "--then", "extract", f"run={tmp_path / 'cold'}", f"hydra.run.dir={tmp_path / 'ext'}"],
             tmp_path)
    _jax_cli(["train", *common, f"hydra.run.dir={tmp_path / 'warm'}"], tmp_path)  # a fresh process

    def compiled(run):
        return json.loads((tmp_path / run / "metrics.json").read_text())["compile"]

    cold, dropped, warm = compiled("cold"), compiled("dropped"), compiled("warm")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700 and cold["cache_dir"] == str(cache)
    # 80 images in batches of 24 end with a partial batch of 8: a second train step shape ...
    assert cold["steps"]["jit(train_step)"] == 2 and cold["compiles"] > 0 and cold["cache_writes"] == cold["compiles"]
    assert dropped["steps"]["jit(train_step)"] == 1  # ... that trainer.drop_last avoids
    for record in (cold, dropped, warm):
        assert "later epochs" not in record["phases"]  # nothing at all is compiled after the first epoch
        assert record["steps"]["jit(predict_step)"] == 1  # every split and TTA view: one padded batch shape
    # The fresh process needs the same executables and compiles none of them: all come from the cache.
    assert warm["requests"] == cold["requests"] and warm["compiles"] == 0 and warm["cache_hits"] == warm["requests"]
    assert warm["compile_seconds"] < cold["compile_seconds"]
    cold_metrics = json.loads((tmp_path / "cold" / "metrics.json").read_text())
    assert cold_metrics["backend"] == "jax" and cold_metrics["test_count"] == 40
    assert json.loads((tmp_path / "ext" / "features.json").read_text())["dim"] == 8
    scored = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert scored["test_accuracy"] == json.loads((tmp_path / "cold" / "metrics.json").read_text())["test_accuracy"]


def test_the_cache_folder_is_private_and_one_others_can_write_is_refused(tmp_path, monkeypatch):
    made = private_dir(tmp_path / "a" / "jax", "trainer.compile_cache_dir")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigError, match="can be written by others"):
        private_dir(shared, "trainer.compile_cache_dir")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_dir() == tmp_path / "xdg" / "cifarx" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_dir().parts[-3:] == (".cache", "cifarx", "jax")


def test_other_backends_and_the_opt_out_set_no_cache(tmp_path):
    assert enable(True, str(tmp_path / "x")) is None and not (tmp_path / "x").exists()  # TensorFlow here
    assert enable(False, str(tmp_path / "y")) is None and not (tmp_path / "y").exists()
