"""Run directories: cifarx removes only what it made, and one process owns a directory at a time.

In-process (cli.main before Hydra starts, run_command with an explicit directory): no training.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cifarx.errors import CommandExit
from conftest import CLASSES, compose

SRC = str(Path(__file__).resolve().parents[1] / "src")


def run_cli_inprocess(args, capsys) -> tuple[int, str]:
    from cifarx.cli import main

    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def small_images(root: Path, size: int = 28) -> Path:
    from PIL import Image

    for split in ("train", "test"):
        for cls in CLASSES[:2]:
            (root / split / cls).mkdir(parents=True)
            Image.new("RGB", (size, size)).save(root / split / cls / "0.png")
    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_existing_folder_with_a_user_file_survives_a_failed_run(tmp_path, capsys):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("years of work")
    data = small_images(tmp_path / "small")
    code, err = run_cli_inprocess(["train", f"hydra.run.dir={user}", f"data.root={data}",
                                   f"data.cache_dir={tmp_path / 'cache'}"], capsys)
    assert code == 2
    assert err.count("error:") == 1 and "already holds files cifarx did not make" in err and "thesis.tex" in err
    assert snapshot(user) == {"thesis.tex": b"years of work"}  # not even a lock file was left


def test_empty_run_dir_value_is_refused_and_the_current_directory_kept(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("x")
    code, err = run_cli_inprocess(["train", "hydra.run.dir="], capsys)
    assert code == 2 and "hydra.run.dir is empty" in err
    assert (tmp_path / "keep.txt").read_text() == "x"


def test_evaluate_into_its_own_source_run_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 1\n")
    (run / "status.json").write_text(json.dumps({"status": "completed", "command": "train"}))
    (run / "model.keras").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty but valid zip
    before = snapshot(run)
    code, err = run_cli_inprocess(["evaluate", f"run={run}", f"hydra.run.dir={run}"], capsys)
    assert code == 2 and "already holds files cifarx did not make" in err
    assert snapshot(run) == before


def _fail_after_writing(cfg, run):
    from cifarx.errors import DataError

    run.write_text("partial.txt", "half")
    (run.path / "user_dropped_this.txt").write_text("not cifarx's")
    raise DataError("data.root='x' is broken")


def test_early_failure_removes_exactly_what_the_run_made(tmp_path, capsys):
    from cifarx.run.lifecycle import run_command

    cfg = compose("data", [])
    fresh = tmp_path / "fresh"
    with pytest.raises(CommandExit) as exc:
        run_command("data", _fail_after_writing, cfg, run_dir=fresh)
    assert exc.value.code == 2
    assert "data.root='x' is broken" in exc.value.message
    assert snapshot(fresh) == {"user_dropped_this.txt": b"not cifarx's"}  # ours gone, theirs kept

    existing = tmp_path / "existing_empty"
    existing.mkdir()
    with pytest.raises(CommandExit):
        run_command("data", lambda cfg, run: _fail_after_writing(cfg, run), cfg, run_dir=existing)
    assert existing.is_dir() and snapshot(existing) == {"user_dropped_this.txt": b"not cifarx's"}


def test_a_new_run_dir_is_removed_entirely_after_an_early_failure(tmp_path):
    from cifarx.errors import DataError
    from cifarx.run.lifecycle import run_command

    def fail(cfg, run):
        run.write_json("x.json", {})
        raise DataError("bad")

    fresh = tmp_path / "new"
    with pytest.raises(CommandExit):
        run_command("data", fail, compose("data", []), run_dir=fresh)
    assert not fresh.exists()

    deep = tmp_path / "outputs" / "data" / "first"  # a first run: outputs/ and outputs/data/ are made too
    with pytest.raises(CommandExit):
        run_command("data", fail, compose("data", []), run_dir=deep)
    assert not (tmp_path / "outputs").exists()

    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "user.txt").write_text("theirs")
    with pytest.raises(CommandExit):
        run_command("data", fail, compose("data", []), run_dir=tmp_path / "kept" / "made" / "run")
    assert snapshot(tmp_path / "kept") == {"user.txt": b"theirs"}  # what the claim made is gone, the rest stays


def test_a_first_run_in_hydra_s_default_folder_that_fails_leaves_no_empty_outputs(tmp_path):
    """Regression: the data failing inside the job left outputs/train/ behind, empty (Hydra makes
    outputs/<command>/<time>/ itself, so the run's claim saw its parents as existing)."""
    from conftest import run_cli

    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    failed = run_cli(["train", f"data.root={tmp_path / 'broken.zip'}"], cwd=tmp_path)
    assert failed.returncode == 2 and "is not a zip file" in failed.stderr.lower()
    assert not (tmp_path / "outputs").exists()

    (tmp_path / "outputs" / "mine").mkdir(parents=True)  # a folder the user had: it stays, with what is in it
    assert run_cli(["train", f"data.root={tmp_path / 'broken.zip'}"], cwd=tmp_path).returncode == 2
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["mine"]


def _hold_lock(path: Path) -> subprocess.Popen:
    code = ("import sys, time; from cifarx.run.ownership import claim_run_dir; claim_run_dir(sys.argv[1]); "
            "print('held', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": SRC})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_two_runs_on_one_directory_the_second_refuses_and_a_killed_owner_frees_it(tmp_path, capsys):
    from cifarx.run.rundir import require_run

    shared = tmp_path / "shared"
    owner = _hold_lock(shared)
    try:
        code, err = run_cli_inprocess(["data", f"hydra.run.dir={shared}"], capsys)
        assert code == 2
        assert f"is in use by another cifarx process (pid {owner.pid})" in err
        # A run the owner left 'running' reads as running while it lives ...
        (shared / "config.yaml").write_text("seed: 1\n")
        (shared / "status.json").write_text(json.dumps({"status": "running", "command": "train"}))
        (shared / "last.keras").write_bytes(b"PK\x05\x06" + b"\0" * 18)
        with pytest.raises(Exception, match="is still running"):
            require_run(shared, "train", needs=("last.keras",))
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    # ... and, once its process is gone (SIGKILL: no chance to clean up), as stopped, with the cure.
    with pytest.raises(Exception, match=r"stopped without finishing \(process gone\); finish it with: cifarx train resume="):
        require_run(shared, "train", needs=("last.keras",))
    from cifarx.run.ownership import claim_run_dir, release_run_dir

    claim_run_dir(shared, resuming=True)  # the stale lock does not block a resume
    release_run_dir(shared)


