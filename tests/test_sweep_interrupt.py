"""Ctrl-C in the middle of a sweep: a summary of what finished and the list of jobs never run.

The sweep runs the real CLI (Hydra's multirun, basic launcher) in a child process, whose `data`
command is replaced by one that raises KeyboardInterrupt at the second job: no timing luck, and
Hydra's process-wide logging setup stays out of the test process.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import write_batches_dir

SRC = str(Path(__file__).resolve().parents[1] / "src")

CHILD = """
import sys
import cifarx.commands.data
from cifarx.cli import main

def fake_run_data(cfg, run):
    if int(cfg.seed) == 2:
        raise KeyboardInterrupt  # what Ctrl-C raises in the job
    run.write_metrics({"val_accuracy": int(cfg.seed) / 10})
    return {"objective": int(cfg.seed) / 10}

cifarx.commands.data.run_data = fake_run_data
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_mid_sweep_leaves_a_summary_listing_the_missing_jobs(tmp_path):
    root = write_batches_dir(tmp_path / "d")
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, "-c", CHILD, "data", "-m", "seed=1,2,3,4", f"data.root={root}",
         f"data.cache_dir={tmp_path / 'c'}", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": SRC, "CI": "true"})
    assert result.returncode == 130, result.stderr[-2000:]
    assert "sweep interrupted" in result.stderr and "2 jobs did not run: seed=3; seed=4" in result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["not_run"] == ["seed=3", "seed=4"]
    with open(sweep / "summary.csv") as f:
        rows = {r["overrides"]: r["status"] for r in csv.DictReader(f)}
    assert rows == {"seed=1": "completed", "seed=2": "interrupted"}
