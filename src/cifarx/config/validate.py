"""The checks every command shares, and the pieces commands' own validators are made of: what the
schemas cannot express (files that must exist, settings that only make sense together). Ranges
live in the schemas themselves (the dataclasses' ``__post_init__`` in cifarx.config.schema),
checked by building the typed config once (:func:`check_ranges`). Raises ConfigError with one line
naming the bad value. A group that builds an object (model, schedule) checks its own ranges where
it is built (cifarx.config.build); :func:`validate_train_config` builds them once to run those
checks. Each command's own validator is in its module (``validate_<command>`` in
cifarx.commands.<command>), named by the registry."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cifarx.config.schema import Checkpoint, DataConfig, LoggerName
from cifarx.errors import ConfigError, require


def keys_outside_schema(node, prefix: str = "") -> list[str]:
    """Keys that a schema does not declare: Hydra's '+key=value' can add them past struct mode."""
    if not isinstance(node, DictConfig):
        return []
    found = []
    kind = OmegaConf.get_type(node)
    declared = {f.name for f in dataclasses.fields(kind)} if dataclasses.is_dataclass(kind) else None
    for key in node:
        path = f"{prefix}{key}"
        if declared is not None and key not in declared and not (prefix == "" and key == "hydra"):
            found.append(path)
        found += keys_outside_schema(node._get_node(key), path + ".")
    return found


def check_ranges(cfg: DictConfig) -> None:
    """Every range the schemas declare: the typed config built once (OmegaConf.to_object runs each
    dataclass's ``__post_init__``). A required value not given (``???``) is left to the command's
    validator, which names it."""
    from omegaconf.errors import MissingMandatoryValue

    try:
        OmegaConf.to_object(cfg)
    except MissingMandatoryValue as exc:
        key = str(getattr(exc, "full_key", "") or "")
        if key and "." not in key:  # run=, source=, features=: the command's validator says what to give
            return
        raise ConfigError(f"{key or 'a key'} has no value (??? in its config file): give {key or 'it'}=...") from None


def validate_common(cfg: DictConfig) -> None:
    """Every command: no undeclared keys, the schemas' ranges, a reachable tracker."""
    extra = keys_outside_schema(cfg)
    if extra:
        from cifarx.config.suggest import closest, config_paths

        match = closest(extra[0], [k for k in config_paths(cfg) if k not in extra])
        raise ConfigError(f"unknown config key '{extra[0]}'" + (f"; did you mean {match}?" if match else
                          " (check the spelling; `--cfg job` shows every key)"))
    check_ranges(cfg)
    logger = cfg.get("logger")
    if logger is not None and logger.name == LoggerName.mlflow:
        from cifarx.tracking import require_mlflow

        require_mlflow()


def validate_data(data: DataConfig | DictConfig) -> None:
    if data.root is not None:
        require(Path(str(data.root)).expanduser().exists(),
                f"data.root='{data.root}' does not exist (give a cifar-10-batches-py directory, "
                "cifar-10-python.tar.gz, an image folder with train/ and test/, or a .zip of one)")


def check_optimizer(opt_cfg) -> None:
    """What can be checked without making the optimizer (that would start TensorFlow's runtime
    before the trainer sets its threads): a Keras optimizer class that takes every key given, and
    a positive peak rate."""
    from cifarx.config.build import check_arguments
    from cifarx.process import import_keras_quietly

    import_keras_quietly()  # the class is Keras': its import stays quiet (TensorFlow's start-up lines)
    check_arguments(opt_cfg, "optimizer")  # a Keras optimizer class (cifarx.config.build.ALLOWED) taking every key
    lr = opt_cfg.get("learning_rate")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or lr <= 0:
        raise ConfigError(f"optimizer.learning_rate={lr!r} must be a number > 0 (the schedule's peak rate)")


def validate_train_config(cfg: DictConfig) -> None:
    """The data, and the objects the model, optimizer and schedule groups
    build (each checks its own ranges and is of its group's allowed kind), then what they need of
    each other."""
    from cifarx.config.build import instantiate

    validate_data(cfg.data)
    architecture, schedule = instantiate(cfg.model, "model"), instantiate(cfg.schedule, "schedule")
    architecture.check_run(cfg)
    schedule.check_run(cfg)
    if cfg.data.val_fraction == 0:  # no validation split: nothing to choose a checkpoint or stop by
        require(not cfg.trainer.early_stopping,
                f"trainer.early_stopping={cfg.trainer.early_stopping} needs a validation split (split=holdout or "
                "data.val_fraction > 0): without one it would stop by training accuracy")
    if cfg.optimizer.get("use_ema"):
        require(cfg.trainer.evaluate == Checkpoint.last,
                "optimizer.use_ema averages the weights only when training ends, so best.keras would hold raw "
                "weights: set trainer.evaluate=last")
    check_optimizer(cfg.optimizer)  # it imports Keras: the cheap checks come first
    if "lookahead_every" in cfg.optimizer:
        from cifarx.training.optim import lookahead_problem

        every = cfg.optimizer.lookahead_every
        problem = lookahead_problem(every, cfg.optimizer.get("lookahead_decay", 0.0))
        require(problem is None, problem or "")
        require(cfg.trainer.evaluate == Checkpoint.last,
                f"optimizer.lookahead_every: the lookahead's weights are its average only at every {every}th step "
                "and at the end, so best.keras would hold weights between resets: set trainer.evaluate=last")
