"""Image folders: ``train/<class>/*``, ``test/<class>/*``, as a directory or a ``.zip`` of one
(``cifarx.data.sources`` re-exports all of it).

Memory stays bounded whatever the files claim: a file's size is checked from its directory entry
(or zip header) before it is read, and an image's pixel count from its header before it is decoded.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from cifarx.console import progress_steps
from cifarx.data.raw import IMAGE_SHAPE, RawData, check_size, describe_skipped, printable
from cifarx.errors import DataError, one_line

log = logging.getLogger("cifarx")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff"}
SPLITS = ("train", "test")
# Bytes of one image file, checked before it is read: a CIFAR-10 image is ~3 KB and a 24-megapixel
# photo ~10 MB, while a 1.5 GiB PNG (it zips to 2 MB) would otherwise be read whole.
MAX_IMAGE_BYTES = 64 << 20
# Pixels (width x height) of one image, checked from its header before it is decoded (it matters for
# other_sizes=resize: refuse and pad accept nothing larger than 32x32): ~100 MB decoded as RGB.
MAX_IMAGE_PIXELS = 6000 * 6000
DECODE_BLOCK = 250  # images decoded between two updates of the progress bar (a few milliseconds)
# Full scale of a 16-bit channel: 65535 / 257 = 255 maps it onto 8 bits (PIL's convert() clips instead).
SIXTEEN_BIT_STEP = 257


def _fit(img, other_sizes: str):
    """``img`` (RGB) as 32x32: centred on black (``pad``; decode_image refuses larger ones before
    decoding) or scaled (``resize``)."""
    from PIL import Image

    height, width = IMAGE_SHAPE[:2]
    if other_sizes == "resize":
        return img.resize((width, height), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(img, ((width - img.size[0]) // 2, (height - img.size[1]) // 2))
    return canvas


def _to_rgb(img):
    """``img`` as 8-bit RGB. 16-bit grayscale (modes ``I;16*``, and ``I`` as PIL opens 16-bit PNGs)
    is scaled to 0..255 first: ``convert`` would clip it, and nearly every pixel would be white."""
    from PIL import Image

    if img.mode == "I" or img.mode.startswith("I;16"):
        wide = np.clip(np.asarray(img), 0, 0xFFFF).astype(np.int32)  # "I" is signed 32-bit: clip, then round
        grey = ((wide + SIXTEEN_BIT_STEP // 2) // SIXTEEN_BIT_STEP).astype(np.uint8)
        img = Image.fromarray(grey)
    return img.convert("RGB")


def decode_image(blob: bytes, name: str, other_sizes: str = "refuse") -> np.ndarray:
    """One image as uint8 32x32 RGB (grayscale and palette images are converted: the grey value
    goes into all three channels; an alpha channel is dropped; 16 bits are scaled to 8). Training
    and `cifarx predict` both decode with it, so a file means the same pixels to both."""
    from PIL import Image, UnidentifiedImageError

    name = printable(name)
    try:
        with Image.open(io.BytesIO(blob)) as img:  # reads the header only
            width, height = img.size
            if img.size != IMAGE_SHAPE[1::-1] and other_sizes == "refuse":  # before decoding: no bomb
                raise DataError(f"image '{name}' is {width}x{height}, not 32x32; set "
                                "data.other_sizes=pad (centre smaller images) or data.other_sizes=resize (scale them)")
            if other_sizes == "pad" and (width > IMAGE_SHAPE[1] or height > IMAGE_SHAPE[0]):
                raise DataError(f"image '{name}' is {width}x{height}, larger than 32x32: data.other_sizes=pad "
                                "only centres smaller images; use data.other_sizes=resize")
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(f"image '{name}' is {width}x{height} ({width * height} pixels), over the "
                                f"{MAX_IMAGE_PIXELS}-pixel limit for one image; shrink it before use")
            if other_sizes == "resize":
                img.draft("RGB", IMAGE_SHAPE[1::-1])  # JPEG: decode at a reduced scale when it can
            rgb = _to_rgb(img)
            arr = np.asarray(rgb if rgb.size == IMAGE_SHAPE[1::-1] else _fit(rgb, other_sizes), dtype=np.uint8)
    except Image.DecompressionBombError as exc:
        raise DataError(f"image '{name}' claims {one_line(str(exc)).split(' pixels')[0].split()[-1]} pixels "
                        "(a decompression bomb?); CIFAR-10 images are 32x32") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"'{name}' is not a readable image") from exc
    return arr




def read_image_file(path: Path, name: str) -> bytes:
    """The bytes of one image file, its size checked before a byte is read (``name``: how messages show it)."""
    with open(path, "rb") as f:
        check_size(name, os.fstat(f.fileno()).st_size, MAX_IMAGE_BYTES, "one image file")
        data = f.read(MAX_IMAGE_BYTES + 1)  # bounded even if the file grows after the check
    check_size(name, len(data), MAX_IMAGE_BYTES, "one image file")
    return data


def read_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The bytes of one image in a zip, its size checked from the archive's header before it is read."""
    # file_size is the header's claim; zipfile never returns more than it (the CRC checks the rest)
    check_size(info.filename, info.file_size, MAX_IMAGE_BYTES, "one image file")
    return zf.read(info)


