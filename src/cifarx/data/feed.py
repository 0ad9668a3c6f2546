"""Training batches whose order depends only on (seed, epoch), at no per-batch Python cost.

Epoch N of a run visits the images in ``epoch_order(seed, N)``, whether the run went straight
through or was interrupted and resumed (with ``cifarx.training.callbacks.EpochSeeds`` fixing the layers'
randomness the same way). Images stay uint8 until they are inside the model.

Two feeds give the same batches:

- ``tf_data`` (TensorFlow backend): a ``tf.data`` pipeline that slices batches with ``tf.gather``
  from the uint8 arrays in C++; Python runs once per epoch, to draw the permutation. A
  ``PyDataset`` on TensorFlow goes through ``tf.data.Dataset.from_generator`` with an AUTOTUNE
  prefetch, i.e. a Python generator per batch on tf.data's thread pool: on a 2-core AVX2 machine
  that made training 2.3x slower than plain arrays and burned 15x the system time.
- ``python`` (JAX and PyTorch, where Keras' own array adapter also slices batches in Python): a
  ``PyDataset`` with no worker threads; each batch is one numpy fancy-index.
"""

from __future__ import annotations

import math

import keras
import numpy as np


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits ``n`` training images."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


class _Epoch:
    """The epoch a feed draws its order for; set by ``FeedEpoch`` before each epoch starts."""

    def __init__(self, seed: int, n: int, first_epoch: int):
        self.seed, self.n, self.epoch = int(seed), int(n), int(first_epoch)

    def order(self) -> np.ndarray:
        return epoch_order(self.seed, self.epoch, self.n)


class EpochBatches(keras.utils.PyDataset):
    """The ``python`` feed: batch ``i`` of the current epoch, as uint8 images and int labels."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, epoch: _Epoch):
        super().__init__(workers=1, use_multiprocessing=False)  # workers=1: no thread, no queue
        self.x, self.y, self.batch_size, self.state = x, y, int(batch_size), epoch
        self._drawn_for, self.order = None, None

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __getitem__(self, index: int):
        if self._drawn_for != self.state.epoch:
            self.order, self._drawn_for = self.state.order(), self.state.epoch
        idx = np.sort(self.order[index * self.batch_size:(index + 1) * self.batch_size])
        return self.x[idx], self.y[idx]


def _tf_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, epoch: _Epoch):
    """The ``tf_data`` feed: one iteration of the returned dataset is one epoch."""
    import tensorflow as tf

    n = len(y)
    images, labels = tf.constant(x), tf.constant(y)  # one uint8 copy, owned by TensorFlow

    def order(_):
        drawn = tf.numpy_function(epoch.order, [], tf.int64, stateful=True)
        return tf.ensure_shape(drawn, [n])

    steps = math.ceil(n / batch_size)

    def epoch_batches(idx):
        def batch(i):  # indices sorted as in the python feed: the same batches, in the same order
            chosen = tf.sort(idx[i * batch_size:(i + 1) * batch_size])
            return tf.gather(images, chosen), tf.gather(labels, chosen)

        return tf.data.Dataset.range(steps).map(batch)

    batches = tf.data.Dataset.range(1).map(order).flat_map(epoch_batches)  # order drawn when the epoch starts
    options = tf.data.Options()
    options.deterministic = True
    options.autotune.enabled = False  # nothing to tune: one slice and gather per batch (~0.3 ms)
    options.threading.private_threadpool_size = 1
    return batches.with_options(options).apply(tf.data.experimental.assert_cardinality(steps))


class FeedEpoch(keras.callbacks.Callback):
    """Tells the feed which epoch is starting (Keras creates each epoch's iterator after this)."""

    def __init__(self, epoch: _Epoch):
        super().__init__()
        self.state = epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.state.epoch = int(epoch)


def resolve_feed(kind: str) -> str:
    """``auto`` -> ``tf_data`` on the TensorFlow backend, ``python`` elsewhere (``kind`` is one of
    the ``trainer.feed`` choices, checked by the config schema)."""
    backend = keras.backend.backend()
    if kind == "auto":
        return "tf_data" if backend == "tensorflow" else "python"
    if kind == "tf_data" and backend != "tensorflow":
        from cifarx.errors import ConfigError

        raise ConfigError(f"trainer.feed=tf_data needs the TensorFlow backend, not {backend}; use trainer.feed=auto")
    return kind


def training_feed(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, first_epoch: int,
                  kind: str = "auto"):
    """(what to pass to ``fit``, the callback that keeps it on the right epoch, steps per epoch)."""
    epoch = _Epoch(seed, len(y), first_epoch)
    steps = math.ceil(len(y) / int(batch_size))
    if resolve_feed(kind) == "tf_data":
        return _tf_dataset(x, y, int(batch_size), epoch), FeedEpoch(epoch), steps
    return EpochBatches(x, y, batch_size, epoch), FeedEpoch(epoch), steps
