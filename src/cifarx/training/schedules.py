"""Learning-rate schedules: what a ``conf/schedule/*.yaml`` file builds (``_target_``).

Each is a dataclass of its knobs, checked when Hydra instantiates the group, that turns the
optimizer's peak rate into a float or a per-step Keras LearningRateSchedule once the run knows its
steps per epoch and epochs. Adding a schedule is one such class and one YAML file naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from cifarx.errors import require


@dataclass
class Schedule:
    name: str = "schedule"
    fixed_length: ClassVar[bool] = False  # its curve spans trainer.epochs: a resumed run cannot lengthen it

    def warmup(self) -> int:
        """Epochs of linear warm-up at the start (0: none)."""
        return int(getattr(self, "warmup_epochs", 0))

    def check_run(self, cfg) -> None:
        """Checks that need the rest of the train config."""
        require(0 <= self.warmup() < cfg.trainer.epochs,
                f"schedule.warmup_epochs={self.warmup()} must be in [0, trainer.epochs={cfg.trainer.epochs})")

    def learning_rate(self, peak: float, steps_per_epoch: int, epochs: int):
        """A float, or a Keras schedule of optimizer steps (saved with the optimizer's state)."""
        raise NotImplementedError

    def callbacks(self) -> list:
        return []

    def _warm(self, after, steps_per_epoch: int):
        from cifarx.training.lr_schedules import LinearWarmup

        warmup = self.warmup() * steps_per_epoch
        return LinearWarmup(after, warmup) if warmup else after


@dataclass
class Constant(Schedule):
    name: str = "constant"
    warmup_epochs: int = 0  # linear warm-up from 0 over this many epochs

    def learning_rate(self, peak, steps_per_epoch, epochs):
        return self._warm(float(peak), steps_per_epoch)


@dataclass
class Step(Schedule):
    """The report's 'scheduler' function: the rate times ``factors[i]`` after ``boundaries[i-1]``."""

    name: str = "step"
    boundaries: list[int] = field(default_factory=list)  # epochs where the rate changes
    factors: list[float] = field(default_factory=lambda: [1.0])  # multipliers of the peak rate
    warmup_epochs: int = 0

    def __post_init__(self):
        require(len(self.factors) == len(self.boundaries) + 1,
                f"schedule.factors needs one more entry than schedule.boundaries "
                f"(got {len(self.factors)} factors for {len(self.boundaries)} boundaries)")
        require(list(self.boundaries) == sorted(set(self.boundaries)) and all(b > 0 for b in self.boundaries),
                f"schedule.boundaries={list(self.boundaries)} must be increasing positive epochs")

    def learning_rate(self, peak, steps_per_epoch, epochs):
        import keras

        self._say_unreached(int(epochs))
        if not self.boundaries:
            return self._warm(float(peak) * float(self.factors[0]), steps_per_epoch)
        step = keras.optimizers.schedules.PiecewiseConstantDecay(
            boundaries=[int(b) * steps_per_epoch for b in self.boundaries],
            values=[float(peak) * float(f) for f in self.factors])
        return self._warm(step, steps_per_epoch)


    def _say_unreached(self, epochs: int) -> None:
        """A short try-out of a long recipe is allowed, but its rate never changing is said (in the run's log)."""
        unreached = [int(b) for b in self.boundaries if b >= epochs]
        if not unreached:
            return
        import logging

        reached = len(self.boundaries) - len(unreached)
        logging.getLogger("cifarx").warning(
            "schedule.boundaries %s: %s past trainer.epochs=%d, so the rate stays %gx optimizer.learning_rate from "
            "epoch %d on (set schedule.boundaries=[...] or schedule=constant)", list(self.boundaries),
            "all lie" if not reached else f"{len(unreached)} lie", epochs, float(self.factors[reached]),
            int(self.boundaries[reached - 1]) + 1 if reached else 1)


@dataclass
class Plateau(Schedule):
    """Keras' ReduceLROnPlateau on val_loss (the report's "patience of 2 epochs")."""

    name: str = "plateau"
    factor: float = 0.5  # multiply the rate by this
    patience: int = 2  # epochs without val_loss improvement
    min_lr: float = 1e-6

    def __post_init__(self):
        require(0 < self.factor < 1, f"schedule.factor={self.factor} must be in (0, 1)")
        require(self.patience >= 0, f"schedule.patience={self.patience} must be >= 0")

    def check_run(self, cfg) -> None:
        require(cfg.data.val_fraction > 0, "schedule=plateau watches val_loss: set data.val_fraction > 0 "
                "(or use split=holdout)")

    def learning_rate(self, peak, steps_per_epoch, epochs):
        return float(peak)

    def callbacks(self) -> list:
        import keras

        return [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=float(self.factor),
                                                  patience=int(self.patience), min_lr=float(self.min_lr), verbose=0)]


@dataclass
class Cosine(Schedule):
    """Cosine decay per step over the run, after an optional linear warm-up."""

    name: str = "cosine"
    warmup_epochs: int = 0
    alpha: float = 0.0  # final rate as a fraction of the peak
    fixed_length: ClassVar[bool] = True

    def __post_init__(self):
        require(0 <= self.alpha <= 1, f"schedule.alpha={self.alpha} must be in [0, 1]")

    def learning_rate(self, peak, steps_per_epoch, epochs):
        import keras

        warmup = self.warmup() * steps_per_epoch
        total = max(1, epochs * steps_per_epoch - warmup)
        if warmup:
            return keras.optimizers.schedules.CosineDecay(initial_learning_rate=0.0, decay_steps=total,
                                                          alpha=float(self.alpha), warmup_target=float(peak),
                                                          warmup_steps=warmup)
        return keras.optimizers.schedules.CosineDecay(float(peak), decay_steps=total, alpha=float(self.alpha))


@dataclass
class OneCycle(Schedule):
    """One triangle per run: linear from ``start_factor`` x peak up to the peak over the first
    ``warmup_fraction`` of all steps, then linearly down to ``end_factor`` x peak (airbench)."""

    name: str = "onecycle"
    warmup_fraction: float = 0.2
    start_factor: float = 0.2
    end_factor: float = 0.0
    fixed_length: ClassVar[bool] = True

    def __post_init__(self):
        require(0 <= self.warmup_fraction < 1, f"schedule.warmup_fraction={self.warmup_fraction} must be in [0, 1)")
        require(0 <= self.start_factor <= 1, f"schedule.start_factor={self.start_factor} must be in [0, 1]")
        require(0 <= self.end_factor <= 1, f"schedule.end_factor={self.end_factor} must be in [0, 1]")

    def learning_rate(self, peak, steps_per_epoch, epochs):
        from cifarx.training.lr_schedules import TriangularSchedule

        total = max(1, epochs * steps_per_epoch)
        return TriangularSchedule(float(peak), total, int(round(float(self.warmup_fraction) * total)),
                                  start=float(self.start_factor), end=float(self.end_factor))
