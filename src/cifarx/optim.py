"""Optimizer and learning-rate schedule from config, in Keras' own classes."""

from __future__ import annotations

import keras

from cifarx.config import OptimizerName, ScheduleName


def learning_rate(opt_cfg, sched_cfg, steps_per_epoch: int, epochs: int, base_lr: float | None = None):
    """A float (constant, plateau) or a per-step LearningRateSchedule (step, cosine).

    Schedules count optimizer steps, so their position is part of the optimizer's saved state.
    """
    lr = float(base_lr if base_lr is not None else opt_cfg.learning_rate)
    name = ScheduleName(sched_cfg.name)
    if name == ScheduleName.step and sched_cfg.boundaries:
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            boundaries=[int(b) * steps_per_epoch for b in sched_cfg.boundaries],
            values=[lr * float(f) for f in sched_cfg.factors],
        )
    if name == ScheduleName.cosine:
        warmup = int(sched_cfg.warmup_epochs) * steps_per_epoch
        total = max(1, epochs * steps_per_epoch - warmup)
        if warmup:
            return keras.optimizers.schedules.CosineDecay(
                initial_learning_rate=0.0, decay_steps=total, alpha=float(sched_cfg.alpha),
                warmup_target=lr, warmup_steps=warmup)
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=total, alpha=float(sched_cfg.alpha))
    return lr


def build_optimizer(opt_cfg, sched_cfg, steps_per_epoch: int, epochs: int,
                    base_lr: float | None = None) -> keras.optimizers.Optimizer:
    lr = learning_rate(opt_cfg, sched_cfg, steps_per_epoch, epochs, base_lr)
    common = {"learning_rate": lr}
    if opt_cfg.weight_decay is not None:
        common["weight_decay"] = float(opt_cfg.weight_decay)
    if opt_cfg.clipnorm is not None:
        common["clipnorm"] = float(opt_cfg.clipnorm)
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
