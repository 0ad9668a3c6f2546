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

Two options change what an epoch holds, the same way in both feeds:

- ``alternate_flip`` (``data.augment.alternate_flip``, airbench94's alternating flip): epoch 0
  mirrors a random half of the images (drawn from the seed alone), and every later epoch mirrors
  exactly the images the epoch before did not, so any two consecutive epochs show every image
  both ways. The flip is done here, on the uint8 batch; the model's random flip is then off.
- ``drop_last`` (``trainer.drop_last``): each epoch ends with its last full batch, as airbench's
  loader does. Every step then has one batch shape, so a JAX or XLA step is compiled once, not
  again for a partial last batch (each epoch's order differs, so no image is left out for good).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits ``n`` training images."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


FLIP_STREAM = 0x666C6970  # keeps the flip draw apart from the epoch orders' (seed, epoch) streams


def alternating_flips(seed: int, epoch: int, n: int) -> np.ndarray:
    """Which of ``n`` training images (by index) epoch ``epoch`` mirrors under alternating flip:
    a random half in even epochs (the same half each time, drawn from ``seed``), the other images
    in odd epochs."""
    first = np.random.default_rng([int(seed), FLIP_STREAM]).random(n) < 0.5
    return first if int(epoch) % 2 == 0 else ~first


def steps_per_epoch(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Training steps in one epoch of ``n`` images (a partial last batch counts unless ``drop_last``;
    an epoch smaller than one batch is one batch)."""
    full = int(n) // int(batch_size)
    return max(1, full) if drop_last else math.ceil(int(n) / int(batch_size))


class _Epoch:
    """The epoch a feed draws its order (and flips) for; set by ``FeedEpoch`` before each epoch starts."""

    def __init__(self, seed: int, n: int, first_epoch: int, alternate_flip: bool = False):
        self.seed, self.n, self.epoch = int(seed), int(n), int(first_epoch)
        self.alternate_flip = bool(alternate_flip)

    def order(self) -> np.ndarray:
        return epoch_order(self.seed, self.epoch, self.n)

    def flips(self) -> np.ndarray:
        return alternating_flips(self.seed, self.epoch, self.n)


class EpochBatches(keras.utils.PyDataset):
    """The ``python`` feed: batch ``i`` of the current epoch, as uint8 images and int labels."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, epoch: _Epoch, drop_last: bool = False):
        super().__init__(workers=1, use_multiprocessing=False)  # workers=1: no thread, no queue
        self.x, self.y, self.batch_size, self.state = x, y, int(batch_size), epoch
        self.steps = steps_per_epoch(len(y), batch_size, drop_last)
        self._drawn_for, self.order, self.flips = None, None, None

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int):
        if self._drawn_for != self.state.epoch:
            self.order, self._drawn_for = self.state.order(), self.state.epoch
            self.flips = self.state.flips() if self.state.alternate_flip else None
        idx = np.sort(self.order[index * self.batch_size:(index + 1) * self.batch_size])
        images = self.x[idx]
        if self.flips is not None:
            mirrored = self.flips[idx]
            images[mirrored] = images[mirrored, :, ::-1]
        return images, self.y[idx]


def _tf_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, epoch: _Epoch, drop_last: bool = False):
    """The ``tf_data`` feed: one iteration of the returned dataset is one epoch."""
    import tensorflow as tf

    n = len(y)
    images, labels = tf.constant(x), tf.constant(y)  # one uint8 copy, owned by TensorFlow

    def order(_):
        drawn = tf.numpy_function(epoch.order, [], tf.int64, stateful=True)
        flips = (tf.numpy_function(epoch.flips, [], tf.bool, stateful=True) if epoch.alternate_flip
                 else tf.zeros([n], tf.bool))
        return tf.ensure_shape(drawn, [n]), tf.ensure_shape(flips, [n])

    steps = steps_per_epoch(n, batch_size, drop_last)

    def epoch_batches(idx, flips):
        def batch(i):  # indices sorted as in the python feed: the same batches, in the same order
            chosen = tf.sort(idx[i * batch_size:(i + 1) * batch_size])
            chosen_images = tf.gather(images, chosen)
            if epoch.alternate_flip:
                mirrored = tf.gather(flips, chosen)[:, None, None, None]
                chosen_images = tf.where(mirrored, tf.reverse(chosen_images, axis=[2]), chosen_images)
            return chosen_images, tf.gather(labels, chosen)

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


@dataclass(frozen=True)
class FeedPlan:
    """How training batches are cut: their size, the (seed, epoch) order, the feed, and the options."""

    batch_size: int
    seed: int
    first_epoch: int = 0  # a resumed run's first epoch: its order is the uninterrupted run's
    kind: str = "auto"  # trainer.feed: auto | tf_data | python
    alternate_flip: bool = False  # each epoch flips the images the previous one did not (airbench)
    drop_last: bool = False  # a partial last batch is left out (one batch shape: one compile)


def training_feed(x: np.ndarray, y: np.ndarray, plan: FeedPlan):
    """(what to pass to ``fit``, the callback that keeps it on the right epoch, steps per epoch)."""
    epoch = _Epoch(plan.seed, len(y), plan.first_epoch, plan.alternate_flip)
    steps = steps_per_epoch(len(y), plan.batch_size, plan.drop_last)
    if resolve_feed(plan.kind) == "tf_data":
        return _tf_dataset(x, y, int(plan.batch_size), epoch, plan.drop_last), FeedEpoch(epoch), steps
    return EpochBatches(x, y, plan.batch_size, epoch, plan.drop_last), FeedEpoch(epoch), steps
