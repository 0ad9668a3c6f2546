"""The command line: help, dispatch, config inspection, and that start-up stays light."""

from __future__ import annotations

import subprocess
import sys

from conftest import run_cli


def test_help_lists_every_command_without_importing_tensorflow():
    code = ("import sys; from cifarx.cli import main; main(['--help']); "
            "heavy = [m for m in ('tensorflow', 'keras', 'sklearn', 'matplotlib') if m in sys.modules]; "
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for command in ("train", "evaluate", "data", "extract", "classic", "compare"):
        assert f"  {command} " in out
    assert "HEAVY []" in out


def test_cfg_job_prints_the_composed_config_with_overrides(tmp_path):
    result = run_cli(["train", "--cfg", "job", "trainer.epochs=3", "data=augment"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "epochs: 3" in result.stdout
    assert "enabled: true" in result.stdout  # data=augment turned augmentation on
    assert not (tmp_path / "outputs").exists()  # inspecting never creates a run directory


def test_experiment_reproduces_the_report_settings(tmp_path):
    from conftest import compose

    cfg = compose("train", ["experiment=seed_cnn_augment"])
    assert cfg.trainer.epochs == 140 and cfg.trainer.batch_size == 64
    assert cfg.data.normalize == "zscore" and cfg.data.augment.enabled
    assert cfg.data.augment.shift == 0.125 and cfg.data.augment.flip
    assert cfg.data.val_fraction == 0.2
    raw = compose("train", ["experiment=seed_cnn_raw"])
    assert raw.data.normalize == "none" and not raw.data.augment.enabled


def test_unknown_command_is_one_line(tmp_path):
    result = run_cli(["trian"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("cifarx: error: unknown command 'trian'; choose one of: "
                                     "train, evaluate, data, extract, classic, compare")


def test_command_help_is_hydras(tmp_path):
    result = run_cli(["train", "--help"], cwd=tmp_path)
    assert result.returncode == 0
    assert "model: airbench, simple_cnn, vgg16, vgg19" in result.stdout


def test_help_into_a_closed_pipe_is_not_a_traceback(tmp_path):
    """`cifarx --help | head -1`: the reader leaves early (regression: BrokenPipeError traceback)."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)
    result = subprocess.run([sys.executable, "-m", "cifarx.cli", "--help"], stdout=write_end,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    os.close(write_end)
    assert result.returncode == 0
    assert "Traceback" not in result.stderr
