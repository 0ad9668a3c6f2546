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
    extra = {"total_steps": steps_per_epoch * epochs} if "total_steps" in opt_cfg else {}
    return instantiate(opt_cfg, "optimizer", learning_rate=schedule.learning_rate(peak, steps_per_epoch, epochs),
                       **extra)


def current_lr(optimizer) -> float:
    lr = optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(lr))


def lookahead_problem(every, decay) -> str | None:
    """What is wrong with a lookahead's settings (pre-flight and LookaheadSGD both ask), or None."""
    if isinstance(every, int) and every >= 1 and isinstance(decay, (int, float)) and 0 <= decay <= 1:
        return None
    return f"optimizer.lookahead_every={every} must be an integer >= 1 and optimizer.lookahead_decay={decay} in [0, 1]"


@keras.saving.register_keras_serializable(package=PACKAGE)
class LookaheadSGD(keras.optimizers.SGD):
    """SGD with airbench94's lookahead: every ``lookahead_every`` steps an average of the weights
    moves toward them, ``average = d * average + (1 - d) * weights``, and the weights are reset to
    it. The decay ``d`` grows with the run, ``lookahead_decay * (step / total_steps) ** 3``: nearly
    no averaging in the first epochs, the most at the end. When training ends the weights are the
    average (Keras' ``finalize_variable_values``), so evaluate the last weights, not the best.

    Built on Keras' own weight average (``use_ema``): the average is an optimizer variable, saved
    in every checkpoint, so a resumed run continues it exactly (a run cannot be lengthened: the
    decay spans it). ``total_steps`` is the run's length in optimizer steps; cifarx passes it
    (``build_optimizer``). Two differences from airbench94: the average holds the trainable weights
    only (BatchNorm's moving statistics follow the weights as trained), and it starts from the
    weights after the first step, not before it.
    """

    def __init__(self, lookahead_every: int = 5, lookahead_decay: float = 0.95**5, total_steps: int | None = None,
                 **kwargs):
        for key in ("use_ema", "ema_momentum", "ema_overwrite_frequency"):
            kwargs.pop(key, None)  # from get_config: they are the lookahead's own
        problem = lookahead_problem(lookahead_every, lookahead_decay)
        if problem:
            raise ValueError(problem)
        super().__init__(use_ema=True, ema_momentum=float(lookahead_decay),
                         ema_overwrite_frequency=int(lookahead_every), **kwargs)
        self.lookahead_every, self.lookahead_decay = int(lookahead_every), float(lookahead_decay)
        self.total_steps = max(1, int(total_steps or 1))

    def _update_model_variables_moving_average(self, trainable_variables):
        step = self.iterations + 1
        progress = ops.minimum(ops.cast(step, "float32") / float(self.total_steps), 1.0)
        due = ops.equal(ops.mod(step, self.lookahead_every), 0)
        decay = ops.where(due, self.lookahead_decay * progress**3, 1.0)  # 1: the average stays
        decay = ops.where(ops.equal(self.iterations, 0), 0.0, decay)  # the first step starts it
        for var, average in zip(trainable_variables, self._model_variables_moving_average):
            if average is not None:
                d = ops.cast(decay, var.dtype)
                average.assign(d * average + (1 - d) * var)

    def get_config(self):
        return {**super().get_config(), "lookahead_every": self.lookahead_every,
                "lookahead_decay": self.lookahead_decay, "total_steps": self.total_steps}
