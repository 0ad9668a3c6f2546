"""The run directory: the one place that writes files into it, always atomically.

Every file is written to a temporary name in the same directory and renamed into place, so a
killed process never leaves a truncated artifact. ``status.json`` says whether the run is
``running``, ``completed``, ``failed`` or ``interrupted`` (with the error when it failed).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import os
import platform
import socket
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from cifarx.errors import RunError

STATUS_FILE = "status.json"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
PROVENANCE_FILE = "provenance.json"
EPOCH_RECORD = "cifarx_epochs.json"  # inside a .keras checkpoint: how many epochs it holds
LOCK_FILE = ".cifarx.lock"
STATUSES = ("running", "completed", "failed", "interrupted")
STOPPED = "stopped"  # shown for a 'running' run whose process is gone (its lock is free)

_PACKAGES = ("cifarx", "keras", "tensorflow", "tensorflow-cpu", "jax", "torch", "numpy",
             "scikit-learn", "hydra-core", "omegaconf", "rich", "matplotlib", "pillow")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone makes files private


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_json_atomic(path: Path, obj: Any) -> Path:
    return write_bytes_atomic(path, (json.dumps(obj, indent=2, default=_jsonable) + "\n").encode())


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
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


# -- ownership: one process per run directory ------------------------------------------------
#
# An advisory lock (flock) on <run>/.cifarx.lock, held for as long as the run works. The kernel
# drops it when the process dies, however it dies, so a lock left by a killed run is never stale.

_HELD: dict[Path, int] = {}  # run directory -> the open lock file this process holds


def lock_run_dir(path: str | os.PathLike) -> None:
    """Take ``path``'s lock for this process (a no-op when it already holds it); RunError when
    another live process holds it. Creates nothing but the directory's lock file."""
    path = Path(path).resolve()
    if path in _HELD:
        return
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, _FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            raise
        raise RunError(f"run directory '{path}' is in use by another cifarx process{_holder(path)}; "
                       "wait for it to finish or choose another hydra.run.dir") from None
    _HELD[path] = fd  # the lock file's content never changes: a refused resume leaves the run as it was


