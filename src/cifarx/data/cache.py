"""Decode once, load in milliseconds: a cache of uint8 arrays keyed by the data source.

Each entry is a directory of ``.npy`` files (memory-mapped on load) plus ``meta.json``. It is
built in a private temporary directory and renamed into place, so two jobs that build the same
entry at once (parallel sweeps) never see a half-written cache: the second rename loses and its
copy is discarded.

Nothing in an entry is trusted: on load the arrays must match meta.json (shapes, dtypes, counts),
labels must lie in range, the count of files the source skipped (provenance reports it) must be
there, and the SHA-256 of the loaded content must equal the hash recorded when it was decoded from
the source. An entry that fails is removed and rebuilt from the source, so the hash in provenance
is always that of the arrays the run actually used.
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

from cifarx.console import working
from cifarx.data.sources import RawData
from cifarx.errors import DataError

log = logging.getLogger("cifarx")

ARRAYS = ("x_train", "y_train", "x_test", "y_test")
CACHE_VERSION = 2  # 2: meta.json records shapes and dtypes; entries are verified on load


def content_hash(raw: RawData) -> str:
    """SHA-256 over all images, labels and class names: the dataset's identity in provenance."""
    h = hashlib.sha256()
    for name in ARRAYS:
        h.update(np.ascontiguousarray(getattr(raw, name)).data)
    h.update("\n".join(raw.class_names).encode())
    return h.hexdigest()


def _verify(entry: Path) -> tuple[RawData, dict]:
    """The entry's arrays and metadata; ValueError (or OSError) saying what is wrong with them."""
    meta = json.loads((entry / "meta.json").read_text())
    if not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION:
        raise ValueError("meta.json is not a current cifarx cache record")
    arrays = {n: np.load(entry / f"{n}.npy", mmap_mode="r", allow_pickle=False) for n in ARRAYS}
    for name, arr in arrays.items():
        want = meta["arrays"][name]
        if list(arr.shape) != want["shape"] or str(arr.dtype) != want["dtype"]:
            raise ValueError(f"{name}.npy is {arr.dtype}{tuple(arr.shape)}, meta.json says "
                             f"{want['dtype']}{tuple(want['shape'])}")
    skipped = meta.get("skipped")  # absent from entries written before skipped files were counted: rebuilt
    if not isinstance(skipped, dict) or not all(isinstance(v, int) and v >= 0 for v in skipped.values()):
        raise ValueError("meta.json has no valid count of the source's skipped files (an older cifarx wrote it)")
    raw = RawData(**arrays, class_names=list(meta["class_names"]), skipped=skipped)
    try:
        raw.check(str(entry))
    except DataError as exc:
        raise ValueError(str(exc)) from None
    if content_hash(raw) != meta["sha256"]:
        raise ValueError("content differs from the SHA-256 recorded when it was decoded")
    return raw, meta


def _discard(entry: Path) -> None:
    """Move a bad entry out of the way (atomically: readers never see half of it), then delete it."""
    trash = entry.with_name(f".trash-{entry.name}-{os.getpid()}")
    try:
        os.rename(entry, trash)
    except OSError:
        return  # another job moved it already
    shutil.rmtree(trash, ignore_errors=True)


def load_cached(cache_root: Path, key: str) -> tuple[RawData, dict] | None:
    """A verified cache entry, or None (absent, or damaged: then it is removed to be rebuilt)."""
    entry = cache_root / f"v{CACHE_VERSION}-{key}"
    if not entry.exists():
        return None
    try:
        return _verify(entry)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("cache entry %s failed its check (%s); rebuilding it from the source", entry,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        _discard(entry)
        return None


def store(cache_root: Path, key: str, raw: RawData, source: str) -> dict:
    """Write ``raw`` under ``key`` atomically; returns its metadata (with the content hash)."""
    with working("hashing the decoded data"):
        digest = content_hash(raw)
    meta = {"class_names": raw.class_names, "source": source, "sha256": digest, "skipped": raw.skipped,
            "arrays": {n: {"shape": list(getattr(raw, n).shape), "dtype": str(getattr(raw, n).dtype)}
                       for n in ARRAYS},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "version": CACHE_VERSION}
    entry = cache_root / f"v{CACHE_VERSION}-{key}"
    try:
        cache_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=cache_root))
    except OSError as exc:
        log.warning("cannot write the data cache in %s (%s); continuing without it", cache_root, exc)
        return meta
    try:
        with working(f"writing the data cache in {cache_root}"):
            for name in ARRAYS:
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(raw, name)))
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
            os.rename(tmp, entry)
    except OSError:
        # Another job won the race (the entry exists now), or the disk is full: ours is discarded.
        shutil.rmtree(tmp, ignore_errors=True)
    return meta
