"""JAX's persistent compilation cache, and a count of what a run compiles.

On the JAX backend every compiled step (train, predict, the small eager ops around them) is kept
in a per-user folder, ``$XDG_CACHE_HOME/cifarx/jax`` (``~/.cache/cifarx/jax``), so a second run of
the same model and batch shapes loads them instead of compiling: on a GPU that is most of a short
run's fixed cost. A cache entry is executable code this process loads and runs, so the folder is
trusted like the pipeline-signing key: cifarx makes it private (mode 0700) and refuses one that
another user owns or others can write to. ``trainer.compile_cache=false`` leaves JAX's own settings
alone (``JAX_COMPILATION_CACHE_DIR``, if set, still applies).

``CompileLog`` counts what JAX compiles while it is active (from ``jax.monitoring`` events): the
executables it needed (``requests``), how many of them it compiled and how many came from the
cache, their seconds (compiling, or loading an entry) and the tracing and lowering seconds before
them, split by the run's phases, and how often each Keras step function (``train_step``,
``predict_step``...) was compiled, so ``metrics.json`` shows whether a run compiled once, per epoch
or per batch shape.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from cifarx.errors import ConfigError

log = logging.getLogger("cifarx")

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"  # an XLA compile, or a load from the cache
TRACE = "/jax/core/compile/jaxpr_trace_duration"
LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"
CACHE_HIT = "/jax/compilation_cache/cache_hits"
CACHE_WRITE = "/jax/compilation_cache/cache_misses"  # JAX's name for writing a new entry after a compile
SAVED = "/jax/compilation_cache/compile_time_saved_sec"


def default_dir() -> Path:
    """``$XDG_CACHE_HOME/cifarx/jax``, else ``~/.cache/cifarx/jax``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "cifarx" / "jax"


def private_dir(path: Path, key: str) -> Path:
    """``path``, made if missing with mode 0700; refused if another user owns it or others may
    write to it (they could plant code this process would run)."""
    path = path.expanduser().resolve()
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)
    if not path.is_dir():
        raise ConfigError(f"{key}='{path}' is not a directory")
    info = path.stat()
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise ConfigError(f"{key}='{path}' belongs to another user: a compilation cache holds code this "
                          "process runs, so it must be your own (choose another folder, or "
                          "trainer.compile_cache=false)")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(f"{key}='{path}' can be written by others (mode {stat.S_IMODE(info.st_mode):o}): a "
                          f"compilation cache holds code this process runs; `chmod 700 {path}` or choose another")
    return path


def enable(enabled: bool, directory: str | None, key: str = "trainer.compile_cache_dir") -> Path | None:
    """Turn JAX's persistent compilation cache on in ``directory`` (null: ``default_dir()``) for
    this process, before its first compile; every compile is kept, however quick. Returns the
    folder, or None where nothing was set (another backend, or ``enabled`` false)."""
    import keras

    if not enabled or keras.backend.backend() != "jax":
        return None
    path = private_dir(Path(directory) if directory else default_dir(), key)
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    if getattr(jax.config, "jax_compilation_cache_dir", None) != str(path):
        compilation_cache.set_cache_dir(str(path))
        quiet = logging.getLogger("jax._src.compilation_cache")
        level, quiet.level = quiet.level, logging.WARNING  # its "Resetting cache" line is no news in a run's log
        try:
            compilation_cache.reset_cache()  # JAX opens its cache once per process: reopen it here
        finally:
            quiet.setLevel(level)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # keep even sub-second compiles
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # and entries of any size
    log.debug("JAX compilation cache: %s", path)
    return path


class CompileLog:
    """Counts JAX's compiles, their seconds and the persistent cache's hits, by phase, while it is
    the active log (``start()`` .. ``stop()``). Outside JAX it stays empty."""

    _active: CompileLog | None = None
    _listening = False

    def __init__(self, cache_dir: Path | None = None):
        self.cache_dir = cache_dir
        self.phase = "start-up"
        self.phases: dict[str, dict[str, float]] = {}
        self.steps: dict[str, int] = {}  # Keras' step functions (jit(train_step)...): executables needed

    def start(self) -> CompileLog:
        import keras

        if keras.backend.backend() == "jax":
            CompileLog._listen()
            CompileLog._active = self
        return self

    def stop(self) -> None:
        if CompileLog._active is self:
            CompileLog._active = None

    def set_phase(self, phase: str) -> None:
        self.phase = phase

    @classmethod
    def _listen(cls) -> None:
        """Registered once per process (jax.monitoring has no scoped listeners); events go to
        whichever log is active."""
        if cls._listening:
            return
        import jax.monitoring as monitoring

        def on_duration(event: str, duration: float, **kwargs) -> None:
            active = cls._active
            if active is not None and event in (BACKEND_COMPILE, TRACE, LOWER, SAVED):
                active._record(event, float(duration), str(kwargs.get("fun_name", "")))

        def on_event(event: str, **kwargs) -> None:
            active = cls._active
            if active is not None and event in (CACHE_HIT, CACHE_WRITE):
                active._record(event, 0.0, "")

        monitoring.register_event_duration_secs_listener(on_duration)
        monitoring.register_event_listener(on_event)
        cls._listening = True

    def _record(self, event: str, seconds: float, name: str) -> None:
        phase = self.phases.setdefault(self.phase, {"requests": 0, "compiles": 0, "compile_seconds": 0.0,
                                                    "trace_seconds": 0.0, "cache_hits": 0, "cache_writes": 0,
                                                    "saved_seconds": 0.0})
        if event == BACKEND_COMPILE:  # after the cache's hit event, if it was one
            phase["requests"] += 1
            phase["compile_seconds"] += seconds
            phase["compiles"] = phase["requests"] - phase["cache_hits"]
            if name.endswith("_step)") or name.endswith("_step"):
                self.steps[name] = self.steps.get(name, 0) + 1
        elif event in (TRACE, LOWER):
            phase["trace_seconds"] += seconds
        elif event == CACHE_HIT:
            phase["cache_hits"] += 1
        elif event == CACHE_WRITE:
            phase["cache_writes"] += 1
        elif event == SAVED:
            phase["saved_seconds"] += seconds

    def total(self, key: str) -> float:
        return sum(p.get(key, 0) for p in self.phases.values())

    def as_dict(self) -> dict:
        """For metrics.json: totals, each phase, and how many executables each Keras step function
        needed (a step compiled again per batch shape or per epoch shows here as more than 1)."""
        def rounded(d):
            return {k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}

        return {"cache_dir": str(self.cache_dir) if self.cache_dir else None,
                "requests": int(self.total("requests")), "compiles": int(self.total("compiles")), "compile_seconds": round(self.total("compile_seconds"), 3),
                "trace_seconds": round(self.total("trace_seconds"), 3), "cache_hits": int(self.total("cache_hits")),
                "cache_writes": int(self.total("cache_writes")),
                "saved_seconds": round(self.total("saved_seconds"), 3),
                "phases": {name: rounded(p) for name, p in self.phases.items()},
                "steps": dict(sorted(self.steps.items()))}
