"""`cifarx predict` and `cifarx.load(run)`: the same predictions as `evaluate`, the run's class
order, unreadable files skipped (exit status 3), classic runs through their chain, bad input refused."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, write_image_dir

pytestmark = pytest.mark.slow

# Image folders index classes in code-point order: Zebra=0, apple=1, mango=2. Written in another
# order, and sorted case-insensitively in a third: only the run's record gives the right names.
CLASSES = ["mango", "Zebra", "apple"]
INDEXED = ["Zebra", "apple", "mango"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A simple_cnn that separates three colours (a few seconds), with flip test-time augmentation."""
    tmp = tmp_path_factory.mktemp("predict")
    images = write_image_dir(tmp / "data", train_per_class=20, test_per_class=5, classes=CLASSES)
    run = tmp / "train"
    result = run_cli(["train", f"data.root={images}", f"data.cache_dir={tmp / 'cache'}", "trainer.epochs=4",
                      "trainer.batch_size=8", "model.filters=[4,8,8]", "optimizer=adam", "optimizer.learning_rate=0.01",
                      "schedule=constant", "tta=flip", f"hydra.run.dir={run}"], cwd=tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    return tmp, images, run


@pytest.fixture(scope="module")
def predicted(trained):
    tmp, images, run = trained
    out = tmp / "predicted"
    result = run_cli(["predict", f"run={run}", f"source={images / 'test'}", f"hydra.run.dir={out}", "figures=true"],
                     cwd=tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    return out, result


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_files(images: Path) -> list[Path]:
    """test/'s files in the order load_dataset reads them: class by class in the run's order, sorted."""
    return [p for c in INDEXED for p in sorted((images / "test" / c).iterdir())]


test_files.__test__ = False  # a helper, not a test


def test_predict_agrees_with_evaluate_on_the_same_images(trained, predicted):
    from omegaconf import OmegaConf

    from cifarx.data import load_dataset
    from cifarx.evaluation import predict_proba
    from cifarx.models import load_model

    tmp, images, run = trained
    out, _ = predicted
    evaluated = tmp / "evaluated"
    result = run_cli(["evaluate", f"run={run}", f"hydra.run.dir={evaluated}"], cwd=tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tta"] == "flip" == json.loads((evaluated / "metrics.json").read_text())["tta"]  # the run's own
    rows = {r["path"]: r for r in read_csv(out / "predictions.csv")}
    assert len(rows) == metrics["predicted"] == 15 and metrics["skipped"] == 0

    with open(evaluated / "confusion_matrix.csv") as f:  # evaluate's predicted classes: the matrix's columns
        header, *matrix = list(csv.reader(f))
    column_sums = np.array([[int(v) for v in row[1:]] for row in matrix]).sum(axis=0)
    assert dict(zip(header[1:], column_sums.tolist())) == metrics["counts"]

    data = load_dataset(OmegaConf.load(run / "config.yaml").data, 42)  # image by image, as evaluate predicts them
    proba = predict_proba(load_model(run / "model.keras"), data.x_test, 256, "flip")
    files = test_files(images)
    assert len(files) == len(proba)
    for path, p in zip(files, proba):
        row = rows[str(path)]
        assert row["label"] == INDEXED[int(p.argmax())]
        top = np.sort(p)[::-1]
        got = [float(row["probability"]), float(row["probability_2"]), float(row["probability_3"])]
        np.testing.assert_allclose(got, top, atol=2e-6)
        assert [row["label"], row["label_2"], row["label_3"]] == [INDEXED[i] for i in np.argsort(-p, kind="stable")]


def test_predictions_name_the_classes_in_the_runs_order(trained, predicted):
    out, result = predicted
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["class_names"] == INDEXED and metrics["top_k"] == 3  # 5 capped at the class count
    rows = read_csv(out / "predictions.csv")
    assert list(rows[0]) == ["path", "label", "probability", "label_2", "probability_2", "label_3", "probability_3"]
    right = [r["label"] == Path(r["path"]).parent.name for r in rows]  # the folder is the true class
    assert sum(right) >= 12, rows  # three colours: the model separates them; a mixed-up order would not
    assert (out / "contact_sheet.png").stat().st_size > 0
    assert read_csv(out / "skipped.csv") == []
    assert json.loads((out / "status.json").read_text())["status"] == "completed"
    assert "images per predicted class" in result.stdout and "Zebra" in result.stdout


def _bad_files(folder: Path, good: list[Path]) -> dict[str, str]:
    """Unreadable files of every kind in ``folder`` (next to copies of ``good``): {name: why}."""
    from PIL import Image

    folder.mkdir(parents=True)
    for path in good:
        shutil.copy(path, folder / f"{path.parent.name}_{path.name}")
    (folder / "notes.txt").write_text("not an image")
    (folder / "fake.png").write_text("not a PNG either")
    (folder / "empty.png").write_bytes(b"")
    jpeg = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(jpeg, "JPEG")
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    with open(folder / "huge.png", "wb") as f:  # sparse: its size is refused before a byte is read
        f.truncate(65 << 20)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "large.png")
    (folder / ".DS_Store").write_bytes(b"\0")  # hidden: left out, as training leaves it out
    return {"notes.txt": "is not an image file", "fake.png": "is not a readable image", "empty.png": "is empty",
            "truncated.jpg": "is not a readable image", "huge.png": "over the 64.0 MiB limit",
            "large.png": "is 40x40, not 32x32; set data.other_sizes=pad"}


def test_unreadable_files_are_skipped_listed_and_exit_status_3(trained, tmp_path):
    import cifarx

    _, images, run = trained
    good = sorted((images / "test" / "apple").iterdir())[:2]
    folder = tmp_path / "mixed"
    bad = _bad_files(folder, good)
    from PIL import Image

    grey = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)
    Image.fromarray(grey).save(folder / "grey.png")  # grayscale: predicted as its RGB copy
    out = tmp_path / "out"
    result = run_cli(["predict", f"run={run}", f"source={folder}", f"hydra.run.dir={out}"], cwd=tmp_path)
    assert result.returncode == 3, result.stderr[-2000:]
    skipped = {Path(r["path"]).name: r["reason"] for r in read_csv(out / "skipped.csv")}
    assert set(skipped) == set(bad)
    for name, why in bad.items():
        assert why in skipped[name], (name, skipped[name])
        assert sum("skipped: " in ln and name in ln for ln in result.stderr.splitlines()) == 1
    rows = read_csv(out / "predictions.csv")
    assert sorted(Path(r["path"]).name for r in rows) == ["apple_" + good[0].name, "apple_" + good[1].name, "grey.png"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["files"], metrics["predicted"], metrics["skipped"], metrics["hidden"]) == (9, 3, 6, 1)
    assert json.loads((out / "status.json").read_text())["status"] == "completed"
    rgb = cifarx.load(run).predict(np.repeat(grey[:, :, None], 3, axis=2))
    row = next(r for r in rows if r["path"].endswith("grey.png"))
    assert row["label"] == rgb.labels[0] and float(row["probability"]) == pytest.approx(rgb.confidence[0], abs=2e-6)


def test_a_source_with_nothing_readable_fails_in_one_line_and_leaves_no_run(trained, tmp_path):
    _, _, run = trained
    folder = tmp_path / "bad"
    _bad_files(folder, [])
    result = run_cli(["predict", f"run={run}", f"source={folder}"], cwd=tmp_path)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"cifarx predict: error: nothing readable in source='{folder}': all 6 files skipped")
    assert not (tmp_path / "outputs").exists()  # the run's folder went, and the outputs/predict/ it made


