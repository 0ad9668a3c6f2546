"""One epoch numbering, 1-based as people count, in history.csv, metrics.json, MLflow's steps, the
console, train.log and the curves, for new runs and for runs recorded before (0-based history.csv);
and Ctrl-C, as a person sees it on a terminal."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from conftest import REPO, run_cli, tiny_train_overrides, write_batches_dir

try:  # the SQLite MLflow store test_tracking makes cheaply (fixtures), and its helpers
    from test_tracking import _logger, _runs, migrated_db, store  # noqa: F401
except pytest.skip.Exception:  # no mlflow: the tests that need it are skipped, the others run
    _logger = _runs = None

    @pytest.fixture
    def store():
        pytest.skip("mlflow is not installed")

pytestmark = pytest.mark.slow

BAR = "━"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("epochs")
    return write_batches_dir(tmp / "data"), tmp / "cache"


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def _best_row_epoch(rows: list[dict[str, str]]) -> int:
    """The epoch of the first row with the highest val_accuracy (the one best.keras holds)."""
    values = [float(r["val_accuracy"]) for r in rows]
    return int(rows[values.index(max(values))]["epoch"])


def _curve_epochs(history: dict) -> list[float]:
    import matplotlib.pyplot as plt

    from cifarx.plots import curves_figure

    fig = curves_figure(history)
    try:
        return [float(x) for x in fig.axes[0].lines[0].get_xdata()]
    finally:
        plt.close(fig)


def test_history_metrics_mlflow_console_and_log_count_epochs_from_1(tmp_path, data, store):
    from cifarx.run.rundir import read_history

    uri, _ = store
    out = tmp_path / "run"
    result = run_cli(["train", *tiny_train_overrides(*data, epochs=3), "optimizer.learning_rate=0.01",
                      *_logger(uri), f"hydra.run.dir={out}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = _rows(out)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["best_epoch"] == _best_row_epoch(rows)
    assert read_history(out / "history.csv")["epoch"] == [1.0, 2.0, 3.0]
    assert _curve_epochs(read_history(out / "history.csv")) == [1.0, 2.0, 3.0]
    client, runs = _runs(uri)
    steps = {key: [m.step for m in client.get_metric_history(runs[0].info.run_id, key)]
             for key in ("epoch_loss", "epoch_val_accuracy", "epoch_time")}
    assert steps == {key: [1, 2, 3] for key in steps}
    for text in (result.stderr, (out / "train.log").read_text()):  # "epoch k/3" is history.csv's row k
        assert re.findall(r"epoch (\d)/3 ", text) == ["1", "2", "3"]


def test_a_run_recorded_0_based_resumes_into_one_1_based_history(tmp_path, data, store, monkeypatch):
    """A run recorded before 1-based epochs (CSVLogger's 0-based column, MLflow from step 0) resumes:
    its history.csv is renumbered, so the rows appended never make a mixed file, and its MLflow run
    goes on with the numbering it has (MLflow cannot move logged points)."""
    import keras

    from cifarx.run.rundir import read_history
    from cifarx.tracking.hooks import Tracker
    from cifarx.training.callbacks import HistoryCSV

    uri, _ = store
    out = tmp_path / "old"
    with monkeypatch.context() as old_cifarx:
        old_cifarx.setattr(HistoryCSV, "on_epoch_end", keras.callbacks.CSVLogger.on_epoch_end)
        old_cifarx.setattr(Tracker, "first_step", 0)
        first = run_cli(["train", *tiny_train_overrides(*data, epochs=2), "optimizer.learning_rate=0.01",
                         *_logger(uri), f"hydra.run.dir={out}"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    old_lines = (out / "history.csv").read_text().splitlines()
    assert [r["epoch"] for r in _rows(out)] == ["0", "1"]  # as cifarx wrote it before
    assert read_history(out / "history.csv")["epoch"] == [1.0, 2.0]  # and read 1-based
    assert json.loads((out / "metrics.json").read_text())["best_epoch"] == _best_row_epoch(_rows(out)) + 1

    resumed = run_cli(["train", f"resume={out}", "trainer.epochs=3"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = _rows(out)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]  # one numbering, not 0, 1, 3
    new_lines = (out / "history.csv").read_text().splitlines()
    assert [line.split(",", 1)[1] for line in new_lines[:3]] == [line.split(",", 1)[1] for line in old_lines]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["best_epoch"] == _best_row_epoch(rows)
    client, runs = _runs(uri)
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "epoch_loss")] == [0, 1, 2]


RECORDED = sorted(p.parent for p in (REPO / "results").glob("*/history.csv"))


@pytest.mark.parametrize("run", RECORDED, ids=[p.name for p in RECORDED])
def test_every_recorded_run_reads_right(run):
    """The runs under results/ were recorded with a 0-based history.csv: they still read (resume,
    evaluate, curves) as 1-based, and their best row is best_epoch (seed_cnn_raw: 108, not 107)."""
    from cifarx.run.history import one_based
    from cifarx.run.rundir import read_history, reconcile_history

    metrics = json.loads((run / "metrics.json").read_text())
    history = read_history(run / "history.csv")
    n = metrics["epochs"]
    assert history["epoch"] == [float(e) for e in range(1, n + 1)] and len(history["loss"]) == n
    assert reconcile_history(run, write=False) == n  # what a resume counts (and nothing is written)
    lines = (run / "history.csv").read_text().splitlines(keepends=True)
    renumbered = list(csv.DictReader(io.StringIO("".join(one_based(lines)))))
    assert [int(r["epoch"]) for r in renumbered] == list(range(1, n + 1))  # what a resume rewrites it to
    assert [line.split(",", 1)[1] for line in one_based(lines)] == [line.split(",", 1)[1] for line in lines]
    if history.get("val_accuracy") and metrics.get("evaluated_checkpoint") == "best":
        assert _best_row_epoch(renumbered) == metrics["best_epoch"]
        values = history["val_accuracy"]
        assert history["epoch"][values.index(max(values))] == metrics["best_epoch"]
    assert _curve_epochs(history)[0] == 1.0 and _curve_epochs(history)[-1] == n


def test_results_seed_cnn_raw_best_epoch_is_its_best_row():
    from cifarx.run.rundir import read_history

    run = REPO / "results" / "seed_cnn_raw"
    if not run.exists():
        pytest.skip("no results/seed_cnn_raw")
    history = read_history(run / "history.csv")
    best = history["val_accuracy"].index(max(history["val_accuracy"]))
    assert history["epoch"][best] == json.loads((run / "metrics.json").read_text())["best_epoch"] == 108


def test_ctrl_c_mid_epoch_removes_the_bar_and_ends_with_the_resume_line(tmp_path, data, monkeypatch):
    """Ctrl-C during epoch 2 of a run drawn on an (emulated) terminal: no bar is left, the last line
    says what was kept and how to continue, it is printed once, and train.log has it too."""
    pyte = pytest.importorskip("pyte")
    from rich.console import Console

    from cifarx import console
    from cifarx.training import callbacks

    raw = io.StringIO()
    terminal = Console(file=raw, force_terminal=True, width=80, height=60, color_system=None, highlight=False,
                       soft_wrap=True)
    monkeypatch.setattr(console, "_ERR", terminal)
    monkeypatch.setattr(console, "is_interactive", lambda: True)
    monkeypatch.setattr(callbacks, "is_interactive", lambda: True)

    class CtrlCInEpoch2(callbacks.LiveProgress):
        async_safe = False  # batch hooks on the main thread, where Ctrl-C lands

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            super().on_epoch_begin(epoch, logs)

        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch, logs)
            if self.epoch == 1:  # the first step of epoch 2 is done
                self._progress.refresh()  # drawn now, not at the next tick of rich's refresh thread
                raise KeyboardInterrupt

    monkeypatch.setattr(callbacks, "LiveProgress", CtrlCInEpoch2)
    out = tmp_path / "run"
    result = run_cli(["train", *tiny_train_overrides(*data, epochs=3), "trainer.batch_size=8",
                      "trainer.steps_per_execution=1", f"hydra.run.dir={out}"], cwd=tmp_path)
    assert result.returncode == 130, result.stderr[-2000:]
    assert BAR in raw.getvalue()  # a bar was drawn (and cut short)

    screen = pyte.Screen(400, 60)  # wide enough for the whole line: rich leaves it unwrapped
    pyte.Stream(screen).feed(raw.getvalue().replace("\n", "\r\n"))
    lines = [line.rstrip() for line in screen.display if line.strip()]
    assert not any(BAR in line for line in lines), "\n".join(lines)
    expected = (f"cifarx train: interrupted; kept 1 finished epoch (last.keras) in {out}; "
                f"continue with: cifarx train resume={out}")
    start = max(i for i, line in enumerate(lines) if line.startswith("cifarx train: interrupted"))
    assert " ".join(line.strip() for line in lines[start:]) == expected, "\n".join(lines)  # the last line(s)
    # broken between words at the terminal's width (a single word longer than it, a path, stays whole)
    assert all(len(line) <= 80 or " " not in line.strip() for line in lines[start:])
    assert sum(line.startswith("cifarx train: interrupted") for line in lines) == 1  # not printed again by the log
    assert re.findall(r"epoch (\d)/3 ", "\n".join(lines)) == ["1"]  # epoch 2 never finished
    log = (out / "train.log").read_text()
    assert log.count(expected) == 1 and log.rstrip().endswith(expected)
    assert json.loads((out / "status.json").read_text())["status"] == "interrupted"


def test_live_lines_leave_room_for_the_echoed_ctrl_c(monkeypatch):
    """A terminal echoes "^C" after the cursor: on a bar as wide as the terminal it wraps onto a new
    line, erasing the bar then erases that line, and the bar stayed on screen (seen in tmux)."""
    from rich.console import Console
    from rich.progress import BarColumn, TextColumn

    from cifarx import console

    monkeypatch.setattr(console, "_ERR", Console(file=io.StringIO(), force_terminal=True, width=80, color_system=None))
    bar = console.live_bar(TextColumn("{task.description}"), BarColumn(bar_width=None), transient=True)
    bar.add_task("epoch 3/5 (steps by 8)", total=10)
    with console.err_console().capture() as drawn:
        console.err_console().print(bar.get_renderable())
    widths = [len(line) for line in drawn.get().splitlines()]
    assert widths and max(widths) <= 80 - console.ECHO_MARGIN


def test_an_error_mid_epoch_clears_the_bar_before_it_is_reported(tmp_path, data, monkeypatch):
    """Keras skips on_train_end when an exception escapes fit: the bar was left drawn (and its
    refresh thread running) above the error."""
    pyte = pytest.importorskip("pyte")
    from rich.console import Console

    from cifarx import console
    from cifarx.training import callbacks

    raw = io.StringIO()
    monkeypatch.setattr(console, "_ERR", Console(file=raw, force_terminal=True, width=80, height=60,
                                                 color_system=None, highlight=False, soft_wrap=True))
    monkeypatch.setattr(console, "is_interactive", lambda: True)
    monkeypatch.setattr(callbacks, "is_interactive", lambda: True)

    class BrokenInEpoch1(callbacks.LiveProgress):
        async_safe = False

        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch, logs)
            self._progress.refresh()
            raise RuntimeError("a bug in the middle of an epoch")

    monkeypatch.setattr(callbacks, "LiveProgress", BrokenInEpoch1)
    result = run_cli(["train", *tiny_train_overrides(*data, epochs=2), "trainer.batch_size=8",
                      "trainer.steps_per_execution=1", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert result.returncode == 1 and BAR in raw.getvalue()
    screen = pyte.Screen(400, 60)
    pyte.Stream(screen).feed(raw.getvalue().replace("\n", "\r\n"))
    assert not any(BAR in line for line in screen.display)


def test_ctrl_c_before_a_run_begins_is_one_line(tmp_path, monkeypatch):
    import cifarx.cli

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cifarx.cli, "preflight", interrupted)
    result = run_cli(["train", "trainer.epochs=1"], cwd=tmp_path)
    assert result.returncode == 130
    assert result.stderr.strip() == "cifarx: interrupted before any run began; nothing was written"
