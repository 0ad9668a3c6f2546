"""What every benchmark writes: its numbers with the machine and versions they were measured on."""

from __future__ import annotations

from pathlib import Path


def write_benchmark_record(out_dir: Path, stem: str, **fields) -> Path:
    """A benchmark's results as JSON under ``out_dir``, stamped with the time, the machine (CPU
    model and flags) and the package versions, so a number can be trusted a year later."""
    import json
    import time

    from cifarx.run.rundir import hardware, package_versions

    record = {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": hardware(), "versions": package_versions(),
              **fields}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}_{time.strftime('%Y%m%d_%H%M%S')}.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    return path
