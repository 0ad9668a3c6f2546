"""CIFAR-10 on disk, in every format users have it: with the two modules named below, the only code
that knows file formats.

- ``cifar-10-batches-py/`` (the extracted python archive: ``data_batch_1..5``, ``test_batch``,
  ``batches.meta``)
- ``cifar-10-python.tar.gz`` (read in place, not extracted)
- an image folder ``train/<class>/*``, ``test/<class>/*`` (a directory, or a ``.zip`` of one)
- nothing (``root=null``): the archive Keras downloads and caches under ``~/.keras/datasets``.

Each format family has its module: the python batches (:mod:`cifarx.data.python_batches`), image
folders (:mod:`cifarx.data.image_folders`), both decoding to :class:`cifarx.data.raw.RawData`.
This module names a path's format and dispatches to them; every name of those is importable
from here.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cifarx.data.image_folders import (  # noqa: F401  (re-exported: cifarx.data.sources is what callers import)
    IMAGE_SUFFIXES,
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    decode_image,
    load_image_dir,
    load_zip,
)
from cifarx.data.python_batches import (  # noqa: F401  (re-exported)
    MAX_BATCH_BYTES,
    TRAIN_BATCHES,
    load_batches_dir,
    load_tarball,
)
from cifarx.data.raw import RawData, describe_skipped, printable  # noqa: F401  (re-exported)
from cifarx.errors import DataError, one_line

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"


def detect_format(path: Path) -> str:
    """Name the format of ``path``: batches | tarball | image_dir | zip."""
    if path.is_dir():
        if (path / "batches.meta").exists() or (path / "data_batch_1").exists():
            return "batches"
        if (path / "cifar-10-batches-py").is_dir():
            return "batches_parent"
        if (path / "train").is_dir() or (path / "test").is_dir() or any(
            (p / "train").is_dir() for p in path.iterdir() if p.is_dir()
        ):
            return "image_dir"
        raise DataError(f"data.root='{printable(str(path))}' has an unknown layout: expected a cifar-10-batches-py "
                        "directory (data_batch_1..5, test_batch, batches.meta) or train/<class>/, "
                        "test/<class>/ image folders")
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return "tarball"
    if name.endswith(".zip"):
        return "zip"
    raise DataError(f"data.root='{printable(str(path))}' is a file of unknown type: expected .tar.gz, .tgz or .zip")


def load_path(path: Path, other_sizes: str = "refuse") -> RawData:
    """Decode ``path``; ``other_sizes`` says what happens to image-folder images that are not
    32x32 (the pickled formats are 32x32 by construction)."""
    fmt = detect_format(path)
    if fmt == "batches":
        return load_batches_dir(path)
    if fmt == "batches_parent":
        return load_batches_dir(path / "cifar-10-batches-py")
    if fmt == "tarball":
        return load_tarball(path)
    if fmt == "zip":
        return load_zip(path, other_sizes)
    return load_image_dir(path, other_sizes)


def source_key(path: Path) -> str:
    """A cheap fingerprint of a source's identity (names, sizes, mtimes), for the cache key."""
    h = hashlib.sha256(os.fsencode(path.resolve()))  # names as their bytes: they need not be UTF-8
    entries = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in entries:
        st = p.stat()
        name = os.fsencode(p.relative_to(path) if p != path else p.name)
        h.update(name + f":{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def keras_download() -> Path:
    """CIFAR-10 from Keras' cache, downloading it there first if needed (needs the internet)."""
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    extracted = keras_home / "datasets" / "cifar-10-batches-py"
    if (extracted / "batches.meta").exists():
        return extracted
    archive = keras_home / "datasets" / "cifar-10-python.tar.gz"
    if archive.exists():
        return archive
    try:
        from keras.utils import get_file

        return Path(get_file("cifar-10-python.tar.gz", origin=CIFAR10_URL, file_hash=CIFAR10_SHA256))
    except Exception as exc:
        raise DataError(
            f"cannot download CIFAR-10 from {CIFAR10_URL} into {archive.parent} "
            f"({one_line(str(exc))[:200] or type(exc).__name__}); offline, pass data.root=PATH to a cifar-10-batches-py "
            "directory, cifar-10-python.tar.gz, or an image folder / .zip"
        ) from exc
