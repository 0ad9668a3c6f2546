"""Training batches whose order depends only on (seed, epoch), prefetched in a thread.

With the per-epoch reseeding of layer randomness (``cifarx.callbacks.EpochSeeds``), epoch N of a
run is the same whether the run went straight through or was interrupted and resumed, and the
uint8 batches are assembled in a background thread while the previous step computes.
"""

from __future__ import annotations

import math

import keras
import numpy as np


class EpochBatches(keras.utils.PyDataset):
    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, first_epoch: int = 0,
                 workers: int = 1):
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=4)
        self.x, self.y = x, y
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.epoch = int(first_epoch)
        self._shuffle()

    def _shuffle(self) -> None:
        self.order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.y))

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __getitem__(self, index: int):
        idx = np.sort(self.order[index * self.batch_size:(index + 1) * self.batch_size])
        return self.x[idx], self.y[idx]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._shuffle()
