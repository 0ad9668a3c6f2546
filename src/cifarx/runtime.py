"""What every command shares around its plain ``run_*`` function: resolvers, validation,
the run directory's lifecycle, and turning user errors into one line and an exit code."""

from __future__ import annotations

import errno
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from cifarx.errors import CifarxError, ConfigError, one_line

log = logging.getLogger("cifarx")

KERAS_COMMANDS = ("train", "evaluate", "extract")  # the others never import a deep-learning backend


def register_resolvers() -> None:
    from cifarx.config import register_configs

    register_configs()
    if not OmegaConf.has_resolver("cifarx_groups"):
        from cifarx.errors import groups_help

        OmegaConf.register_new_resolver("cifarx_groups", groups_help)
    if not OmegaConf.has_resolver("cifarx_varying"):
        from cifarx.sweep import job_dirname

        OmegaConf.register_new_resolver("cifarx_varying", job_dirname)
    if not OmegaConf.has_resolver("cifarx_pid"):
        OmegaConf.register_new_resolver("cifarx_pid", lambda: str(os.getpid()), use_cache=True)


def import_keras_quietly():
    """Import Keras (and its backend) with C++ start-up chatter (oneDNN, absl) kept off stderr.

    TensorFlow prints those lines from native code before any Python logging is configured and
    no environment variable silences all of them, so stderr is pointed at /dev/null meanwhile.
    """
    if "keras" in sys.modules:
        return sys.modules["keras"]
    from cifarx.console import err_console

    err_console()  # made while stderr is still the terminal: rich decides once whether it may draw live bars
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
    schema.validate_seed(cfg)
    schema.validate_logger(cfg)
    if command == "train":
        schema.validate_train(cfg)
    elif command == "data":
        schema.validate_data(cfg.data)
    elif hasattr(schema, f"validate_{command}"):
        getattr(schema, f"validate_{command}")(cfg)


def _stop_on_sigterm() -> None:
    """Treat SIGTERM (a cluster's pre-emption, `kill`) like Ctrl-C: stop, record, say how to resume."""
    import signal
    import threading

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


# Run directories this process has claimed (locked), with whether each existed before the claim.
_CLAIMED: dict[Path, bool] = {}


def hydra_files(run: Path, job_name: str) -> tuple[Path, ...]:
    """What Hydra itself writes into a run directory before the task starts."""
    hydra_dir = run / ".hydra"
    return (hydra_dir / "config.yaml", hydra_dir / "hydra.yaml", hydra_dir / "overrides.yaml", run / f"{job_name}.log")


def claim_run_dir(path: str | os.PathLike, resuming: bool = False, job_name: str | None = None) -> None:
    """Make ``path`` this process's run directory: lock it, and refuse a folder that already holds
    anything but Hydra's own files for this job (cifarx never writes into what it did not make).

    A resumed run's directory is a cifarx run by construction (validated separately); it is locked
    so a second process cannot resume or write into it at the same time.
    """
    from cifarx.artifacts import LOCK_FILE, is_locked, lock_run_dir
    from cifarx.errors import RunError

    path = Path(path).resolve()  # as Hydra does: abspath, no '~' expansion
    if path in _CLAIMED:
        return
    existed = path.exists()
    if existed and not path.is_dir():
        raise ConfigError(f"hydra.run.dir='{path}' is a file, not a directory; choose a directory")
    if existed and is_locked(path):
        from cifarx.artifacts import _holder

        raise RunError(f"run directory '{path}' is in use by another cifarx process{_holder(path)}; "
                       "wait for it to finish or choose another hydra.run.dir")
    ours = set(hydra_files(path, job_name)) if job_name else set()

    def foreign() -> list[Path]:
        if resuming or not path.is_dir():
            return []
        return [p for p in sorted(path.rglob("*")) if p.is_file() and p.name != LOCK_FILE and p not in ours]

    def refuse(found: list[Path]):
        return ConfigError(f"hydra.run.dir='{path}' already holds files cifarx did not make in this run "
                           f"({len(found)}, e.g. '{found[0].relative_to(path)}'); cifarx never writes into "
                           "or deletes such a folder: choose a new or empty directory"
                           + (" (or resume=<run dir> to continue a train run)" if job_name in (None, "train") else ""))

    found = foreign()
    if found:
        raise refuse(found)
    path.mkdir(parents=True, exist_ok=True)
    lock_run_dir(path)
    _CLAIMED[path] = existed
    found = foreign()  # another process may have written between the check and the lock
    if found:
        release_run_dir(path)
        raise refuse(found)


def release_run_dir(path: str | os.PathLike) -> None:
    from cifarx.artifacts import unlock_run_dir

    path = Path(path).resolve()
    _CLAIMED.pop(path, None)
    unlock_run_dir(path)


