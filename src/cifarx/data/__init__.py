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
    """Decoded source data (memory-mapped from the cache when possible) and its description (the
    data section of provenance: every name in it is printable, whatever bytes the file system has)."""
    start = time.perf_counter()
    path = Path(root).expanduser().resolve() if root else sources.keras_download()
    shown = sources.printable(str(path))
    if not path.exists():
        raise DataError(f"data.root='{sources.printable(str(root))}' does not exist")
    fmt = sources.detect_format(path)
    key = sources.source_key(path) + ("" if other_sizes == "refuse" else f"-{other_sizes}")
    cache_root = Path(cache_dir).expanduser()
    hit = cache.load_cached(cache_root, key)
    if hit is not None:
        raw, meta = hit
        cached = True
        if sum(raw.skipped.values()):  # the decode warned about them; so does every run that uses them
            log.warning("%s", sources.describe_skipped(shown, raw.skipped))
    else:
        log.info("decoding %s (%s) ...", shown, fmt)
        raw = sources.load_path(path, other_sizes)
        meta = cache.store(cache_root, key, raw, shown)
        log.info("decoded in %.1fs; later runs load it from the cache in %s", time.perf_counter() - start,
                 sources.printable(str(cache_root)))
        cached = False
    info = {"root": shown, "format": fmt, "other_sizes": other_sizes, "sha256": meta["sha256"], "cache_key": key,
            "from_cache": cached, "skipped": dict(raw.skipped), "load_seconds": round(time.perf_counter() - start, 3)}
    return raw, info


def _require_two_per_class(y: np.ndarray, class_names: list[str] | None, where: str, needs: str, fix: str) -> None:
    """scikit-learn's stratified split needs two images of every class present: name the class
    that has one, instead of its "least populated class" traceback."""
    counts = np.bincount(y)
    lonely = np.flatnonzero(counts == 1)
    if len(lonely):
        c = int(lonely[0])
        name = class_names[c] if class_names is not None and c < len(class_names) else f"label {c}"
        others = len(lonely) - 1
        more = (" (so does 1 other class)" if others == 1 else f" (so do {others} other classes)") if others else ""
        raise DataError(f"class '{name}' has only 1 image{where}{more}, but {needs} needs at least 2 of every "
                        f"class; add images to it, or {fix}")


def stratified_subset(x: np.ndarray, y: np.ndarray, n: int | None, seed: int, what: str,
                      class_names: list[str] | None = None):
    """``n`` of the rows, every class in its share (all of them when ``n`` is None or too many)."""
    if n is None or n >= len(y):
        return x, y
    classes = len(np.unique(y))
    if n < classes:
        raise DataError(f"{what}={n} is smaller than the number of classes ({classes})")
    if len(y) - n < classes:  # scikit-learn wants a row of every class left out: drop from the largest instead
        rng, counts, keep = np.random.default_rng(seed), np.bincount(y), np.ones(len(y), bool)
        for _ in range(len(y) - n):
            c = int(np.argmax(counts))
            keep[rng.choice(np.flatnonzero(keep & (y == c)))] = False
            counts[c] -= 1
        return x[keep], y[keep]
    _require_two_per_class(y, class_names, "", f"{what}={n} (a stratified subset)", f"unset {what}")
    idx, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
    idx.sort()
    return x[idx], y[idx]


def load_dataset(data_cfg, seed: int) -> Dataset:
    """The splits a run trains and evaluates on, reproducible from (config, seed)."""
    raw, info = load_raw(data_cfg.root, data_cfg.cache_dir, str(data_cfg.get("other_sizes") or "refuse"))
    names = list(raw.class_names)
    x_pool, y_pool = stratified_subset(raw.x_train, raw.y_train, data_cfg.max_train, seed, "data.max_train", names)
    x_test, y_test = stratified_subset(raw.x_test, raw.y_test, data_cfg.max_test, seed, "data.max_test", names)
    empty_x, empty_y = x_pool[:0], y_pool[:0]
    if data_cfg.val_fraction > 0:
        n_val = int(round(len(y_pool) * data_cfg.val_fraction))
        if n_val < len(raw.class_names) or len(y_pool) - n_val < len(raw.class_names):
            raise DataError(f"data.val_fraction={data_cfg.val_fraction} of {len(y_pool)} images leaves "
                            "fewer than one image per class on one side; use more data")
        subset = f" after data.max_train={data_cfg.max_train}" if data_cfg.max_train is not None else ""
        _require_two_per_class(y_pool, names, f" for training{subset}",
                               f"data.val_fraction={data_cfg.val_fraction} (a stratified validation split)",
                               "set data.val_fraction=0" + (" or raise data.max_train" if subset else ""))
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


def channel_stats(x: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 images, in 0..255 units, in bounded memory.

    From each channel's histogram of its 256 values: the sums are exact integers (as float64 sums
    of the pixels were), and counting is 3x faster than summing floats (0.5 s for CIFAR-10's
    training split on 2 cores)."""
    channels = x.shape[-1]
    counts = np.zeros((channels, 256), np.int64)
    offsets = np.arange(channels, dtype=np.uint16) * 256  # channel c's value v counts in bin 256*c + v
    for i in range(0, len(x), chunk):
        block = np.asarray(x[i:i + chunk]).reshape(-1, channels).astype(np.uint16) + offsets
        counts += np.bincount(block.ravel(), minlength=256 * channels).reshape(channels, 256)
    values = np.arange(256, dtype=np.float64)
    count = len(x) * int(np.prod(x.shape[1:-1]))
    mean = (counts @ values) / count
    std = np.sqrt(np.maximum((counts @ values**2) / count - mean**2, 1e-12))
    return mean, std
