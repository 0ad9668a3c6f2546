"""CIFAR-10 on disk, in every format users have it: the only module that knows file formats.

- ``cifar-10-batches-py/`` (the extracted python archive: ``data_batch_1..5``, ``test_batch``,
  ``batches.meta``)
- ``cifar-10-python.tar.gz`` (read in place, not extracted)
- an image folder ``train/<class>/*``, ``test/<class>/*`` (a directory, or a ``.zip`` of one)
- nothing (``root=null``): the archive Keras downloads and caches under ``~/.keras/datasets``.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from cifarx.errors import DataError, one_line

IMAGE_SHAPE = (32, 32, 3)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff"}
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"


@dataclass
class RawData:
    """Decoded images (uint8, NHWC) and integer labels, as the source holds them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]

    def check(self, source: str) -> "RawData":
        n = len(self.class_names)
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE or x.dtype != np.uint8:
                raise DataError(f"{source}: {split} images are {x.dtype}{tuple(x.shape)}, "
                                f"expected uint8 (N, 32, 32, 3)")
            if len(x) != len(y) or len(x) == 0:
                raise DataError(f"{source}: {split} has {len(x)} images and {len(y)} labels")
            if y.min() < 0 or y.max() >= n:
                raise DataError(f"{source}: {split} labels range {y.min()}..{y.max()} "
                                f"but there are {n} classes")
        return self


# -- python batches (directory or tar.gz) --------------------------------------------------------

def _unpickle(blob: bytes, name: str) -> dict:
    try:
        return pickle.loads(blob, encoding="bytes")
    except Exception as exc:
        raise DataError(f"corrupt CIFAR-10 batch file '{name}': {type(exc).__name__}") from exc


def _decode_batch(entry: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        data = np.asarray(entry[b"data"], dtype=np.uint8)
        labels = np.asarray(entry.get(b"labels", entry.get(b"fine_labels")), dtype=np.int64)
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    except Exception as exc:
        raise DataError(f"corrupt CIFAR-10 batch file '{name}': {exc}") from exc
    return np.ascontiguousarray(images), labels


def _from_batches(read: Callable[[str], bytes], where: str) -> RawData:
    xs, ys = [], []
    for name in TRAIN_BATCHES:
        x, y = _decode_batch(_unpickle(read(name), name), name)
        xs.append(x)
        ys.append(y)
    x_test, y_test = _decode_batch(_unpickle(read("test_batch"), "test_batch"), "test_batch")
    meta = _unpickle(read("batches.meta"), "batches.meta")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(b"label_names", [])]
    if not names:
        raise DataError(f"{where}: batches.meta has no label_names")
    return RawData(np.concatenate(xs), np.concatenate(ys), x_test, y_test, names).check(where)


def load_batches_dir(path: Path) -> RawData:
    def read(name: str) -> bytes:
        f = path / name
        if not f.exists():
            raise DataError(f"{path} is missing '{name}' (a cifar-10-batches-py directory needs "
                            f"{', '.join(TRAIN_BATCHES)}, test_batch and batches.meta)")
        return f.read_bytes()

    return _from_batches(read, str(path))


def load_tarball(path: Path) -> RawData:
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}

            def read(name: str) -> bytes:
                if name not in members:
                    raise DataError(f"{path} has no '{name}' (is it cifar-10-python.tar.gz?)")
                return tar.extractfile(members[name]).read()

            return _from_batches(read, str(path))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"cannot read archive '{path}': {exc}") from exc


# -- image folders (directory or zip) ------------------------------------------------------------

