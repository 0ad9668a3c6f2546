"""A fast, strong CIFAR-10 network in the shape of airbench94 (Keller Jordan, 2024).

A frozen patch-whitening stem computed from the training images, then three blocks of
conv -> max-pool -> BatchNorm -> GELU -> conv -> BatchNorm -> GELU (widths 64/256/256 by
default), a global max-pool, a bias-free linear layer scaled by 1/9, softmax. With the training
tricks that every cifarx model can use (label smoothing, EMA of the weights, a triangular
learning-rate schedule, flip+translate augmentation, flip test-time augmentation), it reaches in
a few epochs what the report's CNN reached in 140.

Layers are named by block (``whiten``, ``block2_1_conv``, ``block3_2_bn``, ``features``,
``logits``, ``predictions``) so ``cifarx extract`` can cut it anywhere.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from cifarx.errors import ConfigError
from cifarx.models.preprocessing import PACKAGE


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


def whitening_kernel(images: np.ndarray, kernel_size: int, eps: float) -> np.ndarray:
    """A ``(k, k, channels, 2 * k * k * channels)`` conv kernel that whitens k x k patches.

    ``images`` are training images, already normalised as the model's input layers normalise
    them (float, NHWC). The filters are the eigenvectors of the patch covariance scaled by
    1/sqrt(eigenvalue + eps), each with its negation (so a following GELU keeps both signs).
    """
    x = np.asarray(images)
    n, h, w, c = x.shape
    k, d = int(kernel_size), int(kernel_size) ** 2 * x.shape[-1]
    if n < 2 or h < k or w < k:
        raise ConfigError(f"model.whiten needs at least 2 training images of at least {k}x{k} pixels")
    total, outer, count = np.zeros(d), np.zeros((d, d)), 0
    for start in range(0, n, 256):  # the patch covariance in bounded memory (all patches: ~0.5 GB)
        block = np.asarray(x[start:start + 256], dtype=np.float64)
        patches = np.stack([block[:, i:h - k + 1 + i, j:w - k + 1 + j, :] for i in range(k) for j in range(k)],
                           axis=3).reshape(-1, d)  # each row: one k x k x c patch, ordered (i, j, channel)
        total, outer, count = total + patches.sum(axis=0), outer + patches.T @ patches, count + len(patches)
    mean = total / count
    cov = (outer - count * np.outer(mean, mean)) / (count - 1)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    filters = eigenvectors / np.sqrt(np.maximum(eigenvalues, 0.0) + eps)  # columns are filters
    kernel = filters.reshape(k, k, c, k * k * c)
    return np.concatenate([kernel, -kernel], axis=-1).astype(np.float32)


def _conv_bn_act(x, filters: int, cfg, name: str, pool: bool):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    if pool:
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    x = layers.BatchNormalization(momentum=float(cfg.bn_momentum), epsilon=float(cfg.bn_epsilon),
                                  center=False, scale=False, name=f"{name}_bn")(x)
    x = ScaledBias(float(cfg.bias_lr_scale) ** 0.5, name=f"{name}_bias")(x)
    return layers.Activation(cfg.activation, name=f"{name}_act")(x)


def build_airbench(x, cfg, num_classes: int, train_sample: np.ndarray | None = None):
    """``x``: the preprocessed input tensor; ``train_sample``: preprocessed training images for
    the whitening stem (required when ``cfg.whiten``). Returns the softmax output tensor."""
    widths = [max(1, int(round(w * cfg.width))) for w in cfg.widths]
    if cfg.whiten:
        if train_sample is None:
            raise ConfigError("model.whiten=true needs training images to compute the stem from")
        k = int(cfg.whiten_kernel)
        kernel = whitening_kernel(train_sample, k, float(cfg.whiten_eps))
        stem = layers.Conv2D(kernel.shape[-1], k, padding="valid", use_bias=False, trainable=False, name="whiten")
        x = stem(x)
        stem.set_weights([kernel])
        x = layers.Activation(cfg.activation, name="whiten_act")(x)
    for b, width in enumerate(widths, start=1):
        for i in range(1, int(cfg.convs_per_block) + 1):
            x = _conv_bn_act(x, width, cfg, f"block{b}_{i}", pool=i == 1)
    x = layers.GlobalMaxPooling2D(name="features")(x)
    x = layers.Dense(num_classes, use_bias=False, name="logits")(x)
    x = layers.Rescaling(float(cfg.logit_scale), name="logit_scale")(x)
    return layers.Activation("softmax", dtype="float32", name="predictions")(x)


build_airbench.needs_train_sample = True