def unlock_run_dir(path: str | os.PathLike) -> None:
    fd = _HELD.pop(Path(path).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the lock


def _holder(path: Path) -> str:
    """' (pid N)' of the process holding ``path``'s lock, from the kernel's table (Linux), or ''."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        inode = os.stat(path / LOCK_FILE).st_ino
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if "FLOCK" in fields and fields[fields.index("FLOCK") + 4].rsplit(":", 1)[1] == str(inode):
                return f" (pid {int(fields[fields.index('FLOCK') + 3])})"
    return ""


def is_locked(path: str | os.PathLike) -> bool:
    """Whether a live process (this one included) holds ``path``'s lock."""
    path = Path(path).resolve()
    if path in _HELD:
        return True
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


class RunDir:
    """A run's output directory and its lifecycle."""

    def __init__(self, path: str | os.PathLike, command: str = "run"):
        self.path = Path(path).resolve()
        self.command = command
        self.started = time.time()
        self.has_results = False  # becomes True once a result artifact is written
        self.created: list[Path] = []  # files this run wrote (early-failure cleanup removes them)
        self.begun = False  # after begin(), the directory must exist: it is never silently recreated
        self.tracker = None  # the run's MLflow tracker (cifarx.tracking), with logger=mlflow

    @classmethod
    def from_hydra(cls, command: str) -> "RunDir":
        from hydra.core.hydra_config import HydraConfig

        return cls(HydraConfig.get().runtime.output_dir, command)

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

    def save_model(self, name: str, model, epochs: int | None = None) -> Path:
        """Save ``model`` atomically; ``epochs`` (the epochs its weights hold) is stored inside the
        same .keras archive, so the record and the weights can never disagree."""
        import zipfile

        with atomic_path(self.target(name)) as tmp:
            model.save(tmp)
            if epochs is not None:
                with zipfile.ZipFile(tmp, "a") as zf:
                    zf.writestr(EPOCH_RECORD, json.dumps({"epochs": int(epochs)}))
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
        record: dict[str, Any] = {"status": status, "command": self.command, "updated": _now(),
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
        existing = read_json(self.file(PROVENANCE_FILE)) if self.file(PROVENANCE_FILE).exists() else {}
        record = {
            "command": self.command,
            "argv": sys.argv,
            "cwd": os.getcwd(),
            "started": datetime.fromtimestamp(self.started, timezone.utc).isoformat(timespec="seconds"),
            "versions": package_versions(),
            "hardware": hardware(),
            **existing,
            **{k: v for k, v in extra.items() if v is not None},
        }
        self.write_json(PROVENANCE_FILE, record)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read {path}: {exc}") from exc


def read_history(path: Path) -> dict[str, list[float]]:
    """A run's history.csv as columns ({} when there is none)."""
    path = Path(path)
    if not path.exists():
        return {}
    with path.open() as f:
        rows = list(csv.DictReader(f))
    # Keras' CSVLogger writes "NA" for val_* columns it adds when a run has no validation split.
    columns = {k: [float(r[k]) for r in rows if r.get(k) not in (None, "", "NA")] for k in (rows[0] if rows else {})}
    return {k: v for k, v in columns.items() if v}


def reconcile_history(run: Path, write: bool = True) -> int:
    """The epochs a train run can resume from: those ``last.keras`` holds. history.csv rows past
    them (written before a kill or a full disk stopped the checkpoint) are dropped, when
    ``write``, so the resumed run retrains exactly those epochs; a checkpoint ahead of its
    history cannot be resumed exactly and is refused."""
    run = Path(run)
    history = run / "history.csv"
    lines = history.read_text().splitlines(keepends=True) if history.exists() else []
    rows = max(len(lines) - 1, 0)
    held = checkpoint_epochs(run / "last.keras")
    if held is None:  # a checkpoint from before cifarx recorded its epochs
        return rows
    if held > rows:
        raise RunError(f"run '{run}': last.keras holds {held} epochs but history.csv has only {rows}; "
                       "it cannot be resumed exactly (start a new run)")
    if held < rows and write:
        import logging

        logging.getLogger("cifarx").warning(
            "history.csv had %d epochs but last.keras holds %d (stopped between the two writes); "
            "epochs after %d are trained again", rows, held, held)
        write_bytes_atomic(history, "".join(lines[:held + 1]).encode())
        best = checkpoint_epochs(run / "best.keras") if (run / "best.keras").exists() else None
        if best is not None and best > held:  # from an epoch that is trained again: not the run's best
            (run / "best.keras").unlink()
    return held


def effective_status(run: Path, record: dict[str, Any]) -> str | None:
    """The recorded status, except that 'running' without a live owner reads ``stopped``."""
    status = record.get("status")
    if status == "running" and not is_locked(run):
        return STOPPED
    return status


def resume_hint(run: Path) -> str:
    """The command that continues ``run``, copy-pasteable in a POSIX shell whatever its name."""
    import shlex

    return f"cifarx train resume={shlex.quote(str(run))}"


def checkpoint_epochs(path: Path) -> int | None:
    """How many epochs a cifarx ``.keras`` checkpoint holds (None: no record in it)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return int(json.loads(zf.read(EPOCH_RECORD))["epochs"])
    except (KeyError, OSError, ValueError, zipfile.BadZipFile):
        return None


def check_keras_file(path: Path, what: str | None = None) -> None:
    """RunError unless ``path`` is a complete .keras archive (a truncated copy is not)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        raise RunError(f"{what or path} is damaged or not a Keras model file (not a complete .keras "
                       "archive: truncated copy or full disk?); restore it or train again")


def require_run(path: str | os.PathLike, kind: str, needs: tuple[str, ...] = (),
                statuses: tuple[str, ...] = ("completed",)) -> Path:
    """Check that ``path`` is a run of command ``kind``, in one of ``statuses``, holding ``needs``."""
    run = Path(path).expanduser().resolve()
    if not run.is_dir():
        raise RunError(f"run directory '{path}' does not exist")
    config = run / CONFIG_FILE
    status = run / STATUS_FILE
    if not config.exists() or not status.exists():
        raise RunError(f"'{path}' is not a cifarx run directory (no {CONFIG_FILE} / {STATUS_FILE})")
    try:
        record = json.loads(status.read_text())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise RunError(f"run '{path}' has a damaged {STATUS_FILE} ({type(exc).__name__}); "
                       "it cannot be trusted: use another run") from None
    if record.get("command") != kind:
        raise RunError(f"'{path}' is a '{record.get('command')}' run; a '{kind}' run is needed")
    state = effective_status(run, record)
    if state == "running" and "running" not in statuses:
        raise RunError(f"run '{path}' is still running{_holder(run)}; wait for it to finish")
    if state == STOPPED and "running" not in statuses:
        hint = f"; resume with: {resume_hint(run)}" if kind == "train" and (run / "last.keras").exists() else ""
        raise RunError(f"run '{path}' stopped without finishing (process gone){hint}")
    if record.get("status") not in statuses:
        raise RunError(f"run '{path}' is {record.get('status')}, not {' or '.join(statuses)}"
                       + (f" ({record['error']})" if record.get("error") else ""))
    for name in needs:
        if not (run / name).exists():
            raise RunError(f"run '{path}' has no {name}")
        if name.endswith(".keras"):
            check_keras_file(run / name, f"'{run / name}'")
    return run
