"""`cifarx train`: data -> model -> model.fit (optionally a fine-tuning stage) -> evaluation."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from omegaconf import DictConfig

from cifarx.errors import TrainingDiverged
from cifarx.run.history import checkpoint_stopped
from cifarx.run.resume import stage_ends
from cifarx.run.rundir import RunDir, read_history, reconcile_history
from cifarx.training.backend import check_batches, configure_backend, distribution_scope, eval_batch_size

log = logging.getLogger("cifarx")


def _callbacks(cfg, run: RunDir, checkpoint, stage: int, epochs: int, steps: int, monitor: str,
               append: bool, past: list[float]):
    """Per-epoch callbacks only (plus live progress on a terminal): a per-batch hook makes Keras
    wait for every step before queueing the next, which costs most where steps are fastest."""
    import keras

    from cifarx.config.build import instantiate
    from cifarx.training.callbacks import (
        EpochInfo,
        EpochSeeds,
        HistoryCSV,
        ResumableEarlyStopping,
        StopOnNonFinite,
        progress_callback,
    )

    progress = progress_callback(epochs, steps, stage="[finetune] " if stage == 2 else "",
                                 chunk=int(cfg.trainer.steps_per_execution))
    stop = ([ResumableEarlyStopping(past, monitor=monitor, mode="max", patience=int(cfg.trainer.early_stopping))]
            if cfg.trainer.early_stopping else [])
    cbs = [EpochSeeds(int(cfg.seed)), EpochInfo(stage), StopOnNonFinite(), *stop,  # the order matters:
           HistoryCSV(str(run.file("history.csv")), append=append),  # the epoch's row (epoch 1-based),
           checkpoint, progress]  # then best.keras and last.keras (the commit point, also on a stop)
    if getattr(run, "tracker", None) is not None:  # after the CSV row: MLflow mirrors history.csv
        cbs.insert(cbs.index(checkpoint), run.tracker.keras_callback())
    cbs += instantiate(cfg.schedule, "schedule").callbacks() if stage == 1 else []
    if cfg.trainer.tensorboard:
        cbs.append(keras.callbacks.TensorBoard(log_dir=str(run.file("tensorboard"))))
    cbs += list(getattr(run, "epoch_callbacks", ()))  # last: a search's pruning report (cifarx.commands.search)
    return cbs, progress


def _fit(model, data, cfg, run, checkpoint, stage: int, initial_epoch: int, epochs: int, monitor: str,
         past: list[float] = (), clock=None):
    """``past``: the monitored metric of the epochs already done (a resumed run's history);
    ``clock``: a callback that runs after all the others (``cifarx.training.phases``)."""
    from cifarx.data.feed import training_feed

    augment = cfg.data.augment
    feed, feed_epoch, steps = training_feed(
        data.x_train, data.y_train, int(cfg.trainer.batch_size), int(cfg.seed), initial_epoch, str(cfg.trainer.feed),
        alternate_flip=bool(augment.enabled and augment.flip and augment.get("alternate_flip", False)),
        drop_last=bool(cfg.trainer.get("drop_last", False)))
    callbacks, progress = _callbacks(cfg, run, checkpoint, stage, epochs, steps, monitor,
                                     append=initial_epoch > 0, past=list(past))
    validation = (data.x_val, data.y_val) if len(data.y_val) else None
    history = model.fit(feed, epochs=epochs, initial_epoch=initial_epoch, validation_data=validation,
                        validation_batch_size=eval_batch_size(cfg.trainer),
                        callbacks=[feed_epoch, *callbacks, *([clock] if clock is not None else [])],
                        verbose=0, shuffle=False)  # the feed orders batches by (seed, epoch)
    losses = history.history.get("loss", [])
    if not losses or not np.all(np.isfinite(losses)):
        raise TrainingDiverged(f"training loss became {losses[-1] if losses else 'undefined'} at epoch "
                               f"{initial_epoch + len(losses)}; lower optimizer.learning_rate or add "
                               "optimizer.clipnorm (no model was saved as a result)")
    return history.history, progress.epoch_seconds


def _compile(model, optimizer, cfg, steps_per_execution: int) -> None:
    """The one compile both training stages use: (label-smoothed) sparse cross-entropy, accuracy."""
    from cifarx.training.optim import build_loss

    model.compile(optimizer=optimizer, loss=build_loss(float(cfg.trainer.label_smoothing)), metrics=["accuracy"],
                  jit_compile=cfg.trainer.jit_compile, steps_per_execution=steps_per_execution)


def _without_optimizer(model):
    """The scored model as ``model.keras`` holds it: its layers and weights, no optimizer (whose
    state, a momentum per weight, would double the file; resuming reads last.keras)."""
    import keras

    copy = keras.Model.from_config(model.get_config())  # uncompiled (clone_model compiles the copy)
    copy.set_weights(model.get_weights())
    return copy


def _merge(total: dict[str, list], part: dict[str, list]) -> None:
    for key, values in part.items():
        total.setdefault(key, []).extend(float(v) for v in values)


def _count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def _new_model(cfg, data, scope, steps: int, steps_per_execution: int):
    """The configured model, built and compiled for ``trainer.epochs`` under the strategy's scope."""
    from cifarx.config.build import instantiate
    from cifarx.models import build_model
    from cifarx.training.optim import build_optimizer

    schedule = instantiate(cfg.schedule, "schedule")
    with scope():  # models, optimizers and their variables are created under the strategy
        model = build_model(cfg.model, cfg.data, data, int(cfg.seed))
        _compile(model, build_optimizer(cfg.optimizer, schedule, steps, int(cfg.trainer.epochs)), cfg,
                 steps_per_execution)
    return model


def _prepare_model(cfg, run: RunDir, data, scope, checkpointed: bool, steps: int, steps_per_execution: int):
    """A compiled model: built fresh, or loaded from ``last.keras`` with its optimizer and schedule
    state when resuming from a checkpoint; writes model_summary.txt."""
    from cifarx.models import load_model

    if checkpointed:
        with scope():
            model = load_model(run.file("last.keras"))  # weights, optimizer state, schedule position
    else:  # a new run, or one killed before its first checkpoint: it starts from epoch 0 in place
        model = _new_model(cfg, data, scope, steps, steps_per_execution)
    lines: list[str] = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line), line_length=100)
    run.write_text("model_summary.txt", "\n".join(lines) + "\n")
    return model


