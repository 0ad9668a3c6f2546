"""`cifarx train`: prepare (data, backend, the objects a run is built from, once) -> model (built, or
loaded to resume) -> fit (stage 1, then VGG's fine-tuning stage) -> evaluate -> record."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from omegaconf import DictConfig

from cifarx.config.validate import validate_train_config
from cifarx.errors import TrainingDiverged
from cifarx.run.history import checkpoint_stopped
from cifarx.run.layout import RESUMABLE
from cifarx.run.resume import stage_ends
from cifarx.run.rundir import RunDir, check_keras_file, read_history, reconcile_history, require_run
from cifarx.training.backend import check_batches, configure_backend, distribution_scope, eval_batch_size

log = logging.getLogger("cifarx")


@dataclass
class TrainSetup:
    """What one training run is built from: made once by :func:`prepare` and handed through."""

    cfg: DictConfig
    run: RunDir
    data: Any  # cifarx.data.Dataset
    schedule: Any  # the schedule object (cifarx.training.schedules), built once
    scope: Any  # the distribution strategy's scope factory
    replicas: int
    steps: int  # training steps per epoch
    steps_per_execution: int
    devices: list
    started: float  # when the command started (the time budget's clock)
    compiles: Any  # cifarx.training.compile_cache.CompileLog
    phases: Any  # cifarx.training.phases.RunPhases
    monitor: str | None  # val_accuracy; None without a validation split (no best.keras: the last is scored)
    checkpointed: bool  # a resume whose last.keras holds the model to continue
    checkpoint: Any = None  # the AtomicCheckpoint both stages write through

    def new_model(self):
        """The configured model, built and compiled for ``trainer.epochs`` under the strategy's scope."""
        from cifarx.models import build_model
        from cifarx.training.optim import build_optimizer

        cfg = self.cfg
        with self.scope():  # models, optimizers and their variables are created under the strategy
            model = build_model(cfg.model, cfg.data, self.data, int(cfg.seed))
            _compile(model, build_optimizer(cfg.optimizer, self.schedule, self.steps, int(cfg.trainer.epochs)), self)
        return model


@dataclass
class Progress:
    """Where a run stands before fitting: its epochs so far (a resumed run's history) and where each stage ends."""

    history: dict[str, list]
    checkpointed: bool  # last.keras holds the model to continue
    stopped: bool  # early stopping ended the stage last.keras is in
    stage1_end: int
    total: int
    in_stage: int  # the stage last.keras was saved in
    stages: list[dict] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)

    @property
    def done(self) -> int:
        return len(self.history.get("loss", []))


def validate_train(cfg: DictConfig) -> None:
    """A new run's config; with ``resume=``, that the run exists and can be resumed (its own saved
    config is checked by cifarx.run.resume.resume_config, not today's defaults)."""
    if cfg.get("resume") is not None:
        run = require_run(cfg.resume, "train", statuses=RESUMABLE)
        if (run / "last.keras").exists():
            check_keras_file(run / "last.keras", f"'{run / 'last.keras'}'")
        return
    validate_train_config(cfg)