def _no_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def run_command(command: str, fn: Callable[..., dict[str, Any]], cfg: DictConfig,
                run_dir: str | os.PathLike | None = None) -> Any:
    """Run ``fn(cfg, run)`` inside a run directory that this process owns and that records its
    own status (``run_dir`` replaces Hydra's output directory, for in-process callers).

    A user error (bad data, missing files) before any result exists removes exactly the files this
    run made (and the directory, only if this run made it), so nothing is left that looks like a
    result; later failures leave ``status.json`` saying ``failed`` with the error. Returns the value
    a Hydra sweeper optimises.
    """
    from cifarx.artifacts import RunDir

    run = RunDir(run_dir, command) if run_dir is not None else RunDir.from_hydra(command)
    from cifarx.console import in_sweep

    multirun = in_sweep()
    resuming = command == "train" and cfg.get("resume") is not None
    _stop_on_sigterm()

    def refuse(message: str):
        if multirun:  # the sweep goes on; its summary reports the failure
            log.error("cifarx %s: error: %s", command, message)
            return None
        print(f"cifarx {command}: error: {message}", file=sys.stderr)
        sys.exit(2)

    claimed_here = run.path not in _CLAIMED
    try:
        claim_run_dir(run.path, resuming, job_name=command if run_dir is None else None)
    except CifarxError as exc:  # not ours to touch: nothing is written or removed
        return refuse(one_line(str(exc)))
    # Claimed by the CLI before Hydra ran: it knows whether the folder existed. Claimed here under
    # Hydra: the folder held nothing but Hydra's files for this job, so Hydra made it for this run.
    existed = _CLAIMED[run.path] if not claimed_here or run_dir is not None else False
    try:
        return _run_owned(command, fn, cfg, run, multirun, resuming, refuse, existed)
    finally:
        release_run_dir(run.path)


def _run_owned(command, fn, cfg, run, multirun, resuming, refuse, existed: bool) -> Any:
    from cifarx import tracking  # light: MLflow itself is imported only with logger=mlflow
    from cifarx.artifacts import LOCK_FILE, resume_hint

    try:
        validate_command_config(command, cfg)
        if resuming:
            from cifarx.resume import resume_config

            cfg = resume_config(cfg)
        store = tracking.connect_for(command, cfg, resuming)  # an unreachable store stops here: nothing written yet
        run.begin(cfg)
        run.has_results = run.has_results or resuming  # a resumed run's directory is never removed
        if command in KERAS_COMMANDS:
            import_keras_quietly()
        run.tracker = tracking.start_for(command, cfg, run, store, resuming)
        result = fn(cfg, run)
    except CifarxError as exc:
        message = one_line(str(exc))
        if run.has_results or multirun:
            _record(run, "failed", error=message)
            tracking.end_for(run, "FAILED", cfg)
        elif not resuming:  # a refused resume leaves the existing run exactly as it was
            tracking.end_for(run, "FAILED", cfg, discard=True)  # no result: the MLflow run goes too
            # Hydra's files and the lock were made for this run too: the folder held none before.
            run.discard(also=(*hydra_files(run.path, command), run.file(LOCK_FILE)), remove_dir=not existed)
        return refuse(message)
    except KeyboardInterrupt:
        _record(run, "interrupted", error="interrupted (Ctrl-C or SIGTERM)")
        tracking.end_for(run, "KILLED", cfg)
        if multirun:  # stop the sweep; the launcher's caller writes the summary of what finished
            raise
        hint = f"; continue with: {resume_hint(run.path)}" if command == "train" and run.file("last.keras").exists() else ""
        print(f"cifarx {command}: interrupted; partial results in {run.path}{hint}", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if _no_space(exc):
            hint = f"; free space, then {resume_hint(run.path)}" if command == "train" and run.file("last.keras").exists() \
                else "; free space and run again"
            message = f"no space left on device ({getattr(exc, 'filename', None) or run.path}){hint}"
            _record(run, "failed", error=message)
            tracking.end_for(run, "FAILED", cfg)
            return refuse(message)
        _record(run, "failed", error=one_line(f"{type(exc).__name__}: {exc}"), traceback=traceback.format_exc())
        tracking.end_for(run, "FAILED", cfg)
        if multirun:
            log.exception("cifarx %s: job failed", command)
            return None
        raise
    run.set_status("completed")
    tracking.end_for(run, "FINISHED", cfg, result if isinstance(result, dict) else None)
    if multirun and isinstance(result, dict):
        _job_line(command, run, result)
    if not isinstance(result, dict):
        return result
    key = cfg.get("objective")
    return result.get(key) if key else None  # never another metric in its place (a test score would be one)


def _job_line(command: str, run, result: dict) -> None:
    """A sweep job's one line: its number, what it set, its scores, its time."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    scores = "  ".join(f"{k.split('_')[0]} {result[k]:.4f}" for k in ("val_accuracy", "test_accuracy")
                       if isinstance(result.get(k), (int, float)))
    seconds = result.get("seconds")
    from cifarx.sweep import varying_overrides

    log.info("job %s %s  %s%s  %s", hc.job.num, " ".join(varying_overrides(hc.overrides.task)) or "(defaults)", scores,
             f"  {seconds:.0f}s" if isinstance(seconds, (int, float)) else "", run.path.name)


def _record(run, status: str, **fields) -> None:
    """Write the final status if the directory still can take it (it may be gone, or the disk full)."""
    try:
        run.set_status(status, **fields)
    except (CifarxError, OSError) as exc:
        log.warning("could not record status '%s' in %s (%s)", status, run.path, one_line(str(exc)))