def _classify(parts: list[str]) -> str:
    """Why a file of the listing is read (``image``) or skipped (``hidden``, ``nested``, ``other``)."""
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return "hidden"
    if len(parts) >= 3 and parts[-3] in SPLITS:
        return "image"
    return "nested" if any(p in SPLITS for p in parts[:-3]) else "other"


def _from_listing(files: Iterable[str], read: Callable[[str], bytes], where: str,
                  other_sizes: str = "refuse") -> RawData:
    """Build arrays from ``<prefix>train/<class>/<file>`` style paths (posix separators); files
    elsewhere are skipped, counted (``RawData.skipped``) and reported in one warning."""
    where = printable(where)
    splits: dict[str, dict[str, list[str]]] = {s: {} for s in SPLITS}
    skipped, examples = {"hidden": 0, "nested": 0, "other": 0}, {}
    for name in files:
        parts = name.split("/")
        kind = _classify(parts)
        if kind != "image":
            skipped[kind] += 1
            examples.setdefault(kind, printable(name))
            continue
        splits[parts[-3]].setdefault(printable(parts[-2]), []).append(name)
    if sum(skipped.values()):
        log.warning("%s", describe_skipped(where, skipped, examples))
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
            raise DataError(f"'{printable(bad[0])}' in {where} is not an image file "
                            f"(expected {', '.join(sorted(IMAGE_SUFFIXES))})")
        x = np.empty((len(names), *IMAGE_SHAPE), dtype=np.uint8)
        starts = range(0, len(names), DECODE_BLOCK)  # the bar counts images, a block at a time
        for start in progress_steps(starts, f"decoding {split} ({len(names):,} images)",
                                    sizes=[min(DECODE_BLOCK, len(names) - s) for s in starts]):
            for i in range(start, min(start + DECODE_BLOCK, len(names))):
                x[i] = decode_image(read(names[i]), names[i], other_sizes)
        arrays[split] = (x, np.asarray(labels, dtype=np.int64))
    return RawData(*arrays["train"], *arrays["test"], classes, skipped=skipped).check(where)


def load_image_dir(path: Path, other_sizes: str = "refuse") -> RawData:
    def read(name: str) -> bytes:
        return read_image_file(path / name, name)

    files = [p.relative_to(path).as_posix() for p in sorted(path.rglob("*")) if p.is_file()]
    return _from_listing(files, read, str(path), other_sizes)


def load_zip(path: Path, other_sizes: str = "refuse") -> RawData:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {i.filename: i for i in zf.infolist() if not i.is_dir()}

            def read(name: str) -> bytes:
                return read_zip_member(zf, infos[name])

            return _from_listing(list(infos), read, str(path), other_sizes)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, UnicodeDecodeError, NotImplementedError,
            RuntimeError) as exc:  # corrupt, truncated, unsupported compression (deflate64), encrypted
        raise DataError(f"cannot read zip '{printable(str(path))}': {one_line(str(exc))}") from exc
