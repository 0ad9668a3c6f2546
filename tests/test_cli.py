"""The command line: help, dispatch, config inspection, and that start-up stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import compose, run_cli, write_batches_dir


def test_help_lists_every_command_without_importing_tensorflow():
    code = ("import sys; from cifarx.cli import main; main(['--help']); "
            "heavy = [m for m in ('tensorflow', 'keras', 'sklearn', 'matplotlib') if m in sys.modules]; "
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for command in ("train", "evaluate", "data", "extract", "classic", "predict", "compare"):
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
                                     "train, evaluate, data, extract, classic, predict, compare, export, search")


GROUPS = {"train": {"model", "optimizer", "schedule", "data", "split", "logger", "experiment", "hparams_search"},
          "classic": {"clf", "data", "logger", "experiment"}, "evaluate": set(), "extract": {"data"}, "data": {"data"}}


@pytest.mark.parametrize("command", sorted(GROUPS))
def test_each_commands_help_offers_only_its_own_groups_and_experiments(tmp_path, command):
    import re

    result = run_cli([command, "--help"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    section = result.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    listed = dict(line.split(": ", 1) for line in section.strip().splitlines())
    assert set(listed) == GROUPS[command] | {"hydra/launcher"}
    experiments = set(re.split(r",\s*", listed.get("experiment", ""))) - {""}
    if command == "train":
        assert "model" in listed and listed["model"] == "airbench, simple_cnn, vgg16, vgg19"
        assert {"seed_cnn_augment", "fast_cpu", "vgg19_frozen"} <= experiments
    if command == "classic":
        assert experiments == {"classic_knn", "classic_logreg", "classic_rf", "classic_svm"}
    assert not any(e.startswith("classic_") for e in experiments) or command == "classic"


@pytest.mark.parametrize("command, args, says", [
    ("train", ["experiment=classic_knn"], "experiment=classic_knn is a cifarx classic experiment; cifarx train's"),
    ("classic", ["experiment=seed_cnn_raw", "features=pixels"], "experiment=seed_cnn_raw is a cifarx train experiment"),
    ("classic", ["optimizer=sgd", "features=pixels"], "optimizer is not an option of cifarx classic; it belongs to cifarx train"),
])
def test_another_commands_option_fails_in_one_line_naming_the_command(tmp_path, command, args, says):
    result = run_cli([command, *args], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"cifarx {command}: error: {says}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


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


def test_a_library_caller_s_config_is_validated_and_a_cli_job_s_once(tmp_path, monkeypatch):
    """Validation runs once per command: pre-flight checks a CLI run's config and its Hydra job does
    not check it again; run_command called as a library (no pre-flight) checks it itself."""
    from cifarx.commands import registry
    from cifarx.errors import CommandExit
    from cifarx.run.lifecycle import run_command

    calls = []
    real = registry.validate
    monkeypatch.setattr(registry, "validate", lambda command, cfg: calls.append(command) or real(command, cfg))
    write_batches_dir(tmp_path / "d")
    result = run_cli(["data", f"data.root={tmp_path / 'd'}", f"data.cache_dir={tmp_path / 'c'}",
                      f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert calls == ["data"]  # pre-flight's; the job's was skipped
    calls.clear()  # a config Hydra composes from elsewhere (-cn/-cd, a rerun) was not pre-flighted: the job checks it
    result = run_cli(["data", "-cn", "data", f"data.root={tmp_path / 'd'}", f"data.cache_dir={tmp_path / 'c'}",
                      f"hydra.run.dir={tmp_path / 'run2'}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert calls == ["data", "data"]
    with pytest.raises(CommandExit) as stop:  # a library caller's bad config is refused by run_command itself
        run_command("data", lambda cfg, run: {}, compose("data", ["data.root=missing"]), run_dir=tmp_path / "lib")
    assert "data.root='missing' does not exist" in stop.value.message and calls == ["data", "data", "data"]


def test_tilde_and_home_expand_in_path_values(tmp_path):
    """The docs' commands write `data.root=~/...`: the shell leaves that '~' alone, cifarx expands it."""
    home = tmp_path / "home"
    write_batches_dir(home / "data")
    result = run_cli(["data", "data.root=~/data/cifar-10-batches-py", "data.cache_dir=$HOME/cache",
                      "hydra.run.dir=~/out"], cwd=tmp_path, env={"HOME": str(home)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert (home / "out" / "status.json").exists() and (home / "cache").is_dir()
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize("args", [["--data.root", "/x"], ["--data.root=/x"]])
def test_argparse_habits_get_the_key_value_form(tmp_path, args):
    result = run_cli(["train", *args], cwd=tmp_path)
    assert result.returncode == 2
    assert "cifarx takes key=value, not flags: data.root=/x" in result.stderr


def test_every_command_that_reads_data_takes_data_root_and_the_old_spelling_gets_a_hint(tmp_path):
    from conftest import compose

    moved = write_batches_dir(tmp_path / "moved")
    for command in ("evaluate", "extract"):
        cfg = compose(command, ["run=/somewhere", f"data.root={moved}"])
        assert cfg.data.root == str(moved)
    old = run_cli(["evaluate", "run=/somewhere", f"data_root={moved}"], cwd=tmp_path)
    assert old.returncode == 2 and f"data_root is now data.root: data.root={moved}" in old.stderr


def test_every_documented_command_with_a_tilde_passes_preflight(tmp_path, monkeypatch):
    """The `data.root=~/...` commands of README.md and docs/*.md, with those paths made under a fresh
    HOME: the shell leaves '~' alone there, cifarx expands it (and pre-flight finds the data)."""
    import re
    import shlex
    import shutil

    from cifarx.config.overrides import expand_paths, split_overrides
    from cifarx.config.preflight import preflight
    from conftest import REPO, write_image_dir, write_zip

    monkeypatch.setenv("HOME", str(tmp_path))
    made = {"cifar10-jpeg.zip": lambda p: shutil.move(write_zip(tmp_path / "z"), p),
            "fashion-mnist-png": lambda p: shutil.move(write_image_dir(tmp_path / "f"), p)}
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    commands = [line.split("#")[0].strip() for page in pages for line in page.read_text().splitlines()
                if re.match(r"\s*cifarx \w+ .*=~/", line)]
    assert len(commands) >= 3 and any("fashion-mnist-png" in command for command in commands)
    for command in commands:
        words = shlex.split(command)[1:]
        for word in words:
            if "=~/" in word:
                target = Path(word.split("=", 1)[1].replace("~", str(tmp_path), 1))
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    made[target.name](target)
        assert preflight(words[0], split_overrides(expand_paths(words[1:]))) is None, command


def test_path_expansion_covers_every_sweep_item_and_only_home():
    import os

    from cifarx.config.overrides import expand_paths

    home = os.path.expanduser("~")
    assert expand_paths(["data.root=~/a,~/b", "run=${HOME}/x", "run=$HOMEBREW/y", "seed=1"]) == [
        f"data.root={home}/a,{home}/b", f"run={home}/x", "run=$HOMEBREW/y", "seed=1"]


def test_suggestions_stay_within_a_known_section():
    from cifarx.config.suggest import closest

    keys = ["optimizer.learning_rate", "optimizer.rho", "optimizer.use_ema", "trainer.batch_size", "trainer.epochs"]
    assert closest("optimizer.lr", keys) == "optimizer.learning_rate"  # a habit from other tools
    assert closest("trainer.bs", keys) == "trainer.batch_size"
    assert closest("optimizer.beta9", keys) is None  # nothing close among its siblings: no nonsense


def test_a_typo_in_evaluates_own_data_section_is_a_typo_not_another_commands_key(tmp_path):
    result = run_cli(["evaluate", "run=/somewhere", "data.roots=/x"], cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown config key 'data.roots'; did you mean data.root?" in result.stderr


@pytest.mark.parametrize("flags", [["--cfg=job", "-p", "seed"], ["--cfg", "job", "-p", "seed"]])
def test_inspect_flags_in_either_argparse_form(tmp_path, flags):
    result = run_cli(["train", *flags], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"


def test_every_model_says_what_its_name_is():
    from cifarx.config.confdoc import meanings
    from conftest import compose

    for model in ("simple_cnn", "airbench", "vgg16", "vgg19"):
        cfg = compose("train", [f"model={model}"])
        meaning = meanings("train", {"model": model, "data": "normalize"})["model.name"]
        assert ("keras.applications" in meaning) == model.startswith("vgg"), (model, meaning)
        assert cfg.model.name == model


def test_the_deep_learning_stack_s_import_time_objects_are_out_of_the_collector_s_sight():
    """Every run's clear_session calls gc.collect(); with TensorFlow's ~450k import-time objects in
    sight each full collection took 0.25 s (and Python's own ones during training as much)."""
    import gc

    from cifarx.process import import_keras_quietly

    import_keras_quietly()  # done once per process: here by conftest, in the CLI by pre-flight
    assert gc.get_freeze_count() > 100_000
    gc.collect()
    assert gc.get_freeze_count() > 100_000  # a collection leaves them frozen


def test_a_command_puts_back_the_caller_s_logging_and_sigterm_handler(tmp_path):
    """Hydra configures logging for its job (console, the run's log file) and a run treats SIGTERM
    as Ctrl-C: a caller that runs a command in its own process (a library, a notebook, this test
    runner, which no longer restores anything of the kind) gets both back as it had them."""
    import io
    import logging
    import os
    import signal

    root = logging.getLogger()
    mine = logging.StreamHandler(io.StringIO())
    root.addHandler(mine)
    try:
        before = (list(root.handlers), root.level, logging.getLogger("tensorflow").level)
        sigterm = signal.getsignal(signal.SIGTERM)
        run = tmp_path / "run"
        result = run_cli(["data", f"data.root={write_batches_dir(tmp_path / 'data')}",
                          f"data.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"], cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        assert (list(root.handlers), root.level, logging.getLogger("tensorflow").level) == before
        if os.path.isdir("/proc/self/fd"):  # the run's log file is closed, not held open by this process
            held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                    if os.path.exists(f"/proc/self/fd/{fd}")]
            assert str(run / "data.log") not in held
        assert signal.getsignal(signal.SIGTERM) is sigterm
        logging.getLogger("caller").warning("a line of the caller's own, after the command")
        assert "data summary" in (run / "data.log").read_text()  # the run's log is complete ...
        assert "caller's own" not in (run / "data.log").read_text()  # ... and no longer the caller's
        assert "caller's own" in mine.stream.getvalue()
    finally:
        root.removeHandler(mine)