def _finetune(model, data, cfg, run, checkpoint, scope, steps: int, steps_per_execution: int,
              history: dict, monitor: str | None, in_stage_2: bool, end: int, clock=None) -> tuple[dict, dict, list[float]]:
    """Stage 2: unfreeze the top ``model.finetune.blocks`` blocks and train on at their own rate,
    up to epoch ``end`` (``model.finetune.epochs`` after stage 1's last). ``in_stage_2``: a resumed run's last.keras
    was saved in stage 2 (the model is then stage 2's as saved: unfrozen, with its optimizer's state)."""
    from cifarx.models.vgg import unfreeze_top_blocks
    from cifarx.training.optim import build_optimizer
    from cifarx.training.schedules import Constant

    finetune = cfg.model.finetune
    opened = unfreeze_top_blocks(model, int(finetune.blocks))
    if not in_stage_2:
        with scope():
            _compile(model, build_optimizer(cfg.optimizer, Constant(), steps, int(finetune.epochs),
                                            base_lr=float(finetune.learning_rate)), cfg, steps_per_execution)
    trainable = _count(model.trainable_weights)
    log.info("fine-tuning: unfroze %d layers (%s trainable parameters) at learning rate %g",
             len(opened), f"{trainable:,}", finetune.learning_rate)
    done = len(history.get("loss", []))
    part, seconds = _fit(model, data, cfg, run, checkpoint, 2, done, end, monitor, clock=clock) if done < end else ({}, [])
    stage = {"stage": 2, "epochs": int(finetune.epochs), "trainable_params": trainable,
             "unfrozen_layers": opened, "learning_rate": float(finetune.learning_rate)}
    return stage, part, seconds


