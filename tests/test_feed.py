"""The training feed: batch order from (seed, epoch) alone, the same on every feed; SIGKILL-safe."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cifarx.data.feed import FeedPlan, epoch_order, training_feed
from conftest import run_cli, write_batches_dir

COMPILED_STEPS = True  # each feed into the traced steps (tf.data graph input included) (conftest: other modules run steps eagerly)


def _epoch(kind, x, y, batch, seed, first_epoch, epoch, **options):
    """The (images, labels) batches of ``epoch`` as the feed hands them to ``fit``."""
    feed, feed_epoch, steps = training_feed(x, y, FeedPlan(batch, seed, first_epoch, kind, **options))
    feed_epoch.on_epoch_begin(epoch)
    if kind == "tf_data":
        batches = [(np.asarray(a), np.asarray(b)) for a, b in feed]
    else:
        batches = [feed[i] for i in range(len(feed))]
    assert len(batches) == steps
    return batches


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (103, 4, 4, 3), dtype=np.uint8)
    y = np.arange(103, dtype=np.int64)  # label = index: shows exactly which images a batch holds
    return x, y


@pytest.mark.parametrize("kind", ["tf_data", "python"])
def test_each_epoch_visits_every_image_once_in_its_own_order(kind, arrays):
    x, y = arrays
    first = _epoch(kind, x, y, 10, 42, 0, 0)
    second = _epoch(kind, x, y, 10, 42, 0, 1)
    for batches in (first, second):
        labels = np.concatenate([b for _, b in batches])
        assert sorted(labels.tolist()) == list(range(103))  # all images, none twice, last batch partial
        assert all(np.array_equal(img, x[lab]) for img, lab in zip(np.concatenate([a for a, _ in batches]), labels))
    assert [b.tolist() for _, b in first] != [b.tolist() for _, b in second]
    assert sorted(first[0][1].tolist()) == sorted(epoch_order(42, 0, 103)[:10].tolist())


def test_both_feeds_hand_over_the_same_batches(arrays):
    """tf_data (TensorFlow's fast path) and python (JAX, PyTorch) train on identical batches."""
    x, y = arrays
    for epoch in (0, 3):
        a = _epoch("tf_data", x, y, 16, 7, 0, epoch)
        b = _epoch("python", x, y, 16, 7, 0, epoch)
        assert [lab.tolist() for _, lab in a] == [lab.tolist() for _, lab in b]
        assert all(np.array_equal(x1, x2) for (x1, _), (x2, _) in zip(a, b))


def _mirrored(batches, x) -> dict[int, bool]:
    """Image index -> whether the feed handed it over mirrored (every image must be one or the other)."""
    seen = {}
    for images, labels in batches:
        for image, label in zip(images, labels):
            assert np.array_equal(image, x[label]) or np.array_equal(image, x[label][:, ::-1])
            seen[int(label)] = not np.array_equal(image, x[label])
    return seen


@pytest.mark.parametrize("kind", ["tf_data", "python"])
def test_alternating_flip_mirrors_every_image_exactly_once_in_every_two_epochs(kind, arrays):
    """airbench94's alternating flip: epoch 0 mirrors a random half, each later epoch exactly the
    images the epoch before did not; with drop_last each epoch is whole batches only."""
    x, y = arrays
    epochs = [_mirrored(_epoch(kind, x, y, 10, 5, 0, e, alternate_flip=True), x) for e in range(5)]
    assert all(sorted(seen) == list(range(103)) for seen in epochs)
    for before, after in zip(epochs, epochs[1:]):
        assert all(before[i] != after[i] for i in range(103))  # mirrored in exactly one of the two
    assert 30 < sum(epochs[0].values()) < 73  # a random half, not all or none
    resumed = _mirrored(_epoch(kind, x, y, 10, 5, 3, 3, alternate_flip=True), x)
    assert resumed == epochs[3]  # from (seed, epoch) alone, as the order is
    dropped = _epoch(kind, x, y, 10, 5, 0, 1, alternate_flip=True, drop_last=True)
    assert len(dropped) == 10 and all(len(labels) == 10 for _, labels in dropped)
    assert all(epochs[1][i] == m for i, m in _mirrored(dropped, x).items())
    plain = _mirrored(_epoch(kind, x, y, 10, 5, 0, 1), x)
    assert not any(plain.values())  # off by default: the model's own random flip does it


def test_alternating_flip_turns_the_models_random_flip_off():
    import keras
    from omegaconf import OmegaConf

    from cifarx.models.preprocessing import input_pipeline

    def flip(**augment):
        inputs = keras.Input((8, 8, 3), dtype="uint8")
        cfg = OmegaConf.create({"enabled": True, "flip": True, "shift": 0.125, "fill_value": 0.0, **augment})
        x = input_pipeline(inputs, normalize="scale", augment=cfg, seed=0)
        return keras.Model(inputs, x).get_layer("augment").flip

    assert flip() is True and flip(alternate_flip=False) is True and flip(alternate_flip=True) is False


def test_a_resumed_feed_repeats_the_epochs_of_an_uninterrupted_one(arrays):
    x, y = arrays
    straight = _epoch("tf_data", x, y, 10, 42, 0, 5)
    resumed = _epoch("tf_data", x, y, 10, 42, 5, 5)  # a feed built by a run resumed at epoch 5
    assert [lab.tolist() for _, lab in straight] == [lab.tolist() for _, lab in resumed]


@pytest.mark.slow
def test_sigkill_mid_run_leaves_a_run_that_resumes_to_the_same_numbers(tmp_path):
    """kill -9 during training (no handler runs) -> resume= finishes it exactly as a straight run."""
    root = write_batches_dir(tmp_path / "data", train_per_class=24, test_per_class=4)
    common = [f"data.root={root}", f"data.cache_dir={tmp_path / 'cache'}", "model.filters=[4,8,8]",
              "trainer.batch_size=16", "data=augment", "trainer.epochs=4"]
    env = {"CI": "true", "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"}
    cli = [sys.executable, "-m", "cifarx.cli", "train"]
    straight = run_cli(["train", *common, f"hydra.run.dir={tmp_path / 'straight'}"], cwd=tmp_path)  # in-process
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cli, *common, f"hydra.run.dir={killed}"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until at least two epochs are on disk, then kill -9
        history = killed / "history.csv"
        if history.exists() and len(history.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "metrics.json").exists()  # it really died before finishing
    resumed = run_cli(["train", f"resume={killed}", "trainer.epochs=4"], cwd=tmp_path)  # in-process
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert b["epochs"] == a["epochs"] == 4
    for key in ("train_accuracy", "test_accuracy", "train_loss", "test_loss"):
        assert b[key] == a[key], key
