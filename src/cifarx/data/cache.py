"""Decode once, load in milliseconds: a cache of uint8 arrays keyed by the data source.

Each entry is a directory of ``.npy`` files (memory-mapped on load) plus ``meta.json``. It is
built in a private temporary directory and renamed into place, so two jobs that build the same
entry at once (parallel sweeps) never see a half-written cache: the second rename loses and its
copy is discarded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from cifarx.data.sources import RawData

log = logging.getLogger("cifarx")

ARRAYS = ("x_train", "y_train", "x_test", "y_test")
CACHE_VERSION = 1


def content_hash(raw: RawData) -> str:
    """SHA-256 over all images, labels and class names: the dataset's identity in provenance."""
    h = hashlib.sha256()
    for name in ARRAYS:
        h.update(np.ascontiguousarray(getattr(raw, name)).data)
    h.update("\n".join(raw.class_names).encode())
    return h.hexdigest()


def load_cached(cache_root: Path, key: str) -> tuple[RawData, dict] | None:
    entry = cache_root / f"v{CACHE_VERSION}-{key}"
    meta_file = entry / "meta.json"
    if not meta_file.exists():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        arrays = {n: np.load(entry / f"{n}.npy", mmap_mode="r") for n in ARRAYS}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable cache entry %s (%s)", entry, exc)
        return None
    return RawData(**arrays, class_names=meta["class_names"]), meta


def store(cache_root: Path, key: str, raw: RawData, source: str) -> dict:
    """Write ``raw`` under ``key`` atomically; returns its metadata (with the content hash)."""
    meta = {"class_names": raw.class_names, "source": source, "sha256": content_hash(raw),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "version": CACHE_VERSION}
    entry = cache_root / f"v{CACHE_VERSION}-{key}"
    try:
        cache_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=cache_root))
    except OSError as exc:
        log.warning("cannot write the data cache in %s (%s); continuing without it", cache_root, exc)
        return meta
    try:
        for name in ARRAYS:
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(raw, name)))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        os.rename(tmp, entry)
    except OSError:
        # Another job won the race (the entry exists now), or the disk is full: ours is discarded.
        shutil.rmtree(tmp, ignore_errors=True)
    return meta
