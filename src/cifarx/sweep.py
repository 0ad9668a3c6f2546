"""Hydra callback: at the end of a multirun, one table, `summary.csv` and the best run.

Jobs record their own status (a failing job does not stop the sweep), so the summary reads the
job directories; it works the same for the basic, joblib and submitit launchers. The sweep exits
non-zero, saying how many jobs failed, when any did.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback


class SweepSummary(Callback):
    def __init__(self, sort_by: str = "val_accuracy") -> None:
        self.sort_by = sort_by

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        from cifarx.artifacts import write_bytes_atomic, write_json_atomic
        from cifarx.compare import print_rows, table, to_csv

        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        rows = table([sweep_dir], self.sort_by)
        if not rows:
            return
        write_bytes_atomic(sweep_dir / "summary.csv", to_csv(rows).encode())
        done = [r for r in rows if r["status"] == "completed" and r.get(self.sort_by) is not None]
        best = done[0] if done else None
        failed = [r for r in rows if r["status"] != "completed"]
        write_json_atomic(sweep_dir / "summary.json", {
            "sort_by": self.sort_by, "jobs": len(rows), "failed": len(failed),
            "best_run": best["run"] if best else None, "best": best})
        print_rows(rows, f"sweep {sweep_dir} ({len(rows)} jobs, sorted by {self.sort_by})", common=sweep_dir)
        if best:
            print(f"best: {best['run']} ({self.sort_by} {best[self.sort_by]:.4f})")
        if failed:
            print(f"cifarx: error: {len(failed)} of {len(rows)} sweep jobs failed; their status.json holds "
                  f"the error (first: {Path(failed[0]['run']).name}: {failed[0]['error']})", file=sys.stderr)
            sys.exit(1)