@pytest.mark.parametrize("case", ["missing run", "not a run", "another command's run", "no source",
                                  "missing source", "glob matching nothing", "an unreadable image"])
def test_bad_run_or_source_is_one_line_before_any_run_directory(trained, tmp_path, case):
    _, images, run = trained
    other = tmp_path / "data_run"
    other.mkdir()
    (other / "config.yaml").write_text("seed: 1\n")
    (other / "status.json").write_text('{"command": "data", "status": "completed"}')
    (tmp_path / "notes.png").write_text("hello")
    source = f"source={images / 'test'}"
    args, expected = {
        "missing run": ([f"run={tmp_path / 'nope'}", source], "does not exist"),
        "not a run": ([f"run={images}", source], "is not a cifarx run directory"),
        "another command's run": ([f"run={other}", source], "is a 'data' run; predict needs a 'train' or 'classic' run"),
        "no source": ([f"run={run}"], "no source given"),
        "missing source": ([f"run={run}", f"source={tmp_path / 'nope'}"], "does not exist; give an image, a folder"),
        "glob matching nothing": ([f"run={run}", f"source={images}/*.gif"], "matches no files"),
        "an unreadable image": ([f"run={run}", f"source={tmp_path / 'notes.png'}"], "is not a readable image"),
    }[case]
    result = run_cli(["predict", *args], cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("cifarx predict: error: ") and expected in result.stderr, result.stderr
    assert not (tmp_path / "outputs").exists()


def test_a_classic_run_predicts_through_its_feature_model_and_pipeline(trained, tmp_path):
    import joblib

    tmp, images, run = trained
    extract, classic = tmp_path / "extract", tmp_path / "classic"
    for args in (["extract", f"run={run}", f"hydra.run.dir={extract}"],
                 ["classic", "clf=logreg", f"features={extract}", f"hydra.run.dir={classic}"]):
        result = run_cli(args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "predicted"
    result = run_cli(["predict", f"run={classic}", f"source={images / 'test'}", f"hydra.run.dir={out}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run_kind"] == "classic" and metrics["features"] == str(extract) and metrics["tta"] == "none"
    # the chain by hand: the test images' features as extract wrote them, then the fitted pipeline
    expected = joblib.load(classic / "pipeline.joblib").predict_proba(np.load(extract / "features_test.npy"))
    rows = {r["path"]: r for r in read_csv(out / "predictions.csv")}
    for path, p in zip(test_files(images), expected):
        assert rows[str(path)]["label"] == INDEXED[int(p.argmax())]
        assert float(rows[str(path)]["probability"]) == pytest.approx(p.max(), abs=1e-4)

    copied = tmp_path / "copied"  # a pipeline cifarx did not sign: refused before it is unpickled
    shutil.copytree(classic, copied)
    meta = json.loads((copied / "pipeline.json").read_text())
    (copied / "pipeline.json").write_text(json.dumps({**meta, "signature": "0" * 64}))
    result = run_cli(["predict", f"run={copied}", f"source={images / 'test'}"], cwd=tmp_path)
    assert result.returncode == 2 and "refusing to unpickle" in result.stderr.strip().splitlines()[-1]


def test_load_predicts_what_the_command_wrote(trained, predicted, tmp_path):
    import subprocess
    import sys

    import cifarx

    _, images, run = trained
    out, _ = predicted
    rows = read_csv(out / "predictions.csv")
    predictor = cifarx.load(run)
    assert predictor.class_names == INDEXED and predictor.tta == "flip"
    by_paths = predictor.predict([r["path"] for r in rows])
    assert by_paths.paths == [r["path"] for r in rows] and by_paths.labels == [r["label"] for r in rows]
    np.testing.assert_allclose(by_paths.confidence, [float(r["probability"]) for r in rows], atol=2e-6)
    indices, proba = by_paths.top(3)
    np.testing.assert_allclose(proba[:, 2], [float(r["probability_3"]) for r in rows], atol=2e-6)
    assert by_paths.counts() == json.loads((out / "metrics.json").read_text())["counts"]

    from PIL import Image

    x = np.stack([np.asarray(Image.open(r["path"])) for r in rows])  # the same pixels as an array
    by_array = predictor.predict(x)
    assert by_array.labels == by_paths.labels and by_array.paths is None
    np.testing.assert_allclose(by_array.proba, by_paths.proba, atol=1e-6)
    assert predictor.predict(str(images / "test")).labels == by_paths.labels  # a source, as the command takes

    from cifarx.errors import DataError

    with pytest.raises(DataError, match="uint8 RGB of shape"):
        predictor.predict(x.astype(np.float32) / 255)
    (tmp_path / "fake.png").write_text("not a PNG")
    with pytest.raises(DataError, match="fake.png' is not a readable image"):
        predictor.predict([rows[0]["path"], str(tmp_path / "fake.png")])
    partial = predictor.predict([rows[0]["path"], str(tmp_path / "fake.png")], skip_unreadable=True)
    assert partial.paths == [rows[0]["path"]] and [p for p, _ in partial.skipped] == [str(tmp_path / "fake.png")]
    light = subprocess.run([sys.executable, "-c", "import cifarx, sys; cifarx.__version__; "
                            "print(sorted(m for m in ('tensorflow', 'keras', 'sklearn') if m in sys.modules))"],
                           capture_output=True, text=True, check=True)
    assert light.stdout.strip() == "[]"  # cifarx.load is imported on first use
