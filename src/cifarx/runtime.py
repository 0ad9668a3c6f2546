"""What every command shares around its plain ``run_*`` function: resolvers, validation,
the run directory's lifecycle, and turning user errors into one line and an exit code."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import traceback
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from cifarx.errors import CifarxError, ConfigError, one_line

log = logging.getLogger("cifarx")

KERAS_COMMANDS = ("train", "evaluate", "extract")  # the others never import a deep-learning backend


def register_resolvers() -> None:
    from cifarx.config import register_configs

    register_configs()
    if not OmegaConf.has_resolver("cifarx_pid"):
        OmegaConf.register_new_resolver("cifarx_pid", lambda: str(os.getpid()), use_cache=True)


def import_keras_quietly():
    """Import Keras (and its backend) with C++ start-up chatter (oneDNN, absl) kept off stderr.

    TensorFlow prints those lines from native code before any Python logging is configured and
    no environment variable silences all of them, so stderr is pointed at /dev/null meanwhile.
    """
    if "keras" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return keras


def keys_outside_schema(node, prefix: str = "") -> list[str]:
    """Keys that a schema does not declare: Hydra's '+key=value' can add them past struct mode."""
    import dataclasses

    from omegaconf import DictConfig

    if not isinstance(node, DictConfig):
        return []
    found = []
    kind = OmegaConf.get_type(node)
    declared = {f.name for f in dataclasses.fields(kind)} if dataclasses.is_dataclass(kind) else None
    for key in node.keys():
        path = f"{prefix}{key}"
        if declared is not None and key not in declared and not (prefix == "" and key == "hydra"):
            found.append(path)
        found += keys_outside_schema(node._get_node(key), path + ".")
    return found


def validate_command_config(command: str, cfg: DictConfig) -> None:
    from cifarx import config as schema
    from cifarx.errors import ConfigError

    extra = keys_outside_schema(cfg)
    if extra:
        raise ConfigError(f"unknown config key '{extra[0]}' (check the spelling; `--cfg job` shows every key)")
    if command == "train":
        schema.validate_train(cfg)
    elif command == "data":
        schema.validate_data(cfg.data)
    elif hasattr(schema, f"validate_{command}"):
        getattr(schema, f"validate_{command}")(cfg)


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _stop_on_sigterm() -> None:
    """Treat SIGTERM (a cluster's pre-emption, `kill`) like Ctrl-C: stop, record, say how to resume."""
    import signal
    import threading

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def resume_config(cfg: DictConfig) -> DictConfig:
    """The interrupted run's own config, with only ``trainer.epochs`` taken from the command line."""
    from pathlib import Path

    from hydra.core.hydra_config import HydraConfig

    from cifarx.artifacts import read_history

    run_dir = Path(str(cfg.resume)).expanduser().resolve()
    saved = OmegaConf.load(run_dir / "config.yaml")
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    for item in overrides:
        if item.startswith("trainer.epochs="):
            saved.trainer.epochs = int(item.split("=", 1)[1])
    saved.resume = str(run_dir)
    done = len(read_history(run_dir / "history.csv").get("loss", []))
    if done >= int(saved.trainer.epochs):
        raise ConfigError(f"run {run_dir} already has {done} epochs; pass trainer.epochs > {done} to extend it")
    return saved


def run_command(command: str, fn: Callable[..., dict[str, Any]], cfg: DictConfig) -> Any:
    """Run ``fn(cfg, run)`` inside a run directory that records its own status.

    A user error (bad data, missing files) before any result exists removes the run directory,
    so nothing is left that looks like a result; later failures leave ``status.json`` saying
    ``failed`` with the error. Returns the value a Hydra sweeper optimises.
    """
    from cifarx.artifacts import RunDir

    run = RunDir.from_hydra(command)
    multirun = _is_multirun()
    resuming = command == "train" and cfg.get("resume") is not None
    _stop_on_sigterm()
    try:
        validate_command_config(command, cfg)
        if resuming:
            cfg = resume_config(cfg)
        run.begin(cfg)
        run.has_results = run.has_results or resuming  # a resumed run's directory is never removed
        if command in KERAS_COMMANDS:
            import_keras_quietly()
        result = fn(cfg, run)
    except CifarxError as exc:
        message = one_line(str(exc))
        if run.has_results or multirun:
            run.set_status("failed", error=message)
        elif not resuming:  # a refused resume leaves the existing run exactly as it was
            shutil.rmtree(run.path, ignore_errors=True)
        if multirun:  # the sweep goes on; its summary reports the failure
            log.error("cifarx %s: error: %s", command, message)
            return None
        print(f"cifarx {command}: error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        run.set_status("interrupted", error="interrupted (Ctrl-C or SIGTERM)")
        hint = f"; continue with: cifarx train resume={run.path}" if command == "train" and run.file("last.keras").exists() else ""
        print(f"cifarx {command}: interrupted; partial results in {run.path}{hint}", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        run.set_status("failed", error=one_line(f"{type(exc).__name__}: {exc}"),
                       traceback=traceback.format_exc())
        if multirun:
            log.exception("cifarx %s: job failed", command)
            return None
        raise
    run.set_status("completed")
    if not isinstance(result, dict):
        return result
    key = cfg.get("objective")
    if key and result.get(key) is not None:
        return result[key]
    return result.get("objective")  # each command's default: validation accuracy, else test accuracy
