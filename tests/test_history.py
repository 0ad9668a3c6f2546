"""history.csv as Keras' CSVLogger writes it, read back for resume, evaluate and curves."""

from __future__ import annotations

from cifarx.run.rundir import read_history


def test_a_run_without_validation_reads_back_without_its_NA_columns(tmp_path):
    """CSVLogger adds val_* columns filled with "NA" when there is no validation split (split=none);
    reading them used to raise ValueError in resume and evaluate."""
    path = tmp_path / "history.csv"
    path.write_text("epoch,accuracy,learning_rate,loss,stage,val_accuracy,val_loss\n"
                    "0,0.25,0.001,2.1,1,NA,NA\n"
                    "1,0.5,0.001,1.5,1,NA,NA\n")
    history = read_history(path)
    assert history == {"epoch": [1.0, 2.0], "accuracy": [0.25, 0.5], "learning_rate": [0.001, 0.001],
                       "loss": [2.1, 1.5], "stage": [1.0, 1.0]}
    assert len(history["loss"]) == 2  # resume counts epochs from here


def test_no_history_is_an_empty_history(tmp_path):
    assert read_history(tmp_path / "missing.csv") == {}
