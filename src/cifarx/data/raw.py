"""What every source decodes to: :class:`RawData` (``cifarx.data.sources`` re-exports it), and the
checks the format modules share: file sizes read from headers before any bytes are, and file names
made printable before they reach a message, a log line or JSON."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from cifarx.errors import DataError

IMAGE_SHAPE = (32, 32, 3)


@dataclass
class RawData:
    """Decoded images (uint8, NHWC) and integer labels, as the source holds them.

    ``skipped`` counts the files of an image folder that were not read, by reason (``hidden``,
    ``nested``, ``other``); it goes into provenance, so it is kept in the cache too.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    skipped: dict[str, int] = field(default_factory=dict)

    def check(self, source: str) -> RawData:
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


def printable(name: str) -> str:
    """``name`` safe to encode as UTF-8: a file name that is not valid UTF-8 reaches Python with
    surrogate escapes (``caf\\udce9.png``), which ``.encode()`` and UTF-8 log files refuse; its
    undecodable bytes are shown as ``\\xe9`` instead."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def check_size(name: str, size: int, limit: int, what: str) -> None:
    """Refuse a file whose size (from its directory entry, archive header or stat) exceeds
    ``limit`` before a byte of it is read: memory stays bounded whatever the source claims."""
    if size > limit:
        raise DataError(f"'{printable(name)}' is {human_bytes(size)} ({size} bytes), over the {human_bytes(limit)} "
                        f"limit for {what}; this is not CIFAR-10-sized data (remove or shrink the file)")


SKIP_REASONS = {"nested": "in a sub-folder of a class folder (only train/<class>/<file> is read)",
                "hidden": "hidden (dot-files, __MACOSX)",
                "other": "outside the train/<class>/ and test/<class>/ folders"}


def describe_skipped(where: str, skipped: dict[str, int], examples: dict[str, str] | None = None) -> str:
    """One line saying how many files of an image folder were not read, and why."""
    parts = []
    for reason, text in SKIP_REASONS.items():
        if skipped.get(reason):
            example = f" (e.g. '{examples[reason]}')" if examples and reason in examples else ""
            parts.append(f"{skipped[reason]} {text}{example}")
    total = sum(skipped.values())
    return f"{where}: skipped {total} file{'s' if total != 1 else ''} that are not class images: {'; '.join(parts)}"
