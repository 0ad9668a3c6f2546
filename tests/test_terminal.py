"""The training display as a person sees it: rich's console on an emulated 80-column terminal."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from conftest import compose, write_batches_dir

pyte = pytest.importorskip("pyte")

pytestmark = pytest.mark.slow

BAR = "━"


def test_live_progress_leaves_one_clean_line_per_epoch_and_never_mixes_with_log_lines(tmp_path, monkeypatch):
    from rich.console import Console

    from cifarx import console
    from cifarx.commands.train import run_train
    from cifarx.run.lifecycle import run_command
    from cifarx.training import callbacks

    raw = io.StringIO()
    terminal = Console(file=raw, force_terminal=True, width=80, height=60, color_system=None, highlight=False,
                       soft_wrap=True)
    monkeypatch.setattr(console, "_ERR", terminal)
    monkeypatch.setattr(callbacks, "is_interactive", lambda: True)
    handler = console.ConsoleHandler()
    logger = logging.getLogger("cifarx")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # setLevel, not the attribute: it clears the logger's isEnabledFor cache
    root = write_batches_dir(tmp_path / "data", train_per_class=16)
    cfg = compose("train", [f"data.root={root}", f"data.cache_dir={tmp_path / 'c'}", "model.filters=[4,8,8]",
                            "trainer.epochs=3", "trainer.batch_size=8", "trainer.steps_per_execution=4"])
    try:
        run_command("train", run_train, cfg, run_dir=tmp_path / "run")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

    # rich lays out 80 columns; the emulated screen is a little wider because pyte wraps a full-width
    # line at once, where terminals wait for the next character (so "\r" returns to the same line)
    screen = pyte.Screen(120, 60)
    pyte.Stream(screen).feed(raw.getvalue().replace("\n", "\r\n"))
    lines = [line.rstrip() for line in screen.display if line.strip()]
    assert not any(BAR in line for line in lines), "a progress bar was left on screen"
    summaries = [line for line in lines if re.match(r"epoch \d+/3 ", line)]
    assert [s.split()[1] for s in summaries] == ["1/3", "2/3", "3/3"], "\n".join(lines)  # one line per epoch, in order
    # at 80 columns the short form (acc, val_acc): it fits without wrapping (tests/test_screen.py)
    assert all(re.fullmatch(r"epoch \d/3 {2}loss [\d.]+ {2}acc(uracy)? .*s", s) for s in summaries), summaries
    assert any(line.startswith("model: simple_cnn") for line in lines)  # log lines intact, on their own lines
    frames = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw.getvalue())
    steps = -(-json.loads((tmp_path / "run" / "metrics.json").read_text())["train_count"] // 8)
    bar_counts = [(int(n), int(total)) for n, total in re.findall(r"[━╸╺]\s+(\d+)/(\d+)", frames)]
    assert bar_counts and {total for _, total in bar_counts} == {steps}
    assert all(n <= total for n, total in bar_counts)  # never 64/63
    assert "(steps by 4)" in frames  # it says the bar advances in chunks
