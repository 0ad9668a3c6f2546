"""``trainer.time_budget``: train as many epochs as fit a wall-clock budget, on whatever machine.

A one-cycle schedule must know its length before the first step, so the length is measured, not
guessed: a throwaway copy of the model takes a few training steps and one evaluation batch, and
the epochs that fit what is left of the budget (after start-up, data loading, the measurement,
the final evaluation with its test-time augmentation, and a reserve for saving and plots) become
``trainer.epochs``. The choice is written into the run's ``config.yaml`` and ``metrics.json``, so
the run is repeated exactly with ``trainer.epochs=<chosen> trainer.time_budget=null``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass

log = logging.getLogger("cifarx")


@dataclass(frozen=True)
class BudgetPlan:
    budget_seconds: float
    elapsed_seconds: float  # since the job started, measurement included
    step_seconds: float  # one training step at trainer.batch_size
    compile_seconds: float  # the first call's extra cost (tracing, compiling), paid again by the real model
    predict_seconds_per_image: float
    epoch_seconds: float  # steps, plus the per-epoch validation pass
    eval_seconds: float  # the final evaluation, test-time augmentation included
    reserve_seconds: float
    epochs: int
    capped: bool  # the budget fits more than trainer.epochs (the cap was kept)
    short: bool  # the budget fits no full epoch (one is trained anyway)

    def as_dict(self) -> dict:
        return {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class BudgetInputs:
    """What the budget's arithmetic works from: the budget, what was measured, and the run's sizes."""

    budget: float  # trainer.time_budget, seconds
    elapsed: float  # since the job started, measurement included
    step: float  # one training step
    compile_: float  # the first call's extra cost
    predict_per_image: float
    steps_per_epoch: int
    val_count: int
    eval_images: int  # images the final evaluation predicts (test-time augmentation's views included)
    reserve_fraction: float  # trainer.time_budget_reserve
    max_epochs: int  # trainer.epochs caps the choice
    min_epochs: int = 1  # one past a warm-up (else all warm-up)


def plan_epochs(inputs: BudgetInputs) -> BudgetPlan:
    """The arithmetic of the budget, apart from any measuring (so it can be tested exactly)."""
    budget, elapsed, step, compile_ = inputs.budget, inputs.elapsed, inputs.step, inputs.compile_
    predict_per_image, steps_per_epoch, val_count = inputs.predict_per_image, inputs.steps_per_epoch, inputs.val_count
    eval_images, reserve_fraction = inputs.eval_images, inputs.reserve_fraction
    max_epochs, min_epochs = inputs.max_epochs, inputs.min_epochs
    epoch = steps_per_epoch * step + val_count * predict_per_image
    evaluation = eval_images * predict_per_image
    reserve = reserve_fraction * budget
    left = budget - elapsed - compile_ - evaluation - reserve
    fit = math.floor(left / epoch) if epoch > 0 else max_epochs
    epochs = int(min(max(fit, min_epochs), max_epochs))  # min_epochs: one past a warm-up (else all warm-up)
    return BudgetPlan(budget, elapsed, step, compile_, predict_per_image, epoch, evaluation, reserve, epochs,
                      capped=fit > max_epochs, short=fit < min_epochs)


def job_started() -> float:
    """When this job's clock started: for the first job of a command, when the command started
    (cli.main: a plain `cifarx train` counts its start-up); for later sweep jobs, and for callers
    that use cifarx as a library, now. (Never the package's import: a notebook may have imported it
    an hour ago.)"""
    from cifarx.process import COMMAND_STARTED

    return COMMAND_STARTED.pop() if COMMAND_STARTED else time.monotonic()


def _epoch_clock():
    """A Keras callback that records the wall time of each epoch in ``.seconds``."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.t0)

    return EpochClock()


