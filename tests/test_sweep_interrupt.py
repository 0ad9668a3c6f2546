"""Ctrl-C in the middle of a sweep: a summary of what finished and the list of jobs never run."""

from __future__ import annotations

import csv
import json

from conftest import write_batches_dir


def test_ctrl_c_mid_sweep_leaves_a_summary_listing_the_missing_jobs(tmp_path, monkeypatch, capsys):
    import cifarx.stats
    from cifarx.cli import main

    def fake_run_data(cfg, run):
        if int(cfg.seed) == 2:
            raise KeyboardInterrupt
        run.write_metrics({"val_accuracy": int(cfg.seed) / 10})
        return {"objective": int(cfg.seed) / 10}

    monkeypatch.setattr(cifarx.stats, "run_data", fake_run_data)
    monkeypatch.chdir(tmp_path)
    root = write_batches_dir(tmp_path / "d")
    sweep = tmp_path / "sweep"
    code = main(["data", "-m", "seed=1,2,3,4", f"data.root={root}", f"data.cache_dir={tmp_path / 'c'}",
                 f"hydra.sweep.dir={sweep}"])
    err = capsys.readouterr().err
    assert code == 130
    assert "sweep interrupted" in err and "2 jobs did not run: seed=3; seed=4" in err
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["not_run"] == ["seed=3", "seed=4"]
    with open(sweep / "summary.csv") as f:
        rows = {r["overrides"]: r["status"] for r in csv.DictReader(f)}
    assert rows == {"seed=1": "completed", "seed=2": "interrupted"}
