"""Data sources in every real format, the cache, subsets and the stratified split."""

from __future__ import annotations

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from cifarx.data import channel_stats, load_dataset, load_raw
from cifarx.data.sources import detect_format, load_path
from cifarx.errors import DataError
from conftest import CLASSES, make_images, write_batches_dir, write_image_dir, write_tarball, write_zip


def data_cfg(root, cache, **kw):
    base = {"root": str(root), "cache_dir": str(cache), "val_fraction": 0.2, "max_train": None,
            "max_test": None, "normalize": "zscore", "augment": {"enabled": False}}
    return OmegaConf.create({**base, **kw})


@pytest.mark.parametrize("writer, fmt", [(write_batches_dir, "batches"), (write_tarball, "tarball"),
                                         (write_image_dir, "image_dir"), (write_zip, "zip")])
def test_every_format_loads_the_same_kind_of_arrays(tmp_path, writer, fmt):
    root = writer(tmp_path)
    assert detect_format(root) == fmt
    raw = load_path(root)
    assert raw.class_names == CLASSES  # from batches.meta or the folder names
    assert raw.x_train.shape == (100, 32, 32, 3) and raw.x_train.dtype == np.uint8
    assert raw.x_test.shape == (40, 32, 32, 3)
    assert np.bincount(raw.y_train).tolist() == [10] * 10


def test_batches_round_trip_exactly(tmp_path):
    root = write_batches_dir(tmp_path)
    raw = load_path(root)
    x, y = make_images(10, seed=1)
    np.testing.assert_array_equal(raw.x_train, x)  # channel-first rows decoded to NHWC correctly
    np.testing.assert_array_equal(raw.y_train, y)


def test_zip_with_a_top_level_folder(tmp_path):
    root = write_zip(tmp_path, prefix="cifar10/")
    assert load_path(root).x_test.shape[0] == 40


def test_cache_is_used_on_the_second_load(tmp_path):
    root = write_batches_dir(tmp_path / "d")
    first, info1 = load_raw(str(root), str(tmp_path / "cache"))
    second, info2 = load_raw(str(root), str(tmp_path / "cache"))
    assert not info1["from_cache"] and info2["from_cache"]
    assert info1["sha256"] == info2["sha256"]
    np.testing.assert_array_equal(first.x_train, second.x_train)
    assert second.class_names == CLASSES


def test_cache_key_changes_when_the_source_changes(tmp_path):
    root = write_batches_dir(tmp_path / "d")
    _, info1 = load_raw(str(root), str(tmp_path / "cache"))
    (root / "test_batch").write_bytes((root / "test_batch").read_bytes())  # touch: new mtime
    import os
    os.utime(root / "test_batch", ns=(1, 1))
    _, info2 = load_raw(str(root), str(tmp_path / "cache"))
    assert info1["cache_key"] != info2["cache_key"] and not info2["from_cache"]


def test_split_is_stratified_seeded_and_disjoint(tmp_path):
    root = write_batches_dir(tmp_path / "d", train_per_class=20)
    cfg = data_cfg(root, tmp_path / "c")
    a, b = load_dataset(cfg, seed=1), load_dataset(cfg, seed=1)
    c = load_dataset(cfg, seed=2)
    assert len(a.y_train) == 160 and len(a.y_val) == 40
    assert np.bincount(a.y_val).tolist() == [4] * 10
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.x_val, c.x_val)
    train_rows = {r.tobytes() for r in a.x_train}
    assert not any(r.tobytes() in train_rows for r in a.x_val)


def test_max_train_and_max_test_take_stratified_subsets(tmp_path):
    root = write_batches_dir(tmp_path / "d", train_per_class=20)
    ds = load_dataset(data_cfg(root, tmp_path / "c", max_train=100, max_test=20), seed=0)
    assert len(ds.y_train) + len(ds.y_val) == 100 and len(ds.y_test) == 20
    assert np.bincount(ds.y_test).tolist() == [2] * 10


def test_max_train_below_class_count_is_an_error(tmp_path):
    root = write_batches_dir(tmp_path / "d")
    with pytest.raises(DataError, match="data.max_train=5 is smaller than the number of classes"):
        load_dataset(data_cfg(root, tmp_path / "c", max_train=5), seed=0)


