"""One line for every bad input: damaged files, library-only limits, untrusted pickles.

In-process: preflight, run_command with an explicit directory, or the loaders themselves.
"""

from __future__ import annotations

import json
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from cifarx.errors import CommandExit
from conftest import CLASSES, compose, write_batches_dir


def preflight(command, overrides):
    from cifarx.cli import preflight as check  # importing cifarx.cli registers the resolvers

    return check(command, overrides)


def fake_run(path: Path, command: str, status: str = "completed", **files: bytes) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("seed: 1\n")
    (path / "status.json").write_text(json.dumps({"status": status, "command": command}))
    for name, data in files.items():
        (path / name.replace("__", ".")).write_bytes(data)
    return path


def truncated_keras(tmp_path) -> bytes:
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.save(tmp_path / "whole.keras")
    data = (tmp_path / "whole.keras").read_bytes()
    return data[: len(data) // 2]


def test_truncated_keras_is_one_line_in_evaluate_extract_and_resume(tmp_path):
    from cifarx.errors import RunError
    from cifarx.models import load_model

    half = truncated_keras(tmp_path)
    run = fake_run(tmp_path / "run", "train", best__keras=half, last__keras=half, model__keras=half, history__csv=b"epoch,loss\n0,1\n")
    for command, overrides in (("evaluate", [f"run={run}"]), ("extract", [f"run={run}"]),
                               ("extract", [f"model_path={run / 'best.keras'}"]),
                               ("train", [f"resume={run}"])):
        message = preflight(command, overrides)
        assert message and "is damaged or not a Keras model file" in message and "\n" not in message, (command, message)
        assert "File not found" not in message
    with pytest.raises(RunError, match="damaged"):
        load_model(run / "best.keras")


def test_a_zip_that_is_not_a_model_is_one_line(tmp_path):
    import zipfile

    from cifarx.errors import RunError
    from cifarx.models import load_model

    with zipfile.ZipFile(tmp_path / "odd.keras", "w") as zf:
        zf.writestr("config.json", "{ broken")
    with pytest.raises(RunError, match="cannot load model"):
        load_model(tmp_path / "odd.keras")


@pytest.mark.parametrize("seed", ["-1", str(2**32), str(2**63)])
def test_seed_outside_numpys_range(seed):

    for command in ("train", "data", "classic"):
        extra = ["features=pixels"] if command == "classic" else []
        message = preflight(command, [f"seed={seed}", *extra])
        assert message == f"seed={seed} must be an integer in [0, 4294967295]", (command, message)


def _classic(tmp_path, capsys, *overrides):
    from cifarx.commands.classic import run_classic
    from cifarx.run.lifecycle import run_command

    root = write_batches_dir(tmp_path / "d")
    cfg = compose("classic", ["features=pixels", f"data.root={root}", f"data.cache_dir={tmp_path / 'c'}", *overrides])
    out = tmp_path / "out"
    with pytest.raises(CommandExit) as exc:
        run_command("classic", run_classic, cfg, run_dir=out)
    assert exc.value.code == 2
    err = capsys.readouterr().err + exc.value.message
    assert err.count("error:") == 1 and "Traceback" not in err
    assert not out.exists()  # nothing half-written
    return err


def test_pca_larger_than_the_data(tmp_path, capsys):
    err = _classic(tmp_path, capsys, "pca=500")
    assert "pca=500 is more components than the data has" in err and "choose pca <= 80" in err


def test_n_neighbors_larger_than_the_data(tmp_path, capsys):
    err = _classic(tmp_path, capsys, "clf=knn", "clf.estimator.n_neighbors=1000")
    assert "clf.estimator.n_neighbors=1000 is more than the 80 training samples" in err


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@pytest.mark.parametrize("size", [(60000, 60000), (3000, 3000)])
def test_decompression_bomb_and_oversized_images_are_refused_undecoded(size):
    from cifarx.data.sources import decode_image
    from cifarx.errors import DataError

    with pytest.raises(DataError) as exc:
        decode_image(_png_header_only(*size), "train/cat/bomb.png")
    assert "bomb.png" in str(exc.value) and ("decompression bomb" in str(exc.value) or "not 32x32" in str(exc.value))


def test_compare_and_sweep_summary_survive_a_damaged_run(tmp_path, capsys):
    from cifarx.commands.compare import main, table

    good = fake_run(tmp_path / "good", "train", metrics__json=json.dumps({"val_accuracy": 0.5}).encode())
    fake_run(tmp_path / "bad_status", "train")
    (tmp_path / "bad_status" / "status.json").write_text('{"status": "comp')
    fake_run(tmp_path / "bad_metrics", "train", metrics__json=b"[1, 2")
    rows = {Path(r["run"]).name: r for r in table([tmp_path])}
    assert rows["good"]["val_accuracy"] == 0.5 and rows["good"]["status"] == "completed"
    assert rows["bad_status"]["status"] == "damaged" and "status.json unreadable" in rows["bad_status"]["error"]
    assert rows["bad_metrics"]["status"] == "damaged" and "metrics.json unreadable" in rows["bad_metrics"]["error"]
    assert main([str(tmp_path)]) == 0
    assert good.exists()


# -- untrusted pickles ----------------------------------------------------------------------------

class _Payload:
    """Unpickling this creates a file: stands for any code a crafted pickle runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_crafted_pipeline_pickle_is_refused_before_it_executes(tmp_path):
    from cifarx.commands.classic import load_pipeline, pipeline_signature
    from cifarx.errors import RunError

    marker = tmp_path / "pwned"
    run = fake_run(tmp_path / "classic_run", "classic", pipeline__joblib=pickle.dumps(_Payload(marker)))
    meta = {"dim": 4, "class_names": CLASSES}
    (run / "pipeline.json").write_text(json.dumps(meta))
    with pytest.raises(RunError, match="cifarx did not write it on this machine.*trust_pipeline=true"):
        load_pipeline(str(run), 4, CLASSES)
    # A forger who copies the file's hash into pipeline.json still lacks this machine's key.
    digest, _ = pipeline_signature(run / "pipeline.joblib")
    (run / "pipeline.json").write_text(json.dumps({**meta, "sha256": digest, "signature": "0" * 64}))
    with pytest.raises(RunError, match="refusing to unpickle"):
        load_pipeline(str(run), 4, CLASSES)
    assert not marker.exists()


def test_own_pipeline_loads_and_a_damaged_one_is_one_line(tmp_path):
    import joblib
    from sklearn.dummy import DummyClassifier

    from cifarx.commands.classic import load_pipeline, pipeline_signature
    from cifarx.errors import RunError

    run = fake_run(tmp_path / "c", "classic")
    joblib.dump(DummyClassifier().fit(np.zeros((10, 4)), np.arange(10)), run / "pipeline.joblib")
    digest, signature = pipeline_signature(run / "pipeline.joblib")
    (run / "pipeline.json").write_text(json.dumps({"dim": 4, "class_names": CLASSES, "sha256": digest,
                                                   "signature": signature}))
    model, _ = load_pipeline(str(run), 4, CLASSES)
    assert model.predict(np.zeros((1, 4))).shape == (1,)
    data = (run / "pipeline.joblib").read_bytes()
    (run / "pipeline.joblib").write_bytes(data[: len(data) // 2])
    with pytest.raises(RunError, match="contents changed since cifarx wrote it"):
        load_pipeline(str(run), 4, CLASSES)
    with pytest.raises(RunError, match="cannot load .*damaged"):
        load_pipeline(str(run), 4, CLASSES, trust=True)


@pytest.mark.parametrize("path", ["/tmp/données", "/tmp/x(1)", "/tmp/a=b,c"])
def test_paths_that_need_quoting_say_how(path):
    message = preflight("train", [f"data.root={path}"])
    assert message.startswith(f"cannot parse the override data.root={path}")
    assert f"\"data.root='{path}'\"" in message
    quoted = preflight("train", [f"data.root='{path}'"])
    assert quoted.startswith(f"data.root='{path}' does not exist")  # quoted as told, it parses
