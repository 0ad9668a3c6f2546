"""trainer.time_budget: the arithmetic of the plan, and a planned run that repeats exactly."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from cifarx.training.budget import BudgetInputs, plan_epochs
from conftest import compose, write_batches_dir

COMPILED_STEPS = True  # the probe times the compiled steps a real run takes (conftest: other modules run steps eagerly)

PLAN = dict(budget=100.0, elapsed=10.0, step=0.5, compile_=2.0, predict_per_image=0.001, steps_per_epoch=10,
            val_count=100, eval_images=1000, reserve_fraction=0.1, max_epochs=50)


def test_the_plan_fits_what_is_left_after_start_up_evaluation_and_the_reserve():
    plan = plan_epochs(BudgetInputs(**PLAN))
    assert plan.epoch_seconds == pytest.approx(10 * 0.5 + 100 * 0.001)  # steps plus the validation pass
    assert plan.eval_seconds == pytest.approx(1.0) and plan.reserve_seconds == pytest.approx(10.0)
    assert plan.epochs == 15  # floor((100 - 10 - 2 - 1 - 10) / 5.1)
    assert not plan.capped and not plan.short


def test_the_plan_never_exceeds_trainer_epochs_and_always_trains_one():
    capped = plan_epochs(BudgetInputs(**{**PLAN, "max_epochs": 4}))
    assert capped.epochs == 4 and capped.capped
    short = plan_epochs(BudgetInputs(**{**PLAN, "elapsed": 99.0}))
    assert short.epochs == 1 and short.short
    warm = plan_epochs(BudgetInputs(**{**PLAN, "elapsed": 99.0, "min_epochs": 3}))  # one epoch past a 2-epoch warm-up
    assert warm.epochs == 3 and warm.short


@pytest.mark.parametrize("images, compile_steps, timed_steps", [
    (200, 3, 7),  # plenty: one compiled call, then budget_probe_steps
    (26, 3, 6),  # fewer than budget_probe_steps batches: whole ones only (24 images), no partial shape
    (3, 1, 1),  # less than one batch: that batch, in both fits
])
def test_the_probe_traces_with_one_compiled_call_then_times_its_steps_on_that_trace(
        monkeypatch, images, compile_steps, timed_steps):
    """The probe's steps are thrown away: its first fit is one compiled call (steps_per_execution
    steps), enough to trace; the second fit, budget_probe_steps long, reuses the trace and is timed.
    Step = the second fit's time per step; compile = what the first took beyond its steps."""
    import time
    import types

    import keras
    import numpy as np
    from omegaconf import OmegaConf

    from cifarx.training import budget

    traced, fits = [], []

    class Probe(keras.Sequential):
        def train_step(self, data):
            traced.append("traced")  # compiled steps run this Python only while tracing
            return super().train_step(data)

        def fit(self, feed, **kwargs):
            fits.append([int(x.shape[0]) for x, _ in feed])  # the batches this fit trains on
            return super().fit(feed, **kwargs)

    def build_compiled():
        model = Probe([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
        model.compile("sgd", "sparse_categorical_crossentropy", steps_per_execution=3)
        return model

    class FixedClock(keras.callbacks.Callback):  # the first fit takes 5 s, the second 7 s
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append([5.0, 7.0][len(self.seconds)])

    monkeypatch.setattr(budget, "_epoch_clock", lambda: FixedClock())
    rng = np.random.default_rng(0)
    data = types.SimpleNamespace(x_train=rng.random((images, 8, 8, 3), np.float32),
                                 y_train=rng.integers(0, 10, images), x_test=rng.random((20, 8, 8, 3), np.float32),
                                 y_test=rng.integers(0, 10, 20), y_val=np.zeros(0, int))
    trainer = OmegaConf.create({"batch_size": 4, "eval_batch_size": None, "budget_probe_steps": 7, "feed": "tf_data",
                                "score_train": False, "time_budget": 1000.0, "time_budget_reserve": 0.1, "epochs": 5})
    plan = budget.measure_and_plan(build_compiled, data, trainer, tta_views=1, started=time.monotonic())
    batch = min(images, 4)
    assert fits == [[batch] * compile_steps, [batch] * timed_steps]  # one batch shape throughout
    assert traced == ["traced"]  # traced once, in the first fit: the timed fit reused it
    assert plan.step_seconds == pytest.approx(7.0 / timed_steps)
    assert plan.compile_seconds == pytest.approx(max(0.0, 5.0 - compile_steps * 7.0 / timed_steps))
    assert plan.epochs == 5  # 1,000 s leave room for all of trainer.epochs


@pytest.mark.slow
def test_a_budgeted_run_records_its_choice_and_repeats_exactly_without_the_budget(tmp_path, caplog):
    from cifarx.commands.train import run_train
    from cifarx.run.lifecycle import run_command

    root = write_batches_dir(tmp_path / "data")
    common = [f"data.root={root}", f"data.cache_dir={tmp_path / 'cache'}", "model.filters=[4,8,8]",
              "trainer.batch_size=32", "data=augment", "schedule=cosine"]
    planned = tmp_path / "planned"
    with caplog.at_level("WARNING", logger="cifarx"):  # this process started long before: no time is left
        run_command("train", run_train, compose("train", [*common, "trainer.epochs=3", "trainer.time_budget=0.5",
                                                          "trainer.budget_probe_steps=2"]), run_dir=planned)
    assert any("fits less than 1 more epoch" in r.getMessage() for r in caplog.records)
    record = json.loads((planned / "metrics.json").read_text())
    assert record["epochs"] == 1 and record["time_budget"]["epochs"] == 1 and record["time_budget"]["short"]
    saved = yaml.safe_load((planned / "config.yaml").read_text())
    assert saved["trainer"]["epochs"] == 1 and saved["trainer"]["time_budget"] == 0.5
    phases, plan = record["phases"], record["time_budget"]  # where the time went, next to the plan
    assert sum(phases[k] for k in ("startup", "train", "saving", "scoring")) == pytest.approx(phases["total"], abs=0.01)
    assert all(phases[k] >= 0 for k in ("startup", "train", "saving", "scoring"))
    assert phases["unused"] == pytest.approx(0.5 - phases["total"], abs=0.01) and phases["unused"] < 0
    estimate = phases["estimate"]
    for key, planned_key in (("startup", "elapsed_seconds"), ("compile", "compile_seconds"),
                             ("epoch", "epoch_seconds"), ("scoring", "eval_seconds"), ("reserve", "reserve_seconds")):
        assert estimate[key] == pytest.approx(plan[planned_key], rel=1e-3, abs=1e-3), key
    assert estimate["train"] == pytest.approx(plan["compile_seconds"] + plan["epoch_seconds"], rel=1e-3, abs=1e-3)

    plain = tmp_path / "plain"
    run_command("train", run_train, compose("train", [*common, "trainer.epochs=1"]), run_dir=plain)
    again = json.loads((plain / "metrics.json").read_text())
    assert "estimate" not in again["phases"] and "unused" not in again["phases"]  # no budget, no plan
    for key in ("train_accuracy", "val_accuracy", "test_accuracy", "test_loss"):
        assert record[key] == again[key], key
    with open(planned / "history.csv") as f, open(plain / "history.csv") as g:
        assert list(csv.reader(f)) == list(csv.reader(g))
