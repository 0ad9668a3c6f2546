"""Test helpers (not shipped in the wheel): small CIFAR-10-shaped datasets in every on-disk format cifarx
reads, and the in-process CLI runner. The benchmarks use the dataset writers too."""

from __future__ import annotations

import contextlib
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np

from cifarx.config import compose  # noqa: F401  (the config composed as the CLI composes it)

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_images(n_per_class: int, seed: int, classes=CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """Noisy images whose mean colour depends on the class, so a model can learn something."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(classes)), n_per_class)
    rng.shuffle(labels)
    base = (np.linspace(20, 235, len(classes))[:, None] * np.array([1.0, 0.6, 0.3])[None, :]) % 255
    images = base[labels][:, None, None, :] + rng.normal(0, 25, (len(labels), 32, 32, 3))
    return np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64)


def write_batches_dir(root: Path, train_per_class: int = 10, test_per_class: int = 4) -> Path:
    """A cifar-10-batches-py directory in the original pickle format."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    x_train, y_train = make_images(train_per_class, seed=1)
    x_test, y_test = make_images(test_per_class, seed=2)

    def dump(name, x, y):
        flat = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": flat, b"labels": [int(v) for v in y], b"batch_label": name.encode()}, f)

    for i, (xs, ys) in enumerate(zip(np.array_split(x_train, 5), np.array_split(y_train, 5)), start=1):
        dump(f"data_batch_{i}", xs, ys)
    dump("test_batch", x_test, y_test)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072}, f)
    return folder


def write_tarball(root: Path, **kw) -> Path:
    folder = write_batches_dir(root / "src", **kw)
    archive = root / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return archive


def write_image_dir(root: Path, train_per_class: int = 10, test_per_class: int = 4,
                    fmt: str = "png", classes=CLASSES, size: int = 32, mode: str = "RGB") -> Path:
    """train/<class>/*.png, test/<class>/*.png; ``size`` x ``size`` pixels, PIL ``mode`` (``L``: grayscale)."""
    from PIL import Image

    folder = root / "images"
    for split, n, seed in (("train", train_per_class, 3), ("test", test_per_class, 4)):
        x, y = make_images(n, seed, classes)
        for i, (img, label) in enumerate(zip(x, y)):
            d = folder / split / classes[label]
            d.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(img)
            if size != 32:
                image = image.crop((0, 0, size, size)) if size < 32 else image.resize((size, size))
            image.convert(mode).save(d / f"{i:04d}.{fmt}")
    return folder


def write_zip(root: Path, prefix: str = "", **kw) -> Path:
    folder = write_image_dir(root / "zsrc", fmt="jpg", **kw)
    archive = root / "images.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, prefix + path.relative_to(folder).as_posix())
    return archive




def cli_in_process(args: list[str], cwd: Path, env: dict | None = None):
    """Run ``cifarx <args>`` through the real entry point (argv parsing, pre-flight, Hydra, the
    run directory's lifecycle) in this process, as a subprocess would run it: in ``cwd``, with
    ``env`` added, stdin closed and stdout/stderr captured. Returns a CompletedProcess.

    Without a new interpreter and TensorFlow import per call, a test of the CLI contract costs
    what its work costs. Use a real subprocess for what needs one: signals, another Keras backend.
    """
    import io
    import os
    import subprocess
    import sys
    import traceback

    from cifarx import cli

    _absl_to_real_stderr()
    out, err = io.StringIO(), io.StringIO()
    # What a new process would have differently (cifarx itself puts back what it changes: logging,
    # SIGTERM; cifarx.process.caller_state_kept): its working directory, environment, argv, stdin.
    saved = (os.getcwd(), dict(os.environ), list(sys.argv), sys.stdin)
    os.environ.update({"CI": "true", **(env or {})})
    code = 0
    try:
        os.chdir(cwd)
        sys.stdin = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:  # what the interpreter would print before exiting 1
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(saved[0])
        os.environ.clear()
        os.environ.update(saved[1])
        sys.argv[:] = saved[2]
        sys.stdin = saved[3]
    return subprocess.CompletedProcess(["cifarx", *args], code, out.getvalue(), err.getvalue())


def _absl_to_real_stderr() -> None:
    """absl's handler (TensorFlow installs it) holds the stderr of the moment it was made, and
    closes it when Hydra reconfigures logging unless it is the stderr of that moment: point it at
    the process's own stderr so a caller's captured stream is never closed."""
    import sys

    absl = sys.modules.get("absl.logging")
    if absl is not None:
        absl.get_absl_handler().python_handler.setStream(sys.__stderr__)


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(url: str, proc, seconds: float, what: str) -> None:
    """Until ``url``/health answers; the test fails, saying why, if ``proc`` exits or ``seconds`` pass."""
    import time
    import urllib.request

    import pytest

    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1)
            return
        except OSError:
            if proc.poll() is not None:
                err = proc.stderr.read().decode()[-1500:] if proc.stderr else ""
                pytest.fail(f"{what} exited before it answered: {err}")
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"{what} did not answer in {seconds:.0f} s")
            time.sleep(0.3)


# `cifarx` commands in one fresh interpreter (one backend start-up), separated by "--then", with
# `import tensorflow` failing as on a machine without it (probes see no origin).
BLOCK_TF = """
import importlib.abc, importlib.machinery, sys
class Absent(importlib.abc.Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r}", name=spec.name)
    def exec_module(self, module):
        pass
class NoTensorFlow:
    def find_spec(self, name, path, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            return importlib.machinery.ModuleSpec(name, Absent())
sys.meta_path.insert(0, NoTensorFlow())
from cifarx.cli import main
args, code = sys.argv[1:], 0
while args and code == 0:
    cut = args.index("--then") if "--then" in args else len(args)
    code, args = main(args[:cut]), args[cut + 1:]
assert "tensorflow" not in sys.modules
sys.exit(code)
"""


def cli_without_tensorflow(backend: str, args: list[str], cwd: Path):
    """Run ``cifarx`` commands (``--then`` between them) on Keras ``backend`` in a fresh
    interpreter where TensorFlow cannot be imported; CPU only, JAX's cache under ``cwd``."""
    import subprocess
    import sys

    env = {"KERAS_BACKEND": backend, "CI": "true", "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "",
           "PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(cwd / "xdg-cache")}
    return subprocess.run([sys.executable, "-c", BLOCK_TF, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=600)
