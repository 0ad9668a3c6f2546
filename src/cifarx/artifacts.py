"""The run directory: the one place that writes files into it, always atomically.

Every file is written to a temporary name in the same directory and renamed into place, so a
killed process never leaves a truncated artifact. ``status.json`` says whether the run is
``running``, ``completed``, ``failed`` or ``interrupted`` (with the error when it failed).
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
STATUSES = ("running", "completed", "failed", "interrupted")

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


class RunDir:
    """A run's output directory and its lifecycle."""

    def __init__(self, path: str | os.PathLike, command: str = "run"):
        self.path = Path(path).resolve()
        self.command = command
        self.started = time.time()
        self.has_results = False  # becomes True once a result artifact is written

    @classmethod
    def from_hydra(cls, command: str) -> "RunDir":
        from hydra.core.hydra_config import HydraConfig

        return cls(HydraConfig.get().runtime.output_dir, command)

    def file(self, name: str) -> Path:
        return self.path / name

    # -- writing -------------------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> Path:
        return write_json_atomic(self.file(name), obj)

    def write_text(self, name: str, text: str) -> Path:
        return write_bytes_atomic(self.file(name), text.encode())

    def write_csv(self, name: str, header: list[str], rows: list[list[Any]]) -> Path:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return self.write_text(name, buf.getvalue())

    def save_figure(self, name: str, fig) -> Path:
        import matplotlib.pyplot as plt

        with atomic_path(self.file(name)) as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight", format=Path(name).suffix.lstrip("."))
        plt.close(fig)
        return self.file(name)

    def save_model(self, name: str, model) -> Path:
        with atomic_path(self.file(name)) as tmp:
            model.save(tmp)
        return self.file(name)

    def write_metrics(self, metrics: dict[str, Any]) -> Path:
        self.has_results = True
        return self.write_json(METRICS_FILE, metrics)

    # -- lifecycle -----------------------------------------------------------------------
    def begin(self, cfg) -> None:
        from omegaconf import OmegaConf

        self.path.mkdir(parents=True, exist_ok=True)
        self.write_text(CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
        self.set_status("running")
        self.write_provenance(seed=cfg.get("seed"))

    def set_status(self, status: str, error: str | None = None, traceback: str | None = None) -> None:
        assert status in STATUSES, status
        record: dict[str, Any] = {"status": status, "command": self.command, "updated": _now(),
                                  "seconds": round(time.time() - self.started, 3)}
        if error:
            record["error"] = error
        if traceback:
            record["traceback"] = traceback
        self.write_json(STATUS_FILE, record)

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


def read_status(run: Path) -> str | None:
    path = Path(run) / STATUS_FILE
    if not path.exists():
        return None
    return read_json(path).get("status")


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
    record = read_json(status)
    if record.get("command") != kind:
        raise RunError(f"'{path}' is a '{record.get('command')}' run; a '{kind}' run is needed")
    if record.get("status") not in statuses:
        raise RunError(f"run '{path}' is {record.get('status')}, not {' or '.join(statuses)}"
                       + (f" ({record['error']})" if record.get("error") else ""))
    for name in needs:
        if not (run / name).exists():
            raise RunError(f"run '{path}' has no {name}")
    return run
