"""Recorded runs (results/): the README table comes from `cifarx compare --format markdown`, and a
recorded model re-evaluated from its new home, on data that moved, reproduces its test accuracy."""

from __future__ import annotations

import json
import shutil

import pytest

from cifarx.commands import compare
from cifarx.run.rundir import RunDir
from conftest import compose, tiny_train_overrides, write_batches_dir

pytestmark = pytest.mark.slow


def test_a_recorded_run_reevaluates_to_its_recorded_accuracy_and_tabulates_against_the_report(tmp_path, capsys):
    from cifarx.commands.evaluate import run_evaluate
    from cifarx.commands.train import run_train

    root = write_batches_dir(tmp_path / "data", train_per_class=12, test_per_class=5)
    cfg = compose("train", [*tiny_train_overrides(root, tmp_path / "cache", epochs=2), "data=augment",
                            "experiment_name=tiny_cnn", "reference_accuracy=0.0"])
    run = RunDir(tmp_path / "outputs" / "run", "train")
    run.begin(cfg)
    recorded = run_train(cfg, run)
    run.set_status("completed")

    results = tmp_path / "repo" / "results"
    shutil.copytree(run.path, results / "tiny_cnn")  # what a user commits: the run as written
    moved = shutil.move(str(root.parent), str(tmp_path / "elsewhere"))  # the data is not where it was
    again = compose("evaluate", [f"run={results / 'tiny_cnn'}", f"data.root={moved}/cifar-10-batches-py"])
    out = RunDir(tmp_path / "outputs" / "reeval", "evaluate")
    out.begin(again)
    metrics = run_evaluate(again, out)
    assert metrics["test_accuracy"] == recorded["test_accuracy"]
    assert metrics["test_loss"] == recorded["test_loss"]

    capsys.readouterr()
    assert compare.main([str(results), "--format", "markdown"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| run | experiment | epochs | test accuracy | report | vs report |")
    row = table[2]
    assert row.startswith("| tiny_cnn | tiny_cnn | 2 | ")
    assert f"{100 * recorded['test_accuracy']:.2f}%" in row and "| 0.00% |" in row
    assert ("beats" in row) == (recorded["test_accuracy"] > 0.005)
    assert json.loads((results / "tiny_cnn" / "metrics.json").read_text())["test_accuracy"] == recorded["test_accuracy"]


@pytest.mark.parametrize(("measured", "reference", "expected"), [
    (0.82, 0.82, "matches (+0.0)"), (0.8249, 0.82, "matches (+0.5)"), (0.85, 0.82, "beats (+3.0)"),
    (0.79, 0.82, "below (-3.0)"), (0.8, None, "-"), (None, 0.8, "-")])
def test_verdict_against_the_report(measured, reference, expected):
    assert compare.verdict(measured, reference) == expected


def test_compare_csv_and_markdown_take_every_row_field(tmp_path):
    """Regression: a row key missing from COLUMNS made csv.DictWriter raise, which broke
    `compare --csv` and every sweep summary."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "status.json").write_text(json.dumps({"status": "completed", "command": "train"}))
    (run / "metrics.json").write_text(json.dumps({"test_accuracy": 0.81, "epochs": 3, "resumed": True,
                                                  "seconds": 12.0, "device": "CPU"}))
    (run / "config.yaml").write_text("experiment_name: demo\nreference_accuracy: 0.82\n")
    rows = compare.table([tmp_path])
    text = compare.to_csv(rows)
    assert text.splitlines()[0].split(",") == compare.COLUMNS and "demo" in text
    assert "| run | demo | 3 | 81.00% | 82.00% | below (-1.0) | 12 (after resume) | CPU |" in compare.to_markdown(rows)


def test_every_recorded_train_config_upgrades_to_groups_that_build():
    """Regression: configs saved before the groups named their classes (results/ holds several)
    kept every knob of the old flat schemas, and resume refused them ('schedule.boundaries is not
    an argument of cifarx.training.schedules.OneCycle')."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from cifarx.config.build import check_arguments, instantiate
    from cifarx.run.resume import upgrade
    from conftest import REPO

    saved = [p for p in sorted((REPO / "results").glob("*/config.yaml")) if "trainer" in OmegaConf.load(p)]
    assert saved, "no recorded train runs"
    for path in saved:
        cfg = upgrade(OmegaConf.load(path))
        for group in ("model", "schedule"):
            assert instantiate(cfg[group], group).name == OmegaConf.load(path)[group].name, (Path(path).parent.name, group)
        check_arguments(cfg.optimizer, "optimizer")
        assert "name" not in cfg.optimizer and str(cfg.optimizer._target_).startswith("keras.optimizers.")
