"""Image folders: ``train/<class>/*``, ``test/<class>/*``, as a directory or a ``.zip`` of one
(``cifarx.data.sources`` re-exports all of it)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from cifarx.data.raw import IMAGE_SHAPE, RawData
from cifarx.errors import DataError, one_line

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff"}


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