def run_train(cfg: DictConfig, run: RunDir) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data`` and evaluate it; returns the metrics written. On JAX the
    compilation cache is on (``trainer.compile_cache``) and what compiles is counted."""
    from cifarx.training import compile_cache
    from cifarx.training.budget import job_started

    started, start = job_started(), time.perf_counter()
    compiles = compile_cache.CompileLog(compile_cache.enable(bool(cfg.trainer.get("compile_cache", True)),
                                                             cfg.trainer.get("compile_cache_dir"))).start()
    try:
        setup = prepare(cfg, run, started, compiles)
        budget = _fit_budget(setup)
        model = _prepare_model(setup)
        progress = _progress(setup, model)
        _fit_stages(setup, model, progress)
        train_seconds = time.perf_counter() - start
        model, evaluated = _scored_model(setup, model)
        run.save_model("model.keras", _without_optimizer(model))
        metrics = _evaluate(setup, model, progress, _facts(setup, model, progress, evaluated, train_seconds, budget))
        metrics["phases"] = setup.phases.record(budget, epochs=len(progress.epoch_seconds))
        metrics["compile"] = compiles.as_dict()
        _log_mlflow_model(setup, model, metrics)
        metrics["seconds"] = round(time.perf_counter() - start, 3)
        run.write_metrics(metrics)
        run.write_provenance(wall_seconds=metrics["seconds"])
        log.info("test accuracy %.4f; run directory %s", metrics["test_accuracy"], run.path)
        return metrics
    finally:
        compiles.stop()


def prepare(cfg: DictConfig, run: RunDir, started: float, compiles) -> TrainSetup:
    """The backend configured, the data loaded and described, and the objects training is built from."""
    import keras

    from cifarx.config.build import instantiate
    from cifarx.data import load_dataset
    from cifarx.data.feed import steps_per_epoch
    from cifarx.training.devices import compute_devices, unused_gpu_hint
    from cifarx.training.phases import RunPhases

    seed = int(cfg.seed)
    configure_backend(cfg.trainer, seed, run.job.parallel_jobs)
    data = load_dataset(cfg.data, seed)
    devices = compute_devices()
    run.write_provenance(data=data.source, backend=keras.backend.backend(), devices=devices)
    hint = unused_gpu_hint(devices)
    if hint:
        log.warning(hint)
    pool = len(data.y_train) + len(data.y_val)  # what the validation split is taken from
    taken = f" ({'data.max_train=' if cfg.data.max_train is not None else ''}{pool:,} less {len(data.y_val):,} " \
            "for validation)" if len(data.y_val) else ""
    log.info("data: %s (%s) train %s%s, val %s, test %s, %d classes, loaded in %.1fs", data.source["root"],
             data.source["format"], f"{len(data.y_train):,}", taken, f"{len(data.y_val):,}", f"{len(data.y_test):,}",
             data.num_classes, data.source["load_seconds"])
    scope, replicas = distribution_scope(cfg.trainer)
    # Keras' multi-step loop fails under MirroredStrategy (InvalidArgumentError in
    # multi_step_on_iterator, Keras 3.15) and Keras refuses it on PyTorch: one step per call there.
    steps_per_execution = int(cfg.trainer.steps_per_execution)
    if steps_per_execution > 1 and (replicas > 1 or keras.backend.backend() == "torch"):
        log.info("trainer.steps_per_execution=%d -> 1 (%s)", steps_per_execution,
                 "MirroredStrategy" if replicas > 1 else "the PyTorch backend takes one step per call")
        steps_per_execution = 1
    steps = steps_per_epoch(len(data.y_train), int(cfg.trainer.batch_size), bool(cfg.trainer.get("drop_last", False)))
    return TrainSetup(cfg=cfg, run=run, data=data, schedule=instantiate(cfg.schedule, "schedule"), scope=scope,
                      replicas=replicas, steps=steps, steps_per_execution=steps_per_execution, devices=devices,
                      started=started, compiles=compiles, phases=RunPhases(started, compiles),
                      monitor="val_accuracy" if len(data.y_val) else None,
                      checkpointed=cfg.get("resume") is not None and run.file("last.keras").exists())


def _fit_budget(setup: TrainSetup):
    """``trainer.time_budget``: the epochs that fit, chosen on a measured model (a resumed run keeps
    the epochs it chose)."""
    if setup.cfg.trainer.get("time_budget") is None or setup.checkpointed:
        return None
    from cifarx.training.budget import fit_to_budget

    return fit_to_budget(setup.cfg, setup.run, setup.data, setup.new_model, setup.started, setup.schedule.warmup())


def _prepare_model(setup: TrainSetup):
    """A compiled model: built fresh, or loaded from ``last.keras`` with its optimizer and schedule
    state when resuming from a checkpoint; writes model_summary.txt and says what it is."""
    from cifarx.models import load_model, preprocessing_rule

    cfg, run = setup.cfg, setup.run
    if setup.checkpointed:
        with setup.scope():
            model = load_model(run.file("last.keras"))  # weights, optimizer state, schedule position
        model.run_eagerly = bool(cfg.trainer.run_eagerly)  # how steps run is this process's choice, not the file's
    else:  # a new run, or one killed before its first checkpoint: it starts from epoch 0 in place
        model = setup.new_model()
    lines: list[str] = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line), line_length=100)
    run.write_text("model_summary.txt", "\n".join(lines) + "\n")
    data = setup.data
    check_batches(model, cfg.trainer, len(data.y_train), max(len(y) for _, y in data.splits().values()))
    rule = preprocessing_rule(cfg.model, cfg.data)
    if rule == "imagenet" and str(cfg.data.normalize) != "none":
        log.info("preprocessing: %s weights expect VGG's preprocess_input, which replaces "
                 "data.normalize=%s", cfg.model.weights, cfg.data.normalize)
    log.info("model: %s, %s parameters (%s trainable), preprocessing %s%s", cfg.model.name,
             f"{int(model.count_params()):,}", f"{_count(model.trainable_weights):,}", rule,
             ", augmentation on" if cfg.data.augment.enabled else "")
    return model


def _progress(setup: TrainSetup, model) -> Progress:
    """A resumed run's epochs so far and its stages' ends (a new run: none and the configured ones);
    the checkpoint both stages write through, primed with the best epoch so far."""
    from cifarx.training.callbacks import AtomicCheckpoint

    cfg, run, monitor = setup.cfg, setup.run, setup.monitor
    resuming, checkpointed = cfg.get("resume") is not None, setup.checkpointed
    if resuming:
        reconcile_history(run.path)  # drop history rows past what last.keras holds (a kill between)
    history = read_history(run.file("history.csv")) if checkpointed else {}
    stopped = checkpointed and checkpoint_stopped(run.file("last.keras"))
    stage1_end, total = stage_ends(cfg, history, stopped)
    progress = Progress(history, checkpointed, stopped, stage1_end, total,
                        in_stage=int(history["stage"][-1]) if history.get("stage") else 1)
    done = progress.done
    if checkpointed and done >= (stage1_end if progress.in_stage == 1 else total) and model.optimizer is not None:
        # killed after the checkpoint's stage ended: what fit does when a stage ends (an EMA's average goes in)
        model.optimizer.finalize_variable_values(model.trainable_weights)
    if resuming and done < total:
        log.info("resuming %s at epoch %d of %d", run.path, done + 1, total)
    elif resuming:
        log.info("resuming %s: its %d epochs are trained; evaluating", run.path, done)
    past = history.get(monitor, []) if monitor else []
    setup.checkpoint = AtomicCheckpoint(run, monitor=monitor, initial_best=max(past) if past else None,
                                        every=int(cfg.trainer.checkpoint_every))
    if past:
        setup.checkpoint.best_epoch = int(np.argmax(past)) + 1
    return progress


def _fit_stages(setup: TrainSetup, model, progress: Progress) -> None:
    """Stage 1 up to ``trainer.epochs``, then VGG's fine-tuning stage when configured; each stage's
    history and epoch times go into ``progress``."""
    cfg = setup.cfg
    setup.run.has_results = True  # from here on a failure leaves the run, marked failed, for inspection
    progress.stages.append({"stage": 1, "epochs": int(cfg.trainer.epochs), "trainable_params": _count(model.trainable_weights)})
    if progress.done < progress.stage1_end:
        past = progress.history.get(setup.monitor, []) if setup.monitor else []
        part, seconds = _fit(setup, model, 1, (progress.done, int(cfg.trainer.epochs)), past)
        _merge(progress.history, part)
        progress.epoch_seconds += seconds
    if cfg.model.get("finetune") is not None and cfg.model.finetune.blocks > 0:  # VGG's second stage
        end = progress.total if progress.stopped and progress.in_stage == 2 else stage_ends(cfg, progress.history, True)[1]
        stage, part, seconds = _finetune(setup, model, progress.history, progress.in_stage == 2, end)
        progress.stages.append(stage)
        _merge(progress.history, part)
        progress.epoch_seconds += seconds


def _callbacks(setup: TrainSetup, stage: int, epochs: int, append: bool, past: list[float]):
    """Per-epoch callbacks only (plus live progress on a terminal): a per-batch hook makes Keras
    wait for every step before queueing the next, which costs most where steps are fastest."""
    import keras

    from cifarx.training.callbacks import (
        EpochInfo,
        EpochSeeds,
        HistoryCSV,
        ResumableEarlyStopping,
        StopOnNonFinite,
        progress_callback,
    )

    cfg, run, checkpoint = setup.cfg, setup.run, setup.checkpoint
    progress = progress_callback(epochs, setup.steps, stage="[finetune] " if stage == 2 else "",
                                 chunk=int(cfg.trainer.steps_per_execution))
    stop = ([ResumableEarlyStopping(past, monitor=setup.monitor, mode="max", patience=int(cfg.trainer.early_stopping))]
            if cfg.trainer.early_stopping else [])
    cbs = [EpochSeeds(int(cfg.seed)), EpochInfo(stage), StopOnNonFinite(), *stop,  # the order matters:
           HistoryCSV(str(run.file("history.csv")), append=append),  # the epoch's row (epoch 1-based),
           checkpoint, progress]  # then best.keras and last.keras (the commit point, also on a stop)
    if getattr(run, "tracker", None) is not None:  # after the CSV row: MLflow mirrors history.csv
        cbs.insert(cbs.index(checkpoint), run.tracker.keras_callback())
    cbs += setup.schedule.callbacks() if stage == 1 else []
    if cfg.trainer.tensorboard:
        cbs.append(keras.callbacks.TensorBoard(log_dir=str(run.file("tensorboard"))))
    cbs += list(getattr(run, "epoch_callbacks", ()))  # a search's pruning report (cifarx.commands.search)
    return [*cbs, setup.phases.callback], progress  # last: the phases' clock


def _fit(setup: TrainSetup, model, stage: int, epochs: tuple[int, int], past: list[float] = ()):
    """``epochs``: (the first epoch to train, the epoch to stop at); ``past``: the monitored metric
    of the epochs already done (a resumed run's history)."""
    from cifarx.data.feed import FeedPlan, training_feed

    cfg, data = setup.cfg, setup.data
    initial_epoch, end = epochs
    augment = cfg.data.augment
    feed, feed_epoch, _ = training_feed(data.x_train, data.y_train, FeedPlan(
        int(cfg.trainer.batch_size), int(cfg.seed), initial_epoch, str(cfg.trainer.feed),
        alternate_flip=bool(augment.enabled and augment.flip and augment.get("alternate_flip", False)),
        drop_last=bool(cfg.trainer.get("drop_last", False))))
    callbacks, progress = _callbacks(setup, stage, end, append=initial_epoch > 0, past=list(past))
    validation = (data.x_val, data.y_val) if len(data.y_val) else None
    history = model.fit(feed, epochs=end, initial_epoch=initial_epoch, validation_data=validation,
                        validation_batch_size=eval_batch_size(cfg.trainer), callbacks=[feed_epoch, *callbacks],
                        verbose=0, shuffle=False)  # the feed orders batches by (seed, epoch)
    losses = history.history.get("loss", [])
    if not losses or not np.all(np.isfinite(losses)):
        raise TrainingDiverged(f"training loss became {losses[-1] if losses else 'undefined'} at epoch "
                               f"{initial_epoch + len(losses)}; lower optimizer.learning_rate or add "
                               "optimizer.clipnorm (no model was saved as a result)")
    return history.history, progress.epoch_seconds


def _compile(model, optimizer, setup: TrainSetup) -> None:
    """The one compile both training stages use: (label-smoothed) sparse cross-entropy, accuracy."""
    from cifarx.training.optim import build_loss

    trainer = setup.cfg.trainer
    model.compile(optimizer=optimizer, loss=build_loss(float(trainer.label_smoothing)), metrics=["accuracy"],
                  jit_compile=trainer.jit_compile, steps_per_execution=setup.steps_per_execution,
                  run_eagerly=bool(trainer.run_eagerly))


def _finetune(setup: TrainSetup, model, history: dict, in_stage_2: bool, end: int) -> tuple[dict, dict, list[float]]:
    """Stage 2: unfreeze the top ``model.finetune.blocks`` blocks and train on at their own rate,
    up to epoch ``end`` (``model.finetune.epochs`` after stage 1's last). ``in_stage_2``: a resumed run's last.keras
    was saved in stage 2 (the model is then stage 2's as saved: unfrozen, with its optimizer's state)."""
    from cifarx.models.vgg import unfreeze_top_blocks
    from cifarx.training.optim import build_optimizer
    from cifarx.training.schedules import Constant

    cfg = setup.cfg
    finetune = cfg.model.finetune
    opened = unfreeze_top_blocks(model, int(finetune.blocks))
    if not in_stage_2:
        with setup.scope():
            _compile(model, build_optimizer(cfg.optimizer, Constant(), setup.steps, int(finetune.epochs),
                                            base_lr=float(finetune.learning_rate)), setup)
    trainable = _count(model.trainable_weights)
    log.info("fine-tuning: unfroze %d layers (%s trainable parameters) at learning rate %g",
             len(opened), f"{trainable:,}", finetune.learning_rate)
    done = len(history.get("loss", []))
    part, seconds = _fit(setup, model, 2, (done, end)) if done < end else ({}, [])
    stage = {"stage": 2, "epochs": int(finetune.epochs), "trainable_params": trainable,
             "unfrozen_layers": opened, "learning_rate": float(finetune.learning_rate)}
    return stage, part, seconds


def _scored_model(setup: TrainSetup, model):
    """The model ``trainer.evaluate`` asks for (best.keras, or the last), and which it is."""
    from cifarx.models import load_model

    evaluated = str(setup.cfg.trainer.evaluate)
    if evaluated == "best" and setup.monitor and setup.run.file("best.keras").exists():
        return load_model(setup.run.file("best.keras")), evaluated
    if evaluated == "best" and not setup.monitor:
        log.info("trainer.evaluate=best means last here: without a validation split there is no best to choose")
    return model, "last"


def _without_optimizer(model):
    """The scored model as ``model.keras`` holds it: its layers and weights, no optimizer (whose
    state, a momentum per weight, would double the file; resuming reads last.keras)."""
    import keras

    copy = keras.Model.from_config(model.get_config())  # uncompiled (clone_model compiles the copy)
    copy.set_weights(model.get_weights())
    return copy


def _facts(setup: TrainSetup, model, progress: Progress, evaluated: str, train_seconds: float, budget) -> dict:
    """What metrics.json says about the training itself, beside the scores."""
    import keras

    from cifarx.data.feed import resolve_feed
    from cifarx.models import preprocessing_rule
    from cifarx.training.devices import training_device

    cfg, data, epoch_seconds = setup.cfg, setup.data, progress.epoch_seconds
    mean_epoch = float(np.mean(epoch_seconds)) if epoch_seconds else 0.0
    return {
        "model": cfg.model.name, "experiment": cfg.get("experiment_name"), "params": int(model.count_params()),
        "trainable_params": progress.stages[0]["trainable_params"], "epochs": progress.done,
        "best_epoch": setup.checkpoint.best_epoch, "evaluated_checkpoint": evaluated,
        "preprocessing": preprocessing_rule(cfg.model, cfg.data), "augmentation": bool(cfg.data.augment.enabled),
        "seed": int(cfg.seed), "train_count": int(len(data.y_train)), "val_count": int(len(data.y_val)),
        "batch_size": int(cfg.trainer.batch_size), "precision": str(cfg.trainer.precision),
        "steps_per_execution": setup.steps_per_execution,
        "jit_compile": cfg.trainer.jit_compile, "backend": keras.backend.backend(),
        "device": training_device(setup.devices), "feed": resolve_feed(str(cfg.trainer.feed)),
        "resumed": cfg.get("resume") is not None, "replicas": setup.replicas,
        "epoch_seconds": round(mean_epoch, 3),
        "epoch_times": [round(t, 3) for t in epoch_seconds],
        "images_per_second": round(len(data.y_train) / mean_epoch, 1) if mean_epoch else None,
        "train_seconds": round(train_seconds, 3), "stages": progress.stages,
        "data_sha256": data.source["sha256"],
        **({"time_budget": budget.as_dict()} if budget else {}),
    }


def _evaluate(setup: TrainSetup, model, progress: Progress, extra: dict) -> dict[str, Any]:
    from cifarx.evaluation import Scoring, evaluate_model

    cfg = setup.cfg
    setup.phases.scoring()
    scoring = Scoring(eval_batch_size(cfg.trainer), str(cfg.tta), bool(cfg.trainer.score_train), bool(cfg.figures))
    return evaluate_model(setup.run, model, setup.data, scoring, progress.history, extra)


def _log_mlflow_model(setup: TrainSetup, model, metrics: dict) -> None:
    """``logger=mlflow``: the scored model as a servable MLflow model (``mlflow models serve``)."""
    tracker, logger = getattr(setup.run, "tracker", None), setup.cfg.logger
    if tracker is None or not logger.log_model:
        return
    from cifarx.models import float32_model

    served, _ = float32_model(model)  # a mixed-precision model served as trained differs from Keras (export.py)
    model_id = tracker.log_keras_model(served, setup.data.x_test[:3], logger.get("register_as"))
    if model_id:
        metrics["mlflow_model_id"] = model_id
        log.info("MLflow: model %s; serve it with: MLFLOW_TRACKING_URI=%s mlflow models serve -m models:/%s "
                 "--env-manager local", model_id, tracker.uri, model_id)


def _merge(total: dict[str, list], part: dict[str, list]) -> None:
    for key, values in part.items():
        total.setdefault(key, []).extend(float(v) for v in values)


def _count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))
