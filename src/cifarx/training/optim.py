"""Optimizer, learning-rate schedule and loss from config, in Keras' own classes where Keras has
them (a triangular schedule and a label-smoothed sparse loss are the two it lacks)."""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "cifarx"


@keras.saving.register_keras_serializable(package=PACKAGE)
class TriangularSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """One cycle: linear from ``start * peak`` to ``peak`` over the first ``warmup`` steps, then
    linear to ``end * peak`` at ``total`` steps (airbench's and Myrtle's shape)."""

    def __init__(self, peak: float, total: int, warmup: int, start: float = 0.2, end: float = 0.0):
        self.peak, self.total, self.warmup = float(peak), int(total), int(warmup)
        self.start, self.end = float(start), float(end)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup, total = float(self.warmup), float(max(self.total, self.warmup + 1))
        rising = self.start + (1.0 - self.start) * step / max(warmup, 1.0)
        falling = 1.0 + (self.end - 1.0) * ops.minimum(step - warmup, total - warmup) / (total - warmup)
        factor = ops.where(step < warmup, rising, falling)
        return self.peak * factor

    def get_config(self):
        return {"peak": self.peak, "total": self.total, "warmup": self.warmup, "start": self.start, "end": self.end}


@keras.saving.register_keras_serializable(package=PACKAGE)
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Ramp linearly from 0 to ``after`` (a rate or a schedule) over the first ``warmup`` steps."""

    def __init__(self, after, warmup: int):
        self.after, self.warmup = after, int(warmup)

    def __call__(self, step):
        target = self.after(step) if callable(self.after) else self.after
        ramp = ops.minimum(ops.cast(step, "float32") / float(max(self.warmup, 1)), 1.0)
        return ramp * target

    def get_config(self):
        after = self.after
        if isinstance(after, keras.optimizers.schedules.LearningRateSchedule):
            after = keras.optimizers.schedules.serialize(after)
        return {"after": after, "warmup": self.warmup}

    @classmethod
    def from_config(cls, config):
        after = config["after"]
        if isinstance(after, dict):
            after = keras.optimizers.schedules.deserialize(after)
        return cls(after, config["warmup"])


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
