"""Optimizer and loss from config, in Keras' own classes where Keras has them (a label-smoothed
sparse loss is one it lacks; the learning-rate curves are in cifarx.training.lr_schedules)."""

from __future__ import annotations

import keras
from keras import ops

from cifarx.training.lr_schedules import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class SparseSmoothedCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer labels with label smoothing (Keras' sparse loss has no smoothing)."""

    def __init__(self, label_smoothing: float = 0.0, name: str = "sparse_smoothed_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        onehot = ops.one_hot(labels, y_pred.shape[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(onehot, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def build_loss(label_smoothing: float):
    """Keras' sparse cross-entropy, or the smoothed one when ``label_smoothing`` > 0."""
    if label_smoothing:
        return SparseSmoothedCrossentropy(label_smoothing)
    return "sparse_categorical_crossentropy"


def build_optimizer(opt_cfg, schedule, steps_per_epoch: int, epochs: int, base_lr: float | None = None):
    """The optimizer ``opt_cfg`` names, its rate following ``schedule`` (a cifarx.training.schedules
    object) from the peak ``optimizer.learning_rate`` (or ``base_lr``)."""
    from cifarx.config.build import instantiate

    peak = float(base_lr if base_lr is not None else opt_cfg.learning_rate)
    return instantiate(opt_cfg, "optimizer", learning_rate=schedule.learning_rate(peak, steps_per_epoch, epochs))


def current_lr(optimizer) -> float:
    lr = optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(lr))
