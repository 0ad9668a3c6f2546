"""What every source decodes to: :class:`RawData` (``cifarx.data.sources`` re-exports it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cifarx.errors import DataError

IMAGE_SHAPE = (32, 32, 3)


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