def measure_and_plan(build_compiled, data, trainer_cfg, tta_views: int, started: float,
                     min_epochs: int = 1) -> BudgetPlan:
    """Time ``trainer.budget_probe_steps`` training steps (through ``fit`` and the real feed, as
    training will run them) and one evaluation batch of a throwaway model from
    ``build_compiled()``, then plan the epochs (``started``: ``time.monotonic()`` at the job's start).

    A first fit of one compiled call (``steps_per_execution`` steps) traces and compiles the step
    (its time beyond those steps is the compile estimate); the second fit reuses that step and
    gives the time per step. The probe's training is thrown away with it, so the first fit is no
    longer than tracing needs. Both fits take whole batches (a training set smaller than one batch:
    that one partial batch), so the timed fit meets no batch shape the first did not compile."""
    import keras

    from cifarx.data.feed import FeedPlan, steps_per_epoch, training_feed
    from cifarx.training.backend import eval_batch_size

    batch, eval_batch = int(trainer_cfg.batch_size), eval_batch_size(trainer_cfg)
    probe = build_compiled()
    clock = _epoch_clock()
    steps, available = {}, len(data.y_train)
    if available >= batch:
        available -= available % batch  # whole batches, as all but an epoch's last one are
    for name, wanted in (("compile", int(getattr(probe, "steps_per_execution", 1) or 1)),
                         ("timed", int(trainer_cfg.budget_probe_steps))):
        n = min(available, max(1, wanted) * batch)
        steps[name] = max(1, math.ceil(n / batch))
        feed, feed_epoch, _ = training_feed(data.x_train[:n], data.y_train[:n],
                                            FeedPlan(batch, 0, kind=str(trainer_cfg.feed)))
        probe.fit(feed, epochs=1, callbacks=[feed_epoch, clock], verbose=0, shuffle=False)
    step = clock.seconds[1] / steps["timed"]
    compile_ = max(0.0, clock.seconds[0] - step * steps["compile"])  # the first fit traces and compiles
    xe = data.x_test[:eval_batch]
    probe.predict_on_batch(xe)  # traces
    t0 = time.perf_counter()
    probe.predict_on_batch(xe)
    per_image = (time.perf_counter() - t0) / len(xe)
    del probe
    keras.backend.clear_session()
    n_test, n_val, n_train = len(data.y_test), len(data.y_val), len(data.y_train)
    eval_images = (n_test + n_val) * tta_views + (n_train if trainer_cfg.score_train else 0)
    plan = plan_epochs(BudgetInputs(
        budget=float(trainer_cfg.time_budget), elapsed=time.monotonic() - started,
        step=step, compile_=compile_, predict_per_image=per_image,
        steps_per_epoch=steps_per_epoch(n_train, batch, bool(trainer_cfg.get("drop_last", False))),
        val_count=n_val, eval_images=eval_images, reserve_fraction=float(trainer_cfg.time_budget_reserve),
        max_epochs=int(trainer_cfg.epochs), min_epochs=min_epochs))
    log.info("time budget %.0fs: %.0fs used so far, %.2fs per step, an epoch %.0fs, evaluation %.0fs -> %d epochs%s",
             plan.budget_seconds, plan.elapsed_seconds, plan.step_seconds, plan.epoch_seconds, plan.eval_seconds,
             plan.epochs, f" (trainer.epochs={trainer_cfg.epochs} caps it)" if plan.capped else "")
    if plan.short:
        log.warning("time budget %.0fs fits less than %d more epoch(s); training %d", plan.budget_seconds,
                    min_epochs, plan.epochs)
    return plan


def fit_to_budget(cfg, run, data, build_compiled, started: float, warmup_epochs: int) -> BudgetPlan:
    """Measure ``build_compiled()``'s model, choose ``trainer.epochs`` for ``trainer.time_budget``,
    and record the choice in the run's config.yaml (resume and evaluate see the length) and tracker.
    ``warmup_epochs``: the schedule's warm-up, which the budget trains past by at least one epoch."""
    import keras
    import numpy as np
    from omegaconf import OmegaConf, read_write

    from cifarx.evaluation import tta_views

    views = len(tta_views(np.zeros((1, 4, 4, 1), np.float32), str(cfg.tta)))
    min_epochs = warmup_epochs + 1  # at least one epoch past the warm-up
    plan = measure_and_plan(build_compiled, data, cfg.trainer, views, started, min_epochs)
    with read_write(cfg):
        cfg.trainer.epochs = plan.epochs
    run.write_text("config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    if run.tracker is not None:
        run.tracker.log_params({"trainer.epochs": plan.epochs})
    keras.utils.set_random_seed(int(cfg.seed))  # the real model starts as it would with trainer.epochs=N
    return plan
