"""Input layers shared by every model: cast + normalise, and batch-wide augmentation.

They live inside the model, so training, evaluation and feature extraction apply exactly the
same preprocessing, it runs on the compute graph on any Keras backend, and it is saved in the
``.keras`` file. Augmentation is active only when ``training=True``.
"""

from __future__ import annotations

import keras
from keras import layers, ops

PACKAGE = "cifarx"


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomFlipShift(layers.Layer):
    """Random horizontal flip and integer shift, for a whole batch at once; the pixels a shift
    brings in are ``fill_value``, or with ``reflect`` the image mirrored at its edge (airbench's
    random crop of a reflect-padded batch).

    The report's ImageDataGenerator(horizontal_flip=True, width/height_shift_range=0.125,
    fill_mode='constant', cval=0): a random crop of the zero-padded batch, done as row and
    column selections without materialising the padding.
    Keras' RandomTranslation does the same through a general affine transform and was measured
    far slower (100x the training step on JAX/PyTorch GPUs). Shifts here are whole pixels.
    """

    def __init__(self, flip: bool = True, shift: float = 0.125, fill_value: float = 0.0,
                 seed: int | None = None, reflect: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.flip = flip
        self.shift = shift
        self.fill_value = fill_value
        self.reflect = bool(reflect)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = False

    def call(self, inputs, training=None):
        if not training:
            return inputs
        x = inputs
        batch = ops.shape(x)[0]
        height, width = x.shape[1], x.shape[2]
        pad_h, pad_w = int(round(self.shift * height)), int(round(self.shift * width))
        if not (self.flip or pad_h or pad_w):
            return x
        flip = None
        if self.flip:
            flip = keras.random.uniform((batch, 1), seed=self.seed_generator) < 0.5
        dy = keras.random.randint((batch, 1), 0, 2 * pad_h + 1, seed=self.seed_generator, dtype="int32")
        dx = keras.random.randint((batch, 1), 0, 2 * pad_w + 1, seed=self.seed_generator, dtype="int32")
        # Output pixel (r, c) comes from source row r + dy - pad_h and column c + dx - pad_w, or,
        # flipped, column (width - 1) - (c + dx - pad_w); sources outside the image are fill (or,
        # with reflect, their mirror image inside).
        # Flip and shift are one row and one column selection per image, applied as two small
        # batched matmuls with 0/1 matrices: exact, and fast on every backend (a gather hits
        # slow int64 paths on TensorFlow CPU; padding first costs a copy and bigger matmuls).
        rows = dy - pad_h + ops.arange(height, dtype="int32")[None, :]
        cols = dx - pad_w + ops.arange(width, dtype="int32")[None, :]
        if self.reflect:  # a source past the edge is its mirror image inside (the edge not repeated)
            rows, cols = _reflected(rows, height), _reflected(cols, width)
        if flip is not None:
            cols = ops.where(flip, (width - 1) - cols, cols)
        pick_rows = self._selection(rows, height, x.dtype)  # (batch, out row, source row)
        pick_cols = self._selection(cols, width, x.dtype)  # (batch, out col, source col)
        x = ops.einsum("bhp,bpwc->bhwc", pick_rows, x)
        x = ops.einsum("bwq,bhqc->bhwc", pick_cols, x)
        if self.fill_value and not self.reflect:
            inside = ops.sum(pick_rows, axis=2)[:, :, None, None] * ops.sum(pick_cols, axis=2)[:, None, :, None]
            x = x + (1.0 - inside) * ops.cast(self.fill_value, x.dtype)
        return x

    @staticmethod
    def _selection(index, size: int, dtype):
        """0/1 matrices picking ``index`` (batch, n) out of ``size``; out-of-range picks nothing."""
        return ops.cast(ops.equal(index[:, :, None], ops.arange(size, dtype="int32")[None, None, :]), dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "flip": self.flip, "shift": self.shift,
                "fill_value": self.fill_value, "seed": self.seed, "reflect": self.reflect}


def _reflected(index, size: int):
    """Indices off ``[0, size)`` mirrored back in at the edge, as reflect padding reads them."""
    index = ops.abs(index)
    return ops.where(index > size - 1, 2 * (size - 1) - index, index)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ImageNetPreprocess(layers.Layer):
    """keras.applications' ``preprocess_input`` for VGG ('caffe' mode: RGB->BGR, minus the
    ImageNet channel means), as a layer so it is saved with the model."""

    def __init__(self, mode: str = "caffe", **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, inputs):
        from keras.applications import imagenet_utils

        x = ops.cast(inputs, self.compute_dtype)
        return imagenet_utils.preprocess_input(x, data_format="channels_last", mode=self.mode)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ScaledBias(layers.Layer):
    """Adds a per-channel bias stored as ``bias / scale``: with plain SGD the bias then learns
    ``scale**2`` times faster than the other weights (airbench's BatchNorm ``bias_scaler``, which
    Keras optimizers cannot express as a parameter group)."""

    def __init__(self, scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="bias")

    def call(self, inputs):
        return inputs + ops.cast(self.scale, inputs.dtype) * ops.cast(self.bias, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


def input_pipeline(inputs, *, normalize: str, stats=None, augment=None, seed=None, imagenet: bool = False):
    """Apply cast/normalise and (optional) augmentation to the uint8 input tensor. ``stats``: the
    training split's per-channel (mean, std), for ``normalize="zscore"``."""
    mean, std = stats if stats is not None else (None, None)
    if imagenet:
        x = ImageNetPreprocess(name="imagenet_preprocess")(inputs)
    elif normalize == "zscore":
        x = layers.Normalization(mean=list(map(float, mean)), variance=[float(s) ** 2 for s in std],
                                 name="zscore")(inputs)
    elif normalize == "scale":
        x = layers.Rescaling(1.0 / 255, name="scale")(inputs)
    else:
        x = layers.Rescaling(1.0, name="cast")(inputs)
    if augment is not None and augment.enabled:
        flip = bool(augment.flip) and not getattr(augment, "alternate_flip", False)  # else the feed flips
        x = RandomFlipShift(flip=flip, shift=augment.shift, fill_value=augment.fill_value,
                            reflect=str(augment.get("fill", "constant")) == "reflect", seed=seed, name="augment")(x)
    return x