def run_train(cfg: DictConfig, run: RunDir) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data`` and evaluate it; returns the metrics written. On JAX the
    compilation cache is on (``trainer.compile_cache``) and what compiles is counted."""
    from cifarx.training import compile_cache
    from cifarx.training.budget import job_started

    started = job_started()
    start = time.perf_counter()
    seed = int(cfg.seed)
    compiles = compile_cache.CompileLog(compile_cache.enable(bool(cfg.trainer.get("compile_cache", True)),
                                                             cfg.trainer.get("compile_cache_dir"))).start()
    try:
        return _run_train(cfg, run, started, start, seed, compiles)
    finally:
        compiles.stop()


def _run_train(cfg: DictConfig, run: RunDir, started: float, start: float, seed: int, compiles) -> dict[str, Any]:
    import keras

    from cifarx.data import load_dataset
    from cifarx.data.feed import resolve_feed, steps_per_epoch
    from cifarx.evaluation import Scoring, evaluate_model
    from cifarx.models import load_model, preprocessing_rule
    from cifarx.training.callbacks import AtomicCheckpoint
    from cifarx.training.devices import compute_devices, training_device, unused_gpu_hint
    from cifarx.training.phases import RunPhases

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

    resuming = cfg.get("resume") is not None
    scope, replicas = distribution_scope(cfg.trainer)
    # Keras' multi-step loop fails under MirroredStrategy (InvalidArgumentError in
    # multi_step_on_iterator, Keras 3.15) and Keras refuses it on PyTorch: one step per call there.
    steps_per_execution = int(cfg.trainer.steps_per_execution)
    if steps_per_execution > 1 and (replicas > 1 or keras.backend.backend() == "torch"):
        log.info("trainer.steps_per_execution=%d -> 1 (%s)", steps_per_execution,
                 "MirroredStrategy" if replicas > 1 else "the PyTorch backend takes one step per call")
        steps_per_execution = 1
    batch = int(cfg.trainer.batch_size)
    steps = steps_per_epoch(len(data.y_train), batch, bool(cfg.trainer.get("drop_last", False)))
    budget = None
    checkpointed = resuming and run.file("last.keras").exists()
    if cfg.trainer.get("time_budget") is not None and not checkpointed:  # a resumed run keeps the epochs it chose
        from cifarx.training.budget import fit_to_budget

        budget = fit_to_budget(cfg, run, data, lambda: _new_model(cfg, data, scope, steps, steps_per_execution), started)
    epochs = int(cfg.trainer.epochs)
    model = _prepare_model(cfg, run, data, scope, checkpointed, steps, steps_per_execution)
    check_batches(model, cfg.trainer, len(data.y_train), max(len(y) for _, y in data.splits().values()))
    params, trainable = int(model.count_params()), _count(model.trainable_weights)
    rule = preprocessing_rule(cfg.model, cfg.data)
    if rule == "imagenet" and str(cfg.data.normalize) != "none":
        log.info("preprocessing: %s weights expect VGG's preprocess_input, which replaces "
                 "data.normalize=%s", cfg.model.weights, cfg.data.normalize)
    log.info("model: %s, %s parameters (%s trainable), preprocessing %s%s", cfg.model.name,
             f"{params:,}", f"{trainable:,}", rule, ", augmentation on" if cfg.data.augment.enabled else "")

    monitor = "val_accuracy" if len(data.y_val) else None  # no validation split: no best.keras, the last is scored
    if resuming:
        reconcile_history(run.path)  # drop history rows past what last.keras holds (a kill between)
    history = read_history(run.file("history.csv")) if checkpointed else {}
    done = len(history.get("loss", []))
    stopped = checkpointed and checkpoint_stopped(run.file("last.keras"))
    stage1, total = stage_ends(cfg, history, stopped)
    in_stage = int(history["stage"][-1]) if history.get("stage") else 1  # the stage last.keras is in
    if checkpointed and done >= (stage1 if in_stage == 1 else total) and model.optimizer is not None:
        # killed after the checkpoint's stage ended: what fit does when a stage ends (an EMA's average goes in)
        model.optimizer.finalize_variable_values(model.trainable_weights)
    if resuming and done < total:
        log.info("resuming %s at epoch %d of %d", run.path, done + 1, total)
    elif resuming:
        log.info("resuming %s: its %d epochs are trained; evaluating", run.path, done)
    past = history.get(monitor, []) if monitor else []
    checkpoint = AtomicCheckpoint(run, monitor=monitor, initial_best=max(past) if past else None,
                                  every=int(cfg.trainer.checkpoint_every))
    if past:
        checkpoint.best_epoch = int(np.argmax(past)) + 1

    run.has_results = True  # from here on a failure leaves the run, marked failed, for inspection
    stages = [{"stage": 1, "epochs": epochs, "trainable_params": trainable}]
    epoch_seconds: list[float] = []
    phases = RunPhases(started, compiles)
    if done < stage1:
        part, seconds = _fit(model, data, cfg, run, checkpoint, 1, done, epochs, monitor, past=past,
                             clock=phases.callback)
        _merge(history, part)
        epoch_seconds += seconds
    if cfg.model.get("finetune") is not None and cfg.model.finetune.blocks > 0:  # VGG's second stage
        stage, part, seconds = _finetune(model, data, cfg, run, checkpoint, scope, steps, steps_per_execution,
                                         history, monitor, in_stage_2=in_stage == 2,
                                         end=total if stopped and in_stage == 2 else stage_ends(cfg, history, True)[1],
                                         clock=phases.callback)
        stages.append(stage)
        _merge(history, part)
        epoch_seconds += seconds

    train_seconds = time.perf_counter() - start
    evaluated = str(cfg.trainer.evaluate)
    if evaluated == "best" and monitor and run.file("best.keras").exists():
        model = load_model(run.file("best.keras"))
    else:
        if evaluated == "best" and not monitor:
            log.info("trainer.evaluate=best means last here: without a validation split there is no best to choose")
        evaluated = "last"
    run.save_model("model.keras", _without_optimizer(model))
    mean_epoch = float(np.mean(epoch_seconds)) if epoch_seconds else 0.0
    extra = {
        "model": cfg.model.name, "experiment": cfg.get("experiment_name"), "params": params,
        "trainable_params": trainable, "epochs": len(history.get("loss", [])),
        "best_epoch": checkpoint.best_epoch, "evaluated_checkpoint": evaluated,
        "preprocessing": rule, "augmentation": bool(cfg.data.augment.enabled), "seed": seed,
        "train_count": int(len(data.y_train)), "val_count": int(len(data.y_val)),
        "batch_size": batch, "precision": str(cfg.trainer.precision),
        "steps_per_execution": steps_per_execution,
        "jit_compile": cfg.trainer.jit_compile, "backend": keras.backend.backend(),
        "device": training_device(devices), "feed": resolve_feed(str(cfg.trainer.feed)),
        "resumed": resuming, "replicas": replicas,
        "epoch_seconds": round(mean_epoch, 3),
        "epoch_times": [round(t, 3) for t in epoch_seconds],
        "images_per_second": round(len(data.y_train) / mean_epoch, 1) if mean_epoch else None,
        "train_seconds": round(train_seconds, 3), "stages": stages,
        "data_sha256": data.source["sha256"],
        **({"time_budget": budget.as_dict()} if budget else {}),
    }
    phases.scoring()
    scoring = Scoring(eval_batch_size(cfg.trainer), str(cfg.tta), bool(cfg.trainer.score_train), bool(cfg.figures))
    metrics = evaluate_model(run, model, data, scoring, history, extra)
    metrics["phases"] = phases.record(budget, epochs=len(epoch_seconds))
    metrics["compile"] = compiles.as_dict()
    tracker = getattr(run, "tracker", None)
    if tracker is not None and cfg.logger.log_model:  # servable: `mlflow models serve -m models:/<id>`
        model_id = tracker.log_keras_model(model, data.x_test[:3], cfg.logger.get("register_as"))
        if model_id:
            metrics["mlflow_model_id"] = model_id
            log.info("MLflow: model %s; serve it with: MLFLOW_TRACKING_URI=%s mlflow models serve -m models:/%s "
                     "--env-manager local", model_id, tracker.uri, model_id)
    metrics["seconds"] = round(time.perf_counter() - start, 3)
    run.write_metrics(metrics)
    run.write_provenance(wall_seconds=metrics["seconds"])
    log.info("test accuracy %.4f; run directory %s", metrics["test_accuracy"], run.path)
    return metrics
