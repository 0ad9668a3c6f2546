"""`cifarx compare` and the sweep summary on hand-made run directories, in-process (no training):
Hydra's overrides.yaml is read as YAML, and one damaged run directory never hides the others."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cifarx import sweep
from cifarx.commands import compare
from cifarx.errors import CommandExit

LONG = "note='" + " ".join(["word"] * 30) + "'"  # YAML folds an item this long onto a second line
HARD = ["name='x, y'", 'msg="a: b"', "k='p=q'", "quote='it\\'s'", "tags=[a,b]", "path='/a=b,c'", LONG]


def hydra_overrides_yaml(items: list[str]) -> str:
    """.hydra/overrides.yaml exactly as Hydra writes it (hydra.core.utils._save_config)."""
    return OmegaConf.to_yaml(OmegaConf.create(items))


def make_run(folder: Path, val: float | None = None, overrides: list[str] | None = None,
             status: str | None = None, metrics: str | None = None) -> Path:
    """A finished train run's records; ``status`` / ``metrics``: that file's raw text instead."""
    folder.mkdir(parents=True)
    (folder / "status.json").write_text(
        status if status is not None else json.dumps({"status": "completed", "command": "train", "seconds": 3.0}))
    (folder / "metrics.json").write_text(
        metrics if metrics is not None else json.dumps({"train_accuracy": val, "val_accuracy": val,
                                                        "test_accuracy": val, "seconds": 2.5, "epochs": 1}))
    if overrides is not None:
        (folder / ".hydra").mkdir()
        (folder / ".hydra" / "overrides.yaml").write_text(hydra_overrides_yaml(overrides))
    return folder


def test_overrides_with_quotes_commas_and_equals_are_read_as_given(tmp_path):
    run = make_run(tmp_path / "run", 0.5, [*HARD, "hydra.run.dir=out", "data.root=/data", "data.cache_dir=/c"])
    text = (run / ".hydra" / "overrides.yaml").read_text()
    assert "- 'msg=\"a: b\"'" in text and "\n  word" in text  # YAML quoted one item and folded another
    assert compare.job_overrides(run) == [*HARD, "hydra.run.dir=out", "data.root=/data", "data.cache_dir=/c"]
    assert compare.row_for(run)["overrides"] == " ".join(HARD)  # where the data and the run went: not shown
    assert sweep._job_overrides(run) == " ".join([*HARD, "hydra.run.dir=out", "data.root=/data", "data.cache_dir=/c"])


@pytest.mark.parametrize("content", [None, b"", b"\xff\xfe garbage", b"- [unclosed\n", b"a: 1\n", b"just text\n",
                                     b"- a=1\n  b: 2\n"])
def test_an_absent_or_damaged_overrides_file_reads_as_no_overrides(tmp_path, content):
    run = make_run(tmp_path / "run", 0.5)
    if content is not None:
        (run / ".hydra").mkdir()
        (run / ".hydra" / "overrides.yaml").write_bytes(content)
    assert compare.job_overrides(run) == []
    assert compare.row_for(run)["overrides"] == "" and compare.row_for(run)["status"] == "completed"


def test_a_list_holding_other_things_keeps_only_its_strings(tmp_path):
    run = make_run(tmp_path / "run", 0.5)
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text("- a=1\n- 3\n- [x]\n- {k: v}\n- null\n- b=${oc.env:HOME}\n")
    assert compare.job_overrides(run) == ["a=1", "b=${oc.env:HOME}"]  # interpolations stay as written


@pytest.fixture
def sweep_dir(tmp_path):
    """A sweep of five jobs: two good (the best with a hand-edited config.yaml), one with a
    status.json that is not JSON, one whose metrics.json is JSON but not an object, one whose
    metrics.json is cut short."""
    root = tmp_path / "multirun"
    make_run(root / "0_lr=0.1", 0.6, ["lr=0.1", "name='x, y'"])
    make_run(root / "1_lr=0.2", 0.8, ["lr=0.2", "name='x, y'"])
    (root / "1_lr=0.2" / "config.yaml").write_text("experiment_name: {nested: true}\nreference_accuracy: high\n")
    make_run(root / "2_lr=0.3", overrides=["lr=0.3", "name='x, y'"], status='{"status": "compl')
    make_run(root / "3_lr=0.4", overrides=["lr=0.4", "name='x, y'"], metrics="[0.9, 0.9]")
    make_run(root / "4_lr=0.5", overrides=["lr=0.5", "name='x, y'"], metrics='{"val_accuracy": 0.9')
    return root


def test_compare_tabulates_the_good_runs_and_marks_the_damaged_ones(sweep_dir, capsys):
    assert compare.main([str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "5 runs under" in out and "0.8000" in out and "0.6000" in out
    assert out.count("damaged") == 3
    assert compare.main([str(sweep_dir), "--csv", "-"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [Path(r["run"]).name for r in rows[:2]] == ["1_lr=0.2", "0_lr=0.1"]  # best first
    damaged = {Path(r["run"]).name: r for r in rows if r["status"] == "damaged"}
    assert set(damaged) == {"2_lr=0.3", "3_lr=0.4", "4_lr=0.5"}
    assert "status.json unreadable (JSONDecodeError)" in damaged["2_lr=0.3"]["error"]
    assert "metrics.json unreadable (ValueError)" in damaged["3_lr=0.4"]["error"]  # JSON, but not an object
    assert "metrics.json unreadable (JSONDecodeError)" in damaged["4_lr=0.5"]["error"]
    assert all(r["overrides"] == f"lr=0.{i + 1} name='x, y'" for i, r in
               enumerate(sorted(rows, key=lambda r: Path(r["run"]).name)))


def test_the_sweep_summary_is_written_despite_damaged_jobs(sweep_dir, capsys):
    with pytest.raises(CommandExit) as stop:  # a job whose record is damaged did not complete
        sweep.write_summary(sweep_dir, "val_accuracy")
    assert stop.value.code == 1
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["jobs"] == 5 and summary["failed"] == 3
    assert Path(summary["best_run"]).name == "1_lr=0.2" and summary["best"]["val_accuracy"] == 0.8
    assert summary["best"]["experiment"] == "{'nested': True}" and summary["best"]["reference_accuracy"] is None
    with open(sweep_dir / "summary.csv") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["completed", "completed", "damaged", "damaged", "damaged"]
    captured = capsys.readouterr()
    assert "best: " in captured.out and "3 of 5 sweep jobs failed" in stop.value.message


def test_an_interrupted_sweep_knows_which_jobs_ran_whatever_their_values(tmp_path, monkeypatch, capsys):
    root = tmp_path / "multirun"
    make_run(root / "0_optimizer=adam", 0.7, ["optimizer=adam", *HARD])  # ran; 'optimizer=sgd' never did
    monkeypatch.setitem(sweep.CURRENT, "dir", str(root))
    assert sweep.summarize_interrupted(["optimizer=adam,sgd", *HARD]) == ["optimizer=sgd"]
    summary = json.loads((root / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["not_run"] == ["optimizer=sgd"] and summary["jobs"] == 1


def test_table_cells_are_text_not_markup(capsys):
    """Regression: an override like tags=[a,b] was read as rich markup and shown as 'tags='."""
    from cifarx.console import print_table

    print_table("t", ["job", "score"], [["tags=[a,b] x=[bold]y[/bold]", 0.5]])
    out = capsys.readouterr().out
    assert "tags=[a,b]" in out and "x=[bold]y[/bold]" in out


def test_a_path_without_runs_is_named_beside_the_table(tmp_path):
    from conftest import run_cli

    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "status.json").write_text('{"status": "completed", "command": "train"}')
    (run / "metrics.json").write_text('{"test_accuracy": 0.5}')
    (tmp_path / "empty").mkdir()
    result = run_cli(["compare", str(tmp_path / "runs"), str(tmp_path / "empty")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"no cifarx runs (status.json) under {tmp_path / 'empty'}" in result.stderr
