"""The report's seed CNN, layer for layer (72,922 parameters with the default widths)."""

from __future__ import annotations

import keras
from keras import layers


def build_simple_cnn(x, cfg, num_classes: int):
    """Three conv blocks (valid, same, valid padding), BatchNorm after blocks 1-2, dropout, softmax.

    ``x`` is the preprocessed input tensor; returns the output tensor. Layer names follow the
    report's table (conv2d_1..6, dense_1) so any layer can be addressed by name.
    """
    f1, f2, f3 = (max(1, int(round(f * cfg.width))) for f in cfg.filters)
    reg = keras.regularizers.L2(cfg.l2) if cfg.l2 else None
    conv = dict(kernel_size=3, activation=cfg.activation, kernel_initializer=cfg.initializer,
                kernel_regularizer=reg)
    x = layers.Conv2D(f1, padding="valid", name="conv2d_1", **conv)(x)
    x = layers.Conv2D(f1, padding="valid", name="conv2d_2", **conv)(x)
    x = layers.MaxPooling2D(2, name="max_pooling2d_1")(x)
    x = layers.BatchNormalization(name="batch_normalization_1")(x)
    x = layers.Conv2D(f2, padding="same", name="conv2d_3", **conv)(x)
    x = layers.Conv2D(f2, padding="same", name="conv2d_4", **conv)(x)
    x = layers.MaxPooling2D(2, name="max_pooling2d_2")(x)
    x = layers.BatchNormalization(name="batch_normalization_2")(x)
    x = layers.Dropout(cfg.dropout[0], name="dropout_1")(x)
    x = layers.Conv2D(f3, padding="valid", name="conv2d_5", **conv)(x)
    x = layers.Conv2D(f3, padding="valid", name="conv2d_6", **conv)(x)
    x = layers.Dropout(cfg.dropout[1], name="dropout_2")(x)
    x = layers.MaxPooling2D(2, name="max_pooling2d_3")(x)
    x = layers.Flatten(name="flatten_1")(x)
    return layers.Dense(num_classes, activation="softmax", kernel_initializer=cfg.initializer,
                        kernel_regularizer=reg, dtype="float32", name="dense_1")(x)