def test_channel_stats_match_numpy():
    x, _ = make_images(5, seed=3)
    mean, std = channel_stats(x, chunk=7)
    np.testing.assert_allclose(mean, x.reshape(-1, 3).mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(std, x.reshape(-1, 3).std(axis=0), rtol=1e-6)
    pixels = x.reshape(-1, 3).astype(np.float64)  # float64 sums of the pixels, as runs before 2026-12-01 took them:
    total, total_sq, count = pixels.sum(axis=0), np.square(pixels).sum(axis=0), len(pixels)
    assert np.array_equal(mean, total / count)  # the same bits, so a model built today normalises as before
    assert np.array_equal(std, np.sqrt(np.maximum(total_sq / count - (total / count) ** 2, 1e-12)))


def test_image_folder_errors_name_the_file(tmp_path):
    root = write_image_dir(tmp_path, train_per_class=2, test_per_class=1)
    (root / "train" / "cat" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="notes.txt' .* is not an image file"):
        load_path(root)


def test_image_of_wrong_size(tmp_path):
    from PIL import Image

    root = write_image_dir(tmp_path, train_per_class=2, test_per_class=1)
    Image.new("RGB", (64, 64)).save(root / "test" / "dog" / "big.png")
    with pytest.raises(DataError, match="big.png' is 64x64, not 32x32; set data.other_sizes"):
        load_path(root)


def test_smaller_images_are_centred_or_scaled_only_when_asked(tmp_path):
    root = write_image_dir(tmp_path, train_per_class=2, test_per_class=1, size=28, mode="L")
    with pytest.raises(DataError, match=r"is 28x28, not 32x32; set data.other_sizes=pad .* or data.other_sizes=resize"):
        load_path(root)
    padded = load_path(root, "pad")
    assert padded.x_train.shape[1:] == (32, 32, 3) and padded.x_train.dtype == np.uint8
    assert not padded.x_train[:, :2].any() and not padded.x_train[:, :, -2:].any()  # a 2-pixel black border
    inner = padded.x_train[:, 2:30, 2:30]
    assert inner.any() and (inner[..., 0] == inner[..., 1]).all() and (inner[..., 1] == inner[..., 2]).all()  # grey
    resized = load_path(root, "resize")
    assert resized.x_train.shape[1:] == (32, 32, 3) and resized.x_train[:, :2].any()


def test_pad_refuses_larger_images_and_names_resize(tmp_path):
    root = write_image_dir(tmp_path, train_per_class=2, test_per_class=1, size=40)
    with pytest.raises(DataError, match="larger than 32x32: .* use data.other_sizes=resize"):
        load_path(root, "pad")
    assert load_path(root, "resize").x_test.shape[1:] == (32, 32, 3)


@pytest.mark.slow
def test_a_28x28_grayscale_folder_trains_with_other_sizes_pad(tmp_path):
    from cifarx.commands.train import run_train
    from cifarx.run.lifecycle import run_command
    from helpers import compose

    root = write_image_dir(tmp_path, train_per_class=8, test_per_class=2, size=28, mode="L")
    out = tmp_path / "run"
    cfg = compose("train", [f"data.root={root}", f"data.cache_dir={tmp_path / 'c'}", "data.other_sizes=pad",
                            "trainer.epochs=1", "trainer.batch_size=16", "model.filters=[4,8,8]"])
    run_command("train", run_train, cfg, run_dir=out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert json.loads((out / "provenance.json").read_text())["data"]["other_sizes"] == "pad"


def test_mismatched_class_folders(tmp_path):
    root = write_image_dir(tmp_path, train_per_class=2, test_per_class=1)
    (root / "test" / "frog").rename(root / "test" / "toad")
    with pytest.raises(DataError, match="train and test class folders differ"):
        load_path(root)


def test_labels_out_of_range_in_batches(tmp_path):
    import pickle

    root = write_batches_dir(tmp_path)
    entry = pickle.loads((root / "test_batch").read_bytes(), encoding="bytes")
    entry[b"labels"][0] = 12
    (root / "test_batch").write_bytes(pickle.dumps(entry))
    with pytest.raises(DataError, match="labels range 0..12 but there are 10 classes"):
        load_path(root)
