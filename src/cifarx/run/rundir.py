"""The run directory: the one place that writes files into it, always atomically.

Every file is written to a temporary name in the same directory and renamed into place, so a
killed process never leaves a truncated artifact. ``status.json`` says whether the run is
``running``, ``completed``, ``failed`` or ``interrupted`` (with the error when it failed).

The work is split by concern: file names and statuses (:mod:`cifarx.run.layout`), atomic writes
(:mod:`cifarx.run.atomic_io`), the ownership lock (:mod:`cifarx.run.lock`), history and checkpoint
epochs (:mod:`cifarx.run.history`), checks of an existing run (:mod:`cifarx.run.checks`). This
module holds :class:`RunDir` and the provenance facts; every name of the others is importable
from here.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import socket
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from cifarx.errors import RunError
from cifarx.run.atomic_io import (  # noqa: F401  (re-exported: cifarx.run.rundir is what callers import)
    FILE_MODE,
    atomic_path,
    current_umask,
    jsonable,
    read_json,
    read_record,
    write_bytes_atomic,
    write_json_atomic,
)
from cifarx.run.checks import check_keras_file, effective_status, require_run, resume_hint  # noqa: F401
from cifarx.run.history import read_history, reconcile_history  # noqa: F401
from cifarx.run.job import Job
from cifarx.run.layout import (  # noqa: F401  (re-exported)
    CONFIG_FILE,
    EPOCH_RECORD,
    LOCK_FILE,
    METRICS_FILE,
    PROVENANCE_FILE,
    STATUS_FILE,
    STATUSES,
    STOPPED,
)
from cifarx.run.lock import is_locked, lock_holder, lock_run_dir, unlock_run_dir  # noqa: F401

_PACKAGES = ("cifarx", "keras", "tensorflow", "tensorflow-cpu", "jax", "torch", "numpy",
             "scikit-learn", "hydra-core", "omegaconf", "rich", "matplotlib", "pillow")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def package_versions(*extra: str) -> dict[str, str]:
    """Python's version and each installed package's of cifarx's stack (and of ``extra``)."""
    versions = {"python": platform.python_version()}
    for name in (*_PACKAGES, *extra):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")  # the ones that change CPU speed here


def hardware() -> dict[str, Any]:
    cpu, flags = platform.processor() or platform.machine(), []
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in CPU_FLAGS if f in have]
    return {"host": socket.gethostname(), "platform": platform.platform(), "cpu": cpu,
            "cpu_flags": flags, "cpu_count": os.cpu_count()}


class RunDir:
    """A run's output directory and its lifecycle."""

    def __init__(self, path: str | os.PathLike, command: str = "run"):
        self.path = Path(path).resolve()
        self.command = command
        self.started = time.time()
        self.has_results = False  # becomes True once a result artifact is written
        self.created: list[Path] = []  # files this run wrote (early-failure cleanup removes them)
        self.begun = False  # after begin(), the directory must exist: it is never silently recreated
        self.tracker = None  # the run's MLflow tracker (cifarx.tracking.hooks), with logger=mlflow
        self.resumed = False  # continuing an earlier process's run: its provenance gets an entry of ours
        self.job = Job.in_process(self.path)  # the job's facts; run_command sets Hydra's for a job Hydra runs
        self._resume_entry: int | None = None  # our entry's index in provenance's "resumes"

    def file(self, name: str) -> Path:
        return self.path / name

    def target(self, name: str) -> Path:
        """The path to write ``name`` to, remembered as this run's; refuses a vanished directory."""
        if self.begun and not self.path.is_dir():
            raise RunError(f"run directory '{self.path}' was deleted while the run was working; "
                           "its results are lost (start the run again)")
        path = self.file(name)
        if not path.exists() and path not in self.created:
            self.created.append(path)
        return path

    # -- writing -------------------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> Path:
        return write_json_atomic(self.target(name), obj)

    def write_text(self, name: str, text: str) -> Path:
        return write_bytes_atomic(self.target(name), text.encode())

    def write_csv(self, name: str, header: list[str], rows: list[list[Any]]) -> Path:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return self.write_text(name, buf.getvalue())

    def save_figure(self, name: str, fig) -> Path:
        import matplotlib.pyplot as plt

        with atomic_path(self.target(name)) as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight", format=Path(name).suffix.lstrip("."))
        plt.close(fig)
        return self.file(name)

    def save_model(self, name: str, model, epochs: int | None = None, stopped: bool = False) -> Path:
        """Save ``model`` atomically; ``epochs`` (the epochs its weights hold) is stored inside the
        same .keras archive, so the record and the weights can never disagree."""
        import zipfile

        with atomic_path(self.target(name)) as tmp:
            model.save(tmp)
            if epochs is not None:
                with zipfile.ZipFile(tmp, "a") as zf:
                    zf.writestr(EPOCH_RECORD, json.dumps({"epochs": int(epochs), "stopped": bool(stopped)}))
        return self.file(name)

    def write_metrics(self, metrics: dict[str, Any]) -> Path:
        self.has_results = True
        if self.tracker is not None:
            metrics = {**metrics, "mlflow_run_id": self.tracker.run_id}
        return self.write_json(METRICS_FILE, metrics)

    # -- lifecycle -----------------------------------------------------------------------
    def begin(self, cfg) -> None:
        from omegaconf import OmegaConf

        self.path.mkdir(parents=True, exist_ok=True)
        self.begun = True
        self.write_text(CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
        self.set_status("running")
        self.write_provenance(seed=cfg.get("seed"))

    def set_status(self, status: str, error: str | None = None, traceback: str | None = None) -> None:
        assert status in STATUSES, status
        record: dict[str, Any] = {"status": status, "command": self.command, "updated": utc_now(),
                                  "seconds": round(time.time() - self.started, 3), "pid": os.getpid()}
        if error:
            record["error"] = error
        if traceback:
            record["traceback"] = traceback
        self.write_json(STATUS_FILE, record)

    def discard(self, also: tuple[Path, ...] = (), remove_dir: bool = False) -> None:
        """Remove exactly the files this run wrote (and ``also``, other files it made), then the
        folders left empty, the run directory itself only when ``remove_dir`` (this run made it)."""
        for path in [*self.created, *also]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for folder in sorted({p.parent for p in also if p.parent != self.path}, key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
        self.created.clear()
        if remove_dir:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only when empty: anything else in it was not ours

    def write_provenance(self, **extra: Any) -> None:
        """Add ``extra`` facts to provenance.json. The first process's facts stay as they were; each
        resume appends one entry (when, argv, versions, hardware, then its own data, backend...)."""
        existing = read_record(self.file(PROVENANCE_FILE))
        extra = {k: v for k, v in extra.items() if v is not None}
        facts = {"argv": sys.argv, "cwd": os.getcwd(),
                 "started": datetime.fromtimestamp(self.started, UTC).isoformat(timespec="seconds"),
                 "versions": package_versions(), "hardware": hardware()}
        if self.resumed and existing:
            resumes = list(existing.get("resumes") or [])
            if self._resume_entry is None:
                resumes.append(facts)
                self._resume_entry = len(resumes) - 1
            resumes[self._resume_entry] = {**resumes[self._resume_entry], **extra}
            record = {**existing, "resumes": resumes}
        else:
            record = {"command": self.command, **facts, **existing, **extra}
        self.write_json(PROVENANCE_FILE, record)
