"""Training callbacks Keras does not ship: atomic checkpoints and TTY-aware progress."""

from __future__ import annotations

import logging
import math
import time

import keras

from cifarx.console import epoch_line, is_interactive, track_live
from cifarx.run.rundir import RunDir
from cifarx.training.optim import current_lr

log = logging.getLogger("cifarx")


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save ``best.keras`` when ``monitor`` improves and ``last.keras`` every ``every`` epochs (and
    at the last one, or when training stops early).

    Like ModelCheckpoint, but each file is written under a temporary name and renamed, so a
    process killed mid-save never leaves a truncated model. It must come after CSVLogger in the
    callback list: epoch N's history row is written first, then ``best.keras``, then
    ``last.keras``, which records inside itself how many epochs it holds: the commit point. A kill
    at any instant leaves history.csv with at least the epochs last.keras holds, and resume drops
    the rows past them (see ``cifarx.run.rundir.reconcile_history``), so it retrains exactly the
    epochs that were lost. Saving inside ``on_epoch_end`` also keeps the last epoch's raw weights
    in last.keras: Keras writes an optimizer's EMA into the model only after the last epoch.
    With ``every`` > 1 (``trainer.checkpoint_every``; epochs of a second on a GPU make a 50 ms save
    worth skipping) a killed run resumes from the last saved epoch and repeats the later ones,
    with the same numbers.
    """

    def __init__(self, run: RunDir, monitor: str = "val_accuracy", best_name: str = "best.keras",
                 last_name: str = "last.keras", initial_best: float | None = None, every: int = 1):
        super().__init__()
        self.every = max(1, int(every))
        self.run, self.monitor = run, monitor
        self.best_name, self.last_name = best_name, last_name
        self.best = -math.inf if initial_best is None else initial_best
        self.best_epoch: int | None = None
        self._pending: tuple[int, bool] | None = None  # (epochs done, improved) not yet saved

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not math.isfinite(logs.get("loss", 0.0)):
            self._pending = None
            return  # a diverged model is never saved
        value = logs.get(self.monitor)
        improved = value is not None and value > self.best
        if improved:
            self.best, self.best_epoch = float(value), epoch + 1
        self._pending = (epoch + 1, improved)
        self.commit()

    def commit(self) -> None:
        """Write the finished epoch's checkpoints: best first, then last (the commit point)."""
        if self._pending is None:
            return
        epochs, improved = self._pending
        self._pending = None
        if improved:
            self.run.save_model(self.best_name, self.model, epochs=epochs)
        final = epochs >= int(self.params.get("epochs") or 0) or self.model.stop_training
        if final or epochs % self.every == 0:
            self.run.save_model(self.last_name, self.model, epochs=epochs, stopped=bool(self.model.stop_training))


class HistoryCSV(keras.callbacks.CSVLogger):
    """Keras' CSVLogger with the ``epoch`` column 1-based, as people count: the row of the epoch
    the console calls "epoch 3/10" says 3, as ``best_epoch``, the curves and MLflow's steps do.
    Runs recorded before (0-based) are read right by ``cifarx.run.history.read_history`` and
    renumbered when resumed (``reconcile_history``)."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that, in a resumed run, starts from the run's history (best value and
    epochs waited) instead of from scratch, so it stops where the uninterrupted run stops."""

    def __init__(self, past: list[float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.past = list(past or [])

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.past:
            best = max(range(len(self.past)), key=lambda i: (self.past[i], -i))  # first epoch with the max
            self.best, self.best_epoch = self.past[best], best
            self.wait = len(self.past) - 1 - best


class EpochSeeds(keras.callbacks.Callback):
    """Reset every random layer's seed state (dropout, augmentation) from (seed, epoch).

    Keras layers draw from SeedGenerator states that advance with each step; fixing them at the
    start of each epoch makes an epoch's randomness independent of what ran before it, so a
    resumed run repeats the epochs of an uninterrupted one.
    """

    def __init__(self, seed: int):
        super().__init__()
        self.seed = int(seed)

    def on_epoch_begin(self, epoch, logs=None):
        # A SeedGenerator's state is one of the model's variables, named "seed_generator_state".
        states = [v for v in self.model.variables if v.name == "seed_generator_state"]
        for i, variable in enumerate(states):
            state = [(self.seed * 7919 + i * 104729) % 2**31, (epoch * 1_000_003) % 2**31]
            variable.assign(keras.ops.convert_to_tensor(state, dtype=variable.dtype))


class EpochInfo(keras.callbacks.Callback):
    """Adds the learning rate and training stage to each epoch's logs, so CSVLogger records them."""

    def __init__(self, stage: int):
        super().__init__()
        self.stage = stage

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = current_lr(self.model.optimizer)
            logs["stage"] = self.stage


class StopOnNonFinite(keras.callbacks.Callback):
    """Stop at the end of an epoch whose loss is NaN or infinite (the run is then marked failed).

    Keras' TerminateOnNaN checks every batch, and any per-batch hook makes Keras wait for each
    step before queueing the next; a diverged run costs at most one epoch more this way.
    """

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True


class EpochLog(keras.callbacks.Callback):
    """One plain line per epoch (logs, CI, SLURM); no per-batch hook, so steps stay asynchronous."""

    def __init__(self, epochs: int, steps: int, stage: str = ""):
        super().__init__()
        self.epochs, self.steps, self.stage = epochs, steps, stage
        self.epoch_seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = time.perf_counter() - self._t0
        self.epoch_seconds.append(seconds)
        # the log file gets every name whole; a terminal the longest form that fits its width
        log.info(epoch_line(f"{self.stage}epoch {epoch + 1}/{self.epochs}", logs, current_lr(self.model.optimizer),
                            seconds))


class LiveProgress(EpochLog):
    """On a terminal: a rich progress bar per epoch (counting real steps; it advances in chunks
    of ``steps_per_execution`` and says so), removed when the epoch ends and replaced by the same
    one line as ``EpochLog``. Bar and log lines share one console, so they never interleave."""

    async_safe = True  # only updates the bar: Keras may call it from its callback thread

    def __init__(self, epochs: int, steps: int, stage: str = "", chunk: int = 1):
        super().__init__(epochs, steps, stage)
        self.chunk = max(1, int(chunk))

    def on_train_begin(self, logs=None):
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

        from cifarx.console import live_bar

        self._progress = live_bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=True)
        track_live(self._progress)  # a Ctrl-C skips on_train_end: cifarx.run.lifecycle removes the bar then
        self._progress.start()
        self._task = None

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        every = f" (steps by {self.chunk})" if self.chunk > 1 and self.steps > self.chunk else ""
        self._task = self._progress.add_task(f"{self.stage}epoch {epoch + 1}/{self.epochs}{every}",
                                             total=self.steps, info="")

    def on_train_batch_end(self, batch, logs=None):
        if self._task is not None:
            logs = logs or {}
            info = f"loss {float(logs.get('loss', math.nan)):.4f} acc {float(logs.get('accuracy', math.nan)):.4f}"
            self._progress.update(self._task, completed=min(batch + 1, self.steps), info=info)

    def on_epoch_end(self, epoch, logs=None):
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        super().on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        self._progress.stop()


def progress_callback(epochs: int, steps: int, stage: str = "", chunk: int = 1) -> EpochLog:
    """A live bar on a terminal, plain epoch lines elsewhere."""
    return LiveProgress(epochs, steps, stage, chunk) if is_interactive() else EpochLog(epochs, steps, stage)
