"""A fast, strong CIFAR-10 network in the shape of airbench94 (Keller Jordan, 2024).

A frozen patch-whitening stem computed from the training images, then three blocks of
conv -> max-pool -> BatchNorm -> GELU -> conv -> BatchNorm -> GELU (widths 64/256/256 by
default; each conv can start as a partial identity, airbench94's Dirac init), a global max-pool,
a bias-free linear layer scaled by 1/9, softmax. With the training tricks that every cifarx model can use (label smoothing, EMA of the weights, a triangular
learning-rate schedule, flip+translate augmentation, flip test-time augmentation), it reaches in
a few epochs what the report's CNN reached in 140.

Layers are named by block (``whiten``, ``block2_1_conv``, ``block3_2_bn``, ``features``,
``logits``, ``predictions``) so ``cifarx extract`` can cut it anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cifarx.errors import ConfigError
from cifarx.models.architecture import Architecture, require


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


def identity_kernel(kernel: np.ndarray) -> np.ndarray:
    """``kernel`` (kh, kw, in, out) with its first ``min(in, out)`` filters made identities (a 1 at
    the centre tap of their own channel, 0 elsewhere; torch's ``dirac_``), the rest as drawn.

    airbench94 starts every conv this way: at initialisation each block passes on what it was
    given, plus the randomly drawn filters' features, which speeds up the first epochs.
    """
    out = np.array(kernel, copy=True)
    kh, kw, channels_in, channels_out = out.shape
    n = min(channels_in, channels_out)
    out[..., :n] = 0.0
    out[kh // 2, kw // 2, np.arange(n), np.arange(n)] = 1.0
    return out


@dataclass
class Airbench(Architecture):
    name: str = "airbench"
    widths: list[int] = field(default_factory=lambda: [64, 256, 256])  # per block (airbench94)
    width: float = 1.0  # multiplies every entry of widths (0.5 is the CPU size)
    convs_per_block: int = 2  # the first of each block is followed by a 2x2 max-pool
    whiten: bool = True  # frozen patch-whitening stem computed from training images
    whiten_kernel: int = 2  # patch size of the stem (2 x 2 x 3 -> 24 filters)
    whiten_eps: float = 5.0e-4  # added to the patch covariance's eigenvalues
    whiten_images: int = 5000  # training images the stem's statistics come from
    bn_momentum: float = 0.4  # Keras convention: weight of the old running statistics
    bn_epsilon: float = 1.0e-12
    bias_lr_scale: float = 64.0  # BatchNorm biases learn this many times faster (airbench's bias_scaler)
    activation: str = "gelu"
    logit_scale: float = 0.1111111111111111  # airbench's 1/9 on the logits
    identity_init: bool = False  # airbench94's Dirac init: each conv's first in-channels filters pass their input through

    def __post_init__(self):
        require(len(self.widths) > 0 and all(w > 0 for w in self.widths) and self.width > 0,
                f"model.widths={list(self.widths)} and model.width={self.width} must be positive")
        require(self.convs_per_block >= 1, f"model.convs_per_block={self.convs_per_block} must be >= 1")
        require(self.whiten_kernel >= 1 and self.whiten_images >= 2,
                f"model.whiten_kernel={self.whiten_kernel} must be >= 1 and model.whiten_images={self.whiten_images} >= 2")
        require(0 <= self.bn_momentum < 1, f"model.bn_momentum={self.bn_momentum} must be in [0, 1)")
        require(self.bias_lr_scale > 0, f"model.bias_lr_scale={self.bias_lr_scale} must be > 0")
        require(self.whiten_eps >= 0, f"model.whiten_eps={self.whiten_eps} must be >= 0")
        require(self.bn_epsilon > 0, f"model.bn_epsilon={self.bn_epsilon} must be > 0")
        require(self.logit_scale > 0, f"model.logit_scale={self.logit_scale} must be > 0")

    def train_sample_size(self) -> int:
        return int(self.whiten_images) if self.whiten else 0

    def build(self, x, num_classes: int, train_sample: np.ndarray | None = None):
        """``train_sample``: preprocessed training images for the whitening stem (required when
        ``whiten``). Returns the softmax output tensor."""
        from keras import layers

        widths = [max(1, int(round(w * self.width))) for w in self.widths]
        if self.whiten:
            if train_sample is None:
                raise ConfigError("model.whiten=true needs training images to compute the stem from")
            k = int(self.whiten_kernel)
            kernel = whitening_kernel(train_sample, k, float(self.whiten_eps))
            stem = layers.Conv2D(kernel.shape[-1], k, padding="valid", use_bias=False, trainable=False, name="whiten")
            x = stem(x)
            stem.set_weights([kernel])
            x = layers.Activation(self.activation, name="whiten_act")(x)
        for b, width in enumerate(widths, start=1):
            for i in range(1, int(self.convs_per_block) + 1):
                x = self._conv_bn_act(x, width, f"block{b}_{i}", pool=i == 1)
        x = layers.GlobalMaxPooling2D(name="features")(x)
        x = layers.Dense(num_classes, use_bias=False, name="logits")(x)
        x = layers.Rescaling(float(self.logit_scale), name="logit_scale")(x)
        return layers.Activation("softmax", dtype="float32", name="predictions")(x)

    def _conv_bn_act(self, x, filters: int, name: str, pool: bool):
        import keras
        from keras import layers

        from cifarx.models.preprocessing import ScaledBias

        conv = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")
        x = conv(x)
        if self.identity_init:
            conv.kernel.assign(identity_kernel(keras.ops.convert_to_numpy(conv.kernel)))
        if pool:
            x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
        x = layers.BatchNormalization(momentum=float(self.bn_momentum), epsilon=float(self.bn_epsilon),
                                      center=False, scale=False, name=f"{name}_bn")(x)
        x = ScaledBias(float(self.bias_lr_scale) ** 0.5, name=f"{name}_bias")(x)
        return layers.Activation(self.activation, name=f"{name}_act")(x)
