"""Where a train run's wall time went, next to what the time budget expected.

``metrics.json`` gets ``phases``: measured seconds of start-up (from the command's start to the
first training step: imports, data, the budget's probe, building the model), training (the first
step to the last, compiling included), saving, scoring (the final evaluation with its test-time
augmentation, reports and figures), the total, and, under a budget, what was left unused; with a
budget also ``estimate``, the plan's own figures for the same phases. ``compile`` (see
``cifarx.training.compile_cache.CompileLog``) says what JAX compiled in each phase.
"""

from __future__ import annotations

import time


def _clock_callback(compiles=None):
    """A Keras callback noting when training's first and last steps ran, and telling ``compiles``
    (a ``CompileLog``) which phase it is in: the first epoch, then the later ones."""
    import keras

    class PhaseClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.began: float | None = None
            self.ended: float | None = None

        def on_train_begin(self, logs=None):
            if self.began is None:  # a second stage (fine-tuning) continues the same phase
                self.began = time.monotonic()
            if compiles is not None:
                compiles.set_phase("first epoch")

        def on_epoch_end(self, epoch, logs=None):
            if compiles is not None:
                compiles.set_phase("later epochs")

        def on_train_end(self, logs=None):
            self.ended = time.monotonic()

    return PhaseClock()


class RunPhases:
    """The clock of one train run: ``callback`` goes into ``fit``; ``scoring()`` is called as the
    final evaluation starts, ``record(plan)`` at the end."""

    def __init__(self, started: float, compiles=None):
        self.started, self.compiles = started, compiles
        self.callback = _clock_callback(compiles)
        self.scoring_began: float | None = None

    def scoring(self) -> None:
        self.scoring_began = time.monotonic()
        if self.compiles is not None:
            self.compiles.set_phase("scoring")

    def record(self, plan=None, epochs: int | None = None) -> dict:
        now = time.monotonic()
        began = self.callback.began or self.scoring_began or now
        ended = self.callback.ended or began
        scoring = self.scoring_began or now
        measured = {"startup": began - self.started, "train": ended - began, "saving": scoring - ended,
                    "scoring": now - scoring, "total": now - self.started}
        out: dict = {k: round(v, 3) for k, v in measured.items()}
        if plan is not None:
            trained = plan.epochs if epochs is None else epochs
            out["unused"] = round(plan.budget_seconds - measured["total"], 3)
            out["estimate"] = {k: round(v, 3) for k, v in {
                "startup": plan.elapsed_seconds, "compile": plan.compile_seconds, "epoch": plan.epoch_seconds,
                "train": plan.compile_seconds + trained * plan.epoch_seconds, "scoring": plan.eval_seconds,
                "reserve": plan.reserve_seconds,
                "unused": plan.budget_seconds - plan.elapsed_seconds - plan.compile_seconds
                - trained * plan.epoch_seconds - plan.eval_seconds}.items()}
        return out


def describe(phases: dict) -> str:
    """One line: 'start-up 5.1 s, train 7.2 s, saving 0.1 s, scoring 3.0 s, total 15.4 s[, unused 40 s]'
    with the budget's estimates in brackets where there are any."""
    estimate = phases.get("estimate") or {}
    parts = []
    for key, label in (("startup", "start-up"), ("train", "train"), ("saving", "saving"), ("scoring", "scoring"),
                       ("total", "total"), ("unused", "unused")):
        if key not in phases:
            continue
        est = f" (est. {estimate[key]:.1f})" if key in estimate else ""
        parts.append(f"{label} {phases[key]:.1f} s{est}")
    return ", ".join(parts)
