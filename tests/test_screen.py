"""What a person sees, at 80 and at 160 columns: a start line before the heavy imports, a bar for
every long phase, epoch lines and tables that fit without wrapping, pipes that are never wrapped.

A real tiny training goes through the real CLI, its stderr drawn on an emulated terminal (pyte).
No test measures time: the start line is checked to come before TensorFlow's import, not by when.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CLASSES, cli_in_process, write_batches_dir, write_zip

pyte = pytest.importorskip("pyte")

BAR = "━"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _terminal(width: int, soft_wrap: bool):
    from rich.console import Console

    raw = io.StringIO()
    return raw, Console(file=raw, force_terminal=True, width=width, height=60, color_system=None, highlight=False,
                        soft_wrap=soft_wrap)


@pytest.fixture
def watched(monkeypatch):
    """A person watching: stderr (log lines, bars) and stdout (tables) are terminals of the width
    given; returns ``screen(width) -> (stderr raw, stdout raw)``."""
    from cifarx import console
    from cifarx.training import callbacks

    def screen(width: int):
        err_raw, err = _terminal(width, soft_wrap=True)  # as cifarx.console makes them on a terminal
        out_raw, out = _terminal(width, soft_wrap=False)
        monkeypatch.setattr(console, "_ERR", err)
        monkeypatch.setattr(console, "console", lambda: out)
        monkeypatch.setattr(console, "is_interactive", lambda: True)
        monkeypatch.setattr(callbacks, "is_interactive", lambda: True)
        return err_raw, out_raw

    return screen


def _render(raw: str, width: int) -> list[str]:
    """The lines left on an emulated terminal. It is wider than the console rich lays out (pyte
    wraps a full-width line at once, where terminals wait for the next character, which would
    throw rich's cursor moves off), so a line too long for ``width`` shows whole: the callers
    check that none is."""
    screen = pyte.Screen(width + 100, 400)
    pyte.Stream(screen).feed(raw.replace("\n", "\r\n"))
    return [line.rstrip() for line in screen.display if line.strip()]


@pytest.mark.slow
def test_a_real_training_fits_the_terminal_without_wrapping(tmp_path, watched):
    """A real run on an 80-column terminal (epoch lines and tables at 160 columns: the tests below)."""
    width = 80
    err_raw, out_raw = watched(width)
    root = write_batches_dir(tmp_path / "data", train_per_class=16)
    result = cli_in_process(["train", f"data.root={root}", f"data.cache_dir={tmp_path / 'cache'}",
                             "model.filters=[4,8,8]", "trainer.epochs=3", "trainer.batch_size=8",
                             "trainer.eval_batch_size=8", "figures=true", f"hydra.run.dir={tmp_path / 'run'}"],
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    lines = _render(err_raw.getvalue(), width)
    assert lines[0] == "cifarx train: loading TensorFlow and the data ...", lines[:3]
    # nothing the terminal would wrap, but a path longer than the terminal (on a line of its own: it copies whole)
    too_long = [line for line in lines if len(line) >= width and len(line.split()) > 1]
    assert not too_long, f"lines that wrap at {width} columns:\n" + "\n".join(too_long)
    assert any(line.startswith("  ") for line in lines)  # long log lines (here the schedule's note) broke at spaces
    assert not any(BAR in line for line in lines), "a progress bar was left on screen"
    epochs = [line for line in lines if "loss " in line]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"], "\n".join(lines)  # no continuation lines
    assert all(" acc " in line and "val_acc " in line and "accuracy" not in line for line in epochs), epochs
    full = (tmp_path / "run" / "train.log").read_text()
    assert full.count("val_accuracy ") == 3  # the log file keeps the full form whatever the terminal's width

    frames = ANSI.sub("", err_raw.getvalue())
    # scoring and figures counted on a bar, as the epochs are
    for split, images in (("train", 128), ("val", 32), ("test", 40)):  # counting images, up to every one
        assert re.search(rf"scoring {split}\s+[━╸╺ ]+\s*{images}/{images}", frames), f"no bar while scoring {split}"
    assert re.search(r"writing figures\s+[━╸╺ ]+\s*\d+/4", frames), "no bar while writing figures"
    assert "scoring train (" in frames and "writing the report" in frames  # the one-line summaries stay

    tables = _render(out_raw.getvalue(), width)
    assert not [line for line in tables if len(line) > width], "\n".join(tables)
    header = next(line for line in tables if "┃" in line and " 0 " in line)
    # numbered columns; each row's label says which class its number is
    assert re.search(r"0\s+┃\s+1\s+┃", header) and "columns: the classes numbered as the rows" in tables
    assert all(re.search(rf"│ {i} {name}\s", "\n".join(tables)) for i, name in enumerate(CLASSES)), tables


def test_a_wide_terminal_shows_the_matrix_with_every_class_name_whole(watched):
    from cifarx import console

    _, out_raw = watched(160)
    console.print_matrix("confusion matrix (test)", CLASSES, [[i + j for j in range(10)] for i in range(10)])
    tables = _render(out_raw.getvalue(), 160)
    assert not [line for line in tables if len(line) > 160], "\n".join(tables)
    header = next(line for line in tables if "┃" in line and "airplane" in line)
    assert all(name in header for name in CLASSES), header  # full names, not "airpl"/"autom"
    assert "columns: the classes numbered as the rows" not in "\n".join(tables)


@pytest.mark.parametrize("width, whole", [(80, False), (160, True)])
def test_epoch_lines_shorten_to_fit_and_log_files_keep_every_name(width, whole):
    from cifarx.console import epoch_line

    logs = {"loss": 12.34567, "accuracy": 0.5, "val_loss": 2.3456, "val_accuracy": 0.178}
    line = epoch_line("[finetune] epoch 100/100", logs, 1e-3, 1234.5)
    shown = line.fit(width)
    assert len(shown) < width and shown.startswith("[finetune] epoch 100/100 ")
    assert ("val_accuracy 0.1780" in shown) == whole and "val_acc" in shown
    assert str(line) == ("[finetune] epoch 100/100  loss 12.3457  accuracy 0.5000  val_loss 2.3456  "
                         "val_accuracy 0.1780  lr 1.00e-03  1234.5s")
    assert len(line.fit(30)) <= len(line.fit(60)) <= len(line.fit(80))  # narrower still: it drops, never wraps


def test_decoding_an_image_zip_counts_the_images_on_a_bar(tmp_path, watched, monkeypatch):
    from cifarx.data import image_folders

    err_raw, _ = watched(80)
    monkeypatch.setattr(image_folders, "DECODE_BLOCK", 8)
    raw = image_folders.load_zip(write_zip(tmp_path, train_per_class=3, test_per_class=2))
    assert len(raw.y_train) == 30
    frames = ANSI.sub("", err_raw.getvalue())
    assert re.search(r"decoding train \(30 images\)\s+[━╸╺ ]+\s*\d+/30", frames), frames
    assert "decoding test (20 images)" in frames
    assert not [line for line in _render(err_raw.getvalue(), 80) if BAR in line]  # gone when done


def test_work_that_cannot_count_shows_a_spinner_and_leaves_nothing(tmp_path, watched):
    from cifarx.console import working

    err_raw, _ = watched(80)
    with working("fitting svm"):
        pass
    assert "fitting svm" in ANSI.sub("", err_raw.getvalue())
    assert _render(err_raw.getvalue(), 80) == []


def test_help_and_cfg_print_no_start_line_and_a_sweep_prints_one(tmp_path, watched):
    err_raw, out_raw = watched(80)
    for args in (["train", "--help"], ["train", "--cfg", "job"], ["classic", "--cfg", "job"]):
        result = cli_in_process(args, cwd=tmp_path)
        assert result.returncode == 0 and "loading" not in err_raw.getvalue() + result.stderr, args
    result = cli_in_process(["train", "-m", "optimizer.learning_rate=-1,-2"], cwd=tmp_path)  # refused in pre-flight
    assert result.returncode == 2
    assert ANSI.sub("", err_raw.getvalue()).count("cifarx train: loading") == 1


def test_no_start_line_off_a_terminal(tmp_path):
    """CI and log files: the errors' one-line contract holds (the start line is for a person watching)."""
    result = cli_in_process(["train", "optimizer.learning_rate=-1"], cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr


PROBE = """
import os, sys
tty = os.dup(2)  # cifarx points fd 2 at /dev/null while TensorFlow loads: report on a copy

class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow":
            os.write(tty, b"<<tensorflow imported>>\\r\\n")
            sys.meta_path.remove(self)
        return None

sys.meta_path.insert(0, Watch())
from cifarx.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_the_start_line_is_on_screen_before_tensorflow_is_imported(tmp_path):
    """A real process on a real (pseudo-)terminal: the start line comes first, then TensorFlow
    loads (pre-flight imports Keras to check the optimizer; this learning rate is refused there)."""
    import pty

    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update({"KERAS_BACKEND": "tensorflow", "COLUMNS": "80"})
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, str(probe), "train", "optimizer.learning_rate=-1"], cwd=tmp_path,
                                env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    finally:
        os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=300) == 2
    text = ANSI.sub("", b"".join(chunks).decode(errors="replace"))
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    assert "<<tensorflow imported>>" in lines, lines  # else the probe saw nothing and proves nothing
    assert lines[0] == "cifarx train: loading TensorFlow and the data ...", lines
    assert lines.index("<<tensorflow imported>>") > 0
    assert lines[-1].startswith("cifarx train: error: optimizer.learning_rate=-1")
    assert "cuInit" not in text  # no native CUDA error line from TensorFlow's import on a machine without a GPU


def _run(folder: Path, val: float) -> Path:
    folder.mkdir(parents=True)
    (folder / "status.json").write_text(json.dumps({"status": "completed", "command": "train", "seconds": 3.0}))
    (folder / "metrics.json").write_text(json.dumps({"train_accuracy": val, "val_accuracy": val,
                                                     "test_accuracy": val, "seconds": 2.5, "epochs": 1}))
    return folder


def test_tables_piped_to_a_file_are_never_wrapped(tmp_path):
    long = "a_folder_name_long_enough_that_a_path_passes_any_terminal_width_" * 3
    for name, val in (("one", 0.5), ("two", 0.6)):
        _run(tmp_path / "runs" / name / long / "run", val)
    result = cli_in_process(["compare", str(tmp_path / "runs")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if long in line]
    assert len(rows) == 2 and all(f"{name}/{long}/run" in line for line, name in zip(rows, ("two", "one"))), \
        result.stdout  # each path whole, on its own line
    assert "runs under" in result.stdout.splitlines()[0]  # the title on one line too

    from cifarx import console

    out = io.StringIO()
    sys_stdout, sys.stdout = sys.stdout, out  # not a terminal: a pipe
    try:
        console.print_matrix("matrix", [f"{c}_{long}" for c in CLASSES], [[1] * 10] * 10)
    finally:
        sys.stdout = sys_stdout
    assert all(f"{c}_{long}" in out.getvalue().splitlines()[2] for c in CLASSES)  # full names, in one header line
