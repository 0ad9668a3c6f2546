"""From a data config to uint8 train/val/test arrays: source -> cache -> subset -> split.

Images stay uint8 in memory; normalisation and augmentation are layers of the model (see
``cifarx.models.preprocessing``), so they run on the compute graph and are saved with the model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from cifarx.data import cache, sources
from cifarx.errors import DataError

log = logging.getLogger("cifarx")


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    source: dict = field(default_factory=dict)  # where it came from, its hash, load seconds

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The non-empty splits, in order train, val, test."""
        out = {"train": (self.x_train, self.y_train), "val": (self.x_val, self.y_val),
               "test": (self.x_test, self.y_test)}
        return {k: v for k, v in out.items() if len(v[0])}


def load_raw(root: str | None, cache_dir: str, other_sizes: str = "refuse") -> tuple[sources.RawData, dict]:
    """Decoded source data (memory-mapped from the cache when possible) and its description."""
    start = time.perf_counter()
    path = Path(root).expanduser().resolve() if root else sources.keras_download()
    if not path.exists():
        raise DataError(f"data.root='{root}' does not exist")
    fmt = sources.detect_format(path)
    key = sources.source_key(path) + ("" if other_sizes == "refuse" else f"-{other_sizes}")
    cache_root = Path(cache_dir).expanduser()
    hit = cache.load_cached(cache_root, key)
    if hit is not None:
        raw, meta = hit
        cached = True
    else:
        log.info("decoding %s (%s) ...", path, fmt)
        raw = sources.load_path(path, other_sizes)
        meta = cache.store(cache_root, key, raw, str(path))
        log.info("decoded in %.1fs; later runs load it from the cache in %s", time.perf_counter() - start, cache_root)
        cached = False
    info = {"root": str(path), "format": fmt, "other_sizes": other_sizes, "sha256": meta["sha256"], "cache_key": key,
            "from_cache": cached, "load_seconds": round(time.perf_counter() - start, 3)}
    return raw, info


def stratified_subset(x: np.ndarray, y: np.ndarray, n: int | None, seed: int, what: str):
    if n is None or n >= len(y):
        return x, y
    classes = len(np.unique(y))
    if n < classes:
        raise DataError(f"{what}={n} is smaller than the number of classes ({classes})")
    idx, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
    idx.sort()
    return x[idx], y[idx]


def load_dataset(data_cfg, seed: int) -> Dataset:
    """The splits a run trains and evaluates on, reproducible from (config, seed)."""
    raw, info = load_raw(data_cfg.root, data_cfg.cache_dir, str(data_cfg.get("other_sizes") or "refuse"))
    x_pool, y_pool = stratified_subset(raw.x_train, raw.y_train, data_cfg.max_train, seed, "data.max_train")
    x_test, y_test = stratified_subset(raw.x_test, raw.y_test, data_cfg.max_test, seed, "data.max_test")
    empty_x, empty_y = x_pool[:0], y_pool[:0]
    if data_cfg.val_fraction > 0:
        n_val = int(round(len(y_pool) * data_cfg.val_fraction))
        if n_val < len(raw.class_names) or len(y_pool) - n_val < len(raw.class_names):
            raise DataError(f"data.val_fraction={data_cfg.val_fraction} of {len(y_pool)} images leaves "
                            "fewer than one image per class on one side; use more data")
        tr, va = train_test_split(np.arange(len(y_pool)), test_size=n_val, stratify=y_pool,
                                  random_state=seed)
        tr.sort()
        va.sort()
        x_train, y_train, x_val, y_val = x_pool[tr], y_pool[tr], x_pool[va], y_pool[va]
    else:
        x_train, y_train, x_val, y_val = np.asarray(x_pool), np.asarray(y_pool), empty_x, empty_y
    return Dataset(np.ascontiguousarray(x_train), y_train.astype(np.int64),
                   np.ascontiguousarray(x_val), y_val.astype(np.int64),
                   np.ascontiguousarray(x_test), y_test.astype(np.int64),
                   list(raw.class_names), info)


def channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 images, in 0..255 units, in bounded memory."""
    total = np.zeros(x.shape[-1])
    total_sq = np.zeros(x.shape[-1])
    for i in range(0, len(x), chunk):
        block = np.asarray(x[i:i + chunk], dtype=np.float64).reshape(-1, x.shape[-1])
        total += block.sum(axis=0)
        total_sq += np.square(block).sum(axis=0)
    count = len(x) * int(np.prod(x.shape[1:-1]))
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return mean, std
