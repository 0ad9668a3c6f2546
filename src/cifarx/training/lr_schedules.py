"""The two learning-rate curves Keras lacks, as Keras schedules saved inside a model (registered
under the package name ``cifarx``; models saved before they moved here load the same). The
config-side schedules that build them are in cifarx.training.schedules."""

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