def test_compare_shows_a_dead_running_run_as_stopped(tmp_path):
    from cifarx.commands.compare import table

    run = tmp_path / "r"
    run.mkdir()
    (run / "status.json").write_text(json.dumps({"status": "running", "command": "train"}))
    (run / ".cifarx.lock").write_text("123\n")
    assert table([tmp_path])[0]["status"] == "stopped"


def test_a_run_directory_deleted_during_the_run_is_not_recreated(tmp_path, capsys):
    import shutil

    from cifarx.run.lifecycle import run_command

    def vanish(cfg, run):
        shutil.rmtree(run.path)
        run.write_metrics({"test_accuracy": 1.0})

    target = tmp_path / "gone"
    with pytest.raises(CommandExit) as exc:
        run_command("data", vanish, compose("data", []), run_dir=target)
    assert exc.value.code == 2
    assert "was deleted while the run was working" in exc.value.message
    assert not target.exists()


def test_resume_path_with_equals_commas_spaces_is_passed_verbatim(tmp_path):
    from cifarx.cli import hydra_quote
    from cifarx.run.rundir import resume_hint

    odd = str(tmp_path / "multirun" / "0_optimizer=adam,schedule=step" / "é x'y")
    cfg = compose("train", [f"resume={hydra_quote(odd)}"])
    assert cfg.resume == odd
    import shlex

    words = shlex.split(resume_hint(Path(odd)))
    assert words[:2] == ["cifarx", "train"] and words[2] == f"resume={odd}"