def _fit(img, other_sizes: str):
    """``img`` (RGB) as 32x32: centred on black (``pad``; _decode_image refuses larger ones before
    decoding) or scaled (``resize``)."""
    from PIL import Image

    height, width = IMAGE_SHAPE[:2]
    if other_sizes == "resize":
        return img.resize((width, height), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(img, ((width - img.size[0]) // 2, (height - img.size[1]) // 2))
    return canvas


def _decode_image(blob: bytes, name: str, other_sizes: str = "refuse") -> np.ndarray:
    """One image as uint8 32x32 RGB (grayscale and palette images are converted: the grey value
    goes into all three channels; an alpha channel is dropped)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(blob)) as img:  # reads the header only
            if img.size != IMAGE_SHAPE[1::-1] and other_sizes == "refuse":  # before decoding: no bomb
                raise DataError(f"image '{name}' is {img.size[0]}x{img.size[1]}, not 32x32; set "
                                "data.other_sizes=pad (centre smaller images) or data.other_sizes=resize (scale them)")
            if other_sizes == "pad" and (img.size[0] > IMAGE_SHAPE[1] or img.size[1] > IMAGE_SHAPE[0]):
                raise DataError(f"image '{name}' is {img.size[0]}x{img.size[1]}, larger than 32x32: data.other_sizes=pad "
                                "only centres smaller images; use data.other_sizes=resize")
            if other_sizes == "resize":
                img.draft("RGB", IMAGE_SHAPE[1::-1])  # JPEG: decode at a reduced scale when it can
            rgb = img.convert("RGB")
            arr = np.asarray(rgb if rgb.size == IMAGE_SHAPE[1::-1] else _fit(rgb, other_sizes), dtype=np.uint8)
    except Image.DecompressionBombError as exc:
        raise DataError(f"image '{name}' claims {one_line(str(exc)).split(' pixels')[0].split()[-1]} pixels "
                        "(a decompression bomb?); CIFAR-10 images are 32x32") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"'{name}' is not a readable image") from exc
    return arr


def _from_listing(files: Iterable[str], read: Callable[[str], bytes], where: str,
                  other_sizes: str = "refuse") -> RawData:
    """Build arrays from ``<prefix>train/<class>/<file>`` style paths (posix separators)."""
    splits: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    for name in files:
        parts = name.split("/")
        if len(parts) < 3 or any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        split, cls = parts[-3], parts[-2]
        if split in splits:
            splits[split].setdefault(cls, []).append(name)
    if not splits["train"] or not splits["test"]:
        raise DataError(f"{where} has no train/<class>/ and test/<class>/ image folders")
    classes = sorted(splits["train"])
    if sorted(splits["test"]) != classes:
        only_train = sorted(set(classes) - set(splits["test"]))
        only_test = sorted(set(splits["test"]) - set(classes))
        raise DataError(f"{where}: train and test class folders differ "
                        f"(only in train: {only_train or '-'}; only in test: {only_test or '-'})")
    arrays = {}
    for split, by_class in splits.items():
        names, labels = [], []
        for label, cls in enumerate(classes):
            members = sorted(by_class[cls])
            names += members
            labels += [label] * len(members)
        bad = [n for n in names if Path(n).suffix.lower() not in IMAGE_SUFFIXES]
        if bad:
            raise DataError(f"'{bad[0]}' in {where} is not an image file "
                            f"(expected {', '.join(sorted(IMAGE_SUFFIXES))})")
        x = np.empty((len(names), *IMAGE_SHAPE), dtype=np.uint8)
        for i, name in enumerate(names):
            x[i] = _decode_image(read(name), name, other_sizes)
        arrays[split] = (x, np.asarray(labels, dtype=np.int64))
    return RawData(*arrays["train"], *arrays["test"], classes).check(where)


def load_image_dir(path: Path, other_sizes: str = "refuse") -> RawData:
    files = [p.relative_to(path).as_posix() for p in sorted(path.rglob("*")) if p.is_file()]
    return _from_listing(files, lambda name: (path / name).read_bytes(), str(path), other_sizes)


def load_zip(path: Path, other_sizes: str = "refuse") -> RawData:
    try:
        with zipfile.ZipFile(path) as zf:
            files = [i.filename for i in zf.infolist() if not i.is_dir()]
            return _from_listing(files, zf.read, str(path), other_sizes)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"cannot read zip '{path}': {exc}") from exc


# -- dispatch --------------------------------------------------------------------------------------

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
        raise DataError(f"data.root='{path}' has an unknown layout: expected a cifar-10-batches-py "
                        "directory (data_batch_1..5, test_batch, batches.meta) or train/<class>/, "
                        "test/<class>/ image folders")
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return "tarball"
    if name.endswith(".zip"):
        return "zip"
    raise DataError(f"data.root='{path}' is a file of unknown type: expected .tar.gz, .tgz or .zip")


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
    h = hashlib.sha256(str(path.resolve()).encode())
    entries = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in entries:
        st = p.stat()
        h.update(f"{p.relative_to(path) if p != path else p.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
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
