"""Tiny CIFAR-10-shaped datasets written in every real on-disk format, and config helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# matplotlib figures cost about a second a run: only the tests that check them ask for them (figures=true).
os.environ.setdefault("CIFARX_FIGURES", "false")

import pytest  # noqa: E402

from cifarx.process import import_keras_quietly  # noqa: E402
from helpers import (  # noqa: E402,F401  (re-exported for the tests)
    CLASSES,
    cli_in_process,
    compose,
    make_images,
    write_batches_dir,
    write_image_dir,
    write_tarball,
    write_zip,
)

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Keras (and TensorFlow's loggers) are imported before any test redirects stderr: in-process
    CLI runs (helpers.cli_in_process) must not leave a logger bound to one test's captured stream.
    Not in pytest-xdist's controller, which runs no test: its import (seconds) would delay the
    workers' start."""
    if not config.getoption("numprocesses", None) or hasattr(config, "workerinput"):
        import_keras_quietly()
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist's controller orders modules by test
        config.option.loadscopereorder = False  # count unless told not to: LONGEST_FIRST's order instead


@pytest.fixture(autouse=True, scope="module")
def _eager_unless_the_module_tests_compiled_steps(request):
    """Tiny runs skip tracing (trainer.run_eagerly, through CIFARX_RUN_EAGERLY: a third of a tiny
    run's time): what most modules test is the run around the steps. A module that tests the
    compiled steps themselves (layers, feeds, XLA, distribution) sets ``COMPILED_STEPS = True``."""
    eager = "false" if getattr(request.module, "COMPILED_STEPS", False) else "true"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CIFARX_RUN_EAGERLY", eager)
        yield


@pytest.fixture
def batches_dir(tmp_path):
    return write_batches_dir(tmp_path)


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"


def run_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 600, subprocess_: bool = False):
    """Run the real `cifarx` entry point (stdin closed, CI-like env): in this process, or in a
    subprocess where the test needs a fresh interpreter (``subprocess_=True``)."""
    if not subprocess_:
        return cli_in_process(args, cwd, env)
    inherited = {k: v for k, v in os.environ.items()
                 if not k.startswith("MLFLOW_HTTP_REQUEST_")}  # set by in-process tracking tests (cifarx.tracking.hooks)
    full_env = {**inherited, "CI": "true", "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", "cifarx.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)


def tiny_train_overrides(root: Path, cache: Path, epochs: int = 1) -> list[str]:
    return [f"data.root={root}", f"data.cache_dir={cache}", f"trainer.epochs={epochs}",
            "trainer.batch_size=32", "model.filters=[4,8,8]"]


@pytest.fixture(autouse=True, scope="session")
def _private_config_home(tmp_path_factory):
    """Pipeline signing keys (and anything else under XDG_CONFIG_HOME), and JAX's compilation cache
    (XDG_CACHE_HOME), stay out of the real home."""
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config_home"))
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache_home"))


# The modules that take longest (summed test seconds on 2 cores, longest first), started first:
# with `--dist loadscope` each module goes whole to the next free worker in collection order, so
# the long ones first let the two workers finish together instead of one waiting on the other.
LONGEST_FIRST = ["test_reliability", "test_tracking", "test_hostile_runs", "test_search", "test_compile_cache",
                 "test_export", "test_sweeps", "test_feed", "test_full_disk", "test_vgg", "test_train_e2e",
                 "test_epochs", "test_screen", "test_extract_classic", "test_predict", "test_cli", "test_airbench",
                 "test_distribute", "test_budget", "test_bad_input"]


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rsplit(".", 1)[-1], len(rank)))
