"""Optimizer, learning-rate schedule and loss from config, in Keras' own classes where Keras has
them (a triangular schedule and a label-smoothed sparse loss are the two it lacks)."""

from __future__ import annotations

import keras
from keras import ops

from cifarx.config import OptimizerName, ScheduleName

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


def learning_rate(opt_cfg, sched_cfg, steps_per_epoch: int, epochs: int, base_lr: float | None = None):
    """A float (constant, plateau) or a per-step LearningRateSchedule (step, cosine).

    Schedules count optimizer steps, so their position is part of the optimizer's saved state.
    """
    lr = float(base_lr if base_lr is not None else opt_cfg.learning_rate)
    name = ScheduleName(sched_cfg.name)
    warmup = int(sched_cfg.get("warmup_epochs") or 0) * steps_per_epoch
    if name == ScheduleName.step and sched_cfg.boundaries:
        step = keras.optimizers.schedules.PiecewiseConstantDecay(
            boundaries=[int(b) * steps_per_epoch for b in sched_cfg.boundaries],
            values=[lr * float(f) for f in sched_cfg.factors],
        )
        return LinearWarmup(step, warmup) if warmup else step
    if name == ScheduleName.cosine:
        total = max(1, epochs * steps_per_epoch - warmup)
        if warmup:
            return keras.optimizers.schedules.CosineDecay(
                initial_learning_rate=0.0, decay_steps=total, alpha=float(sched_cfg.alpha),
                warmup_target=lr, warmup_steps=warmup)
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=total, alpha=float(sched_cfg.alpha))
    if name == ScheduleName.onecycle:
        total = max(1, epochs * steps_per_epoch)
        return TriangularSchedule(lr, total, int(round(float(sched_cfg.warmup_fraction) * total)),
                                  start=float(sched_cfg.start_factor), end=float(sched_cfg.end_factor))
    if name == ScheduleName.constant and warmup:
        return LinearWarmup(lr, warmup)
    return lr


def build_optimizer(opt_cfg, sched_cfg, steps_per_epoch: int, epochs: int,
                    base_lr: float | None = None) -> keras.optimizers.Optimizer:
    lr = learning_rate(opt_cfg, sched_cfg, steps_per_epoch, epochs, base_lr)
    common = {"learning_rate": lr}
    if opt_cfg.weight_decay is not None:
        common["weight_decay"] = float(opt_cfg.weight_decay)
    if opt_cfg.clipnorm is not None:
        common["clipnorm"] = float(opt_cfg.clipnorm)
    if opt_cfg.ema is not None:  # Keras keeps the average and writes it into the model when fit ends
        common.update(use_ema=True, ema_momentum=float(opt_cfg.ema))
    name = OptimizerName(opt_cfg.name)
    if name == OptimizerName.sgd:
        return keras.optimizers.SGD(momentum=float(opt_cfg.momentum), nesterov=bool(opt_cfg.nesterov), **common)
    if name == OptimizerName.rmsprop:
        return keras.optimizers.RMSprop(momentum=float(opt_cfg.momentum), **common)
    if name == OptimizerName.adamw:
        return keras.optimizers.AdamW(**common)
    return keras.optimizers.Adam(**common)


def schedule_callbacks(sched_cfg) -> list[keras.callbacks.Callback]:
    if ScheduleName(sched_cfg.name) == ScheduleName.plateau:
        return [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=float(sched_cfg.factor),
                                                  patience=int(sched_cfg.patience),
                                                  min_lr=float(sched_cfg.min_lr), verbose=0)]
    return []


def current_lr(optimizer) -> float:
    lr = optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(lr))
