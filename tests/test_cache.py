"""The data cache verifies what it loads and repairs itself; provenance hashes what was used."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import write_batches_dir


@pytest.fixture
def built(tmp_path):
    from cifarx.data import load_raw

    root = str(write_batches_dir(tmp_path / "d"))
    cache = tmp_path / "cache"
    raw, info = load_raw(root, str(cache))
    assert not info["from_cache"]
    entry = next(p for p in cache.iterdir() if not p.name.startswith("."))
    return root, cache, entry, np.array(raw.x_train), np.array(raw.y_train), info["sha256"]


def _damage_shape(entry):
    np.save(entry / "x_train.npy", np.zeros((3, 28, 28, 3), np.uint8))


def _damage_labels(entry):
    y = np.load(entry / "y_train.npy")
    np.save(entry / "y_train.npy", (y + 1) % 10)  # same shape, dtype and range: only the hash sees it


def _damage_range(entry):
    y = np.load(entry / "y_train.npy")
    y[0] = 99
    np.save(entry / "y_train.npy", y)


def _truncate(entry):
    data = (entry / "x_test.npy").read_bytes()
    (entry / "x_test.npy").write_bytes(data[: len(data) // 2])


def _damage_meta(entry):
    (entry / "meta.json").write_text("{ not json")


@pytest.mark.parametrize("damage", [_damage_shape, _damage_labels, _damage_range, _truncate, _damage_meta])
def test_a_damaged_cache_entry_is_rejected_and_rebuilt(built, damage, caplog):
    from cifarx.data import load_raw

    root, cache, entry, x_train, y_train, sha = built
    damage(entry)
    raw, info = load_raw(root, str(cache))
    assert not info["from_cache"] and "failed its check" in caplog.text
    assert np.array_equal(raw.x_train, x_train) and np.array_equal(raw.y_train, y_train)
    assert info["sha256"] == sha  # provenance: the hash of what is trained on
    raw, info = load_raw(root, str(cache))
    assert info["from_cache"] and np.array_equal(raw.y_train, y_train)  # repaired: a hit again
    assert sorted(p.name for p in cache.iterdir()) == [entry.name]  # no trash left
