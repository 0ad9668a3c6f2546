"""`cifarx export`: every format whose runtime is installed, run by that runtime alone, answers as
Keras does; a parity failure and a missing extra are one line; the benchmark; and the MLflow model
a tracked train run logs, served by a real `mlflow models serve`."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import urllib.request
import warnings
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from conftest import run_cli, write_batches_dir
from helpers import free_port, wait_for_health

mlflow = pytest.importorskip("mlflow")

pytestmark = pytest.mark.slow

REGISTERED = "cifarx_test_cnn"


def _installed(fmt: str) -> bool:
    from cifarx.commands.export import missing_runtime

    return missing_runtime(fmt) is None


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny simple_cnn trained for 2 short epochs (it predicts several classes), tracked in an
    embedded MLflow store that registers its model; and the Keras model's test predictions."""
    from omegaconf import OmegaConf

    from cifarx.data import load_dataset
    from cifarx.models import load_model

    tmp = tmp_path_factory.mktemp("export")
    root = write_batches_dir(tmp / "data", train_per_class=30, test_per_class=5)
    uri = f"sqlite:///{tmp / 'store' / 'mlflow.db'}"
    run = tmp / "train"
    result = run_cli(["train", f"data.root={root}", f"data.cache_dir={tmp / 'cache'}", "model.filters=[4,8,8]",
                      "trainer.epochs=2", "trainer.batch_size=8", "trainer.score_train=false", f"hydra.run.dir={run}",
                      "logger=mlflow", f"logger.tracking_uri={uri}", f"logger.register_as={REGISTERED}"], cwd=tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    data = load_dataset(OmegaConf.load(run / "config.yaml").data, 42)
    proba = load_model(run / "model.keras").predict(data.x_test, verbose=0)
    assert len(set(proba.argmax(axis=1))) > 2  # top-1 agreement means something
    return tmp, run, uri, data, proba


@pytest.fixture(scope="module")
def exported(trained):
    """Every installed format, exported in one run."""
    tmp, run, *_ = trained
    out = tmp / "all"
    result = run_cli(["export", f"run={run}", "format=all", f"hydra.run.dir={out}"], cwd=tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    return out, json.loads((out / "export.json").read_text())


def _run_independently(fmt: str, path: Path, x: np.ndarray) -> np.ndarray:
    """The exported file run with its runtime's own API, no cifarx code involved."""
    if fmt == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))  # held: its functions need its variables alive
        return loaded.serve(tf.constant(x)).numpy()
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (inp,) = session.get_inputs()  # the image batch and nothing else
        return session.run(None, {inp.name: x})[0]
    if fmt == "litert":
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter
        with warnings.catch_warnings():  # the fallback, deprecated in TensorFlow's favour of ai-edge-litert, says so
            warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated", category=UserWarning)
            interpreter = Interpreter(model_path=str(path))
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    import openvino as ov

    return np.asarray(ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(x)[0])


@pytest.mark.parametrize("fmt", ["saved_model", "onnx", "litert", "openvino"])
def test_each_format_run_by_its_own_runtime_answers_as_keras(trained, exported, fmt):
    if not _installed(fmt):
        pytest.skip(f"{fmt}'s runtime is not installed")
    _, run, _, data, keras_proba = trained
    out, record = exported
    check = record["formats"][fmt]["parity"]
    assert check["passed"] and check["agreement"] >= 0.999 and check["images"] == len(data.y_test) == 50
    assert abs(check["accuracy"] - check["keras_accuracy"]) <= 0.001
    assert check["keras_accuracy"] == pytest.approx(json.loads((run / "metrics.json").read_text())["test_accuracy"])
    path = out / record["formats"][fmt]["files"][0]
    proba = _run_independently(fmt, path, data.x_test)
    assert proba.shape == (50, 10) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)  # probabilities
    np.testing.assert_array_equal(proba.argmax(axis=1), keras_proba.argmax(axis=1))
    np.testing.assert_allclose(proba, keras_proba, atol=1e-4)


def test_the_export_run_records_what_a_deployer_needs(trained, exported):
    tmp, run, _, data, _ = trained
    out, record = exported
    assert json.loads((out / "class_names.json").read_text()) == data.class_names
    assert (out / "labels.txt").read_text().splitlines() == data.class_names
    assert record["input"] == {"name": "image", "shape": [-1, 32, 32, 3], "dtype": "uint8", "range": [0, 255],
                               "layout": "NHWC, RGB"}
    assert record["output"]["shape"] == [-1, 10] and record["softmax_added"] is False  # simple_cnn ends in softmax
    assert record["source_run"] == str(run) and record["versions"]["keras"]
    assert set(record["formats"]) | set(record["skipped"]) == {"saved_model", "onnx", "litert", "openvino"}
    for fmt, problem in record["skipped"].items():
        assert f"pip install 'cifarx[{fmt}]'" in problem
    assert json.loads((out / "status.json").read_text())["status"] == "completed"
    assert not list(out.glob(".export-*"))  # no temporary folder left


def test_float_input_is_rounded_to_the_stored_uint8_inside_the_model(trained, tmp_path):
    tmp, run, _, data, keras_proba = trained
    out = tmp_path / "float"
    fmt = "onnx" if _installed("onnx") else "saved_model"  # onnx: a wrapped model Keras has not called yet
    result = run_cli(["export", f"run={run}", f"format={fmt}", "input_dtype=float32", f"hydra.run.dir={out}"],
                     cwd=tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((out / "export.json").read_text())
    assert record["input"]["dtype"] == "float32"
    noisy = data.x_test.astype(np.float32) + np.float32(0.3)  # rounds back to the stored pixels
    proba = _run_independently(fmt, out / record["formats"][fmt]["files"][0], noisy)
    np.testing.assert_allclose(proba, keras_proba, atol=1e-5)


def test_a_head_that_ends_in_logits_gets_a_softmax():
    import keras

    from cifarx.commands.export import serving_model

    image = keras.Input((4, 4, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(image)
    logits = keras.layers.Dense(5)(keras.layers.Flatten()(x))
    model = keras.Model(image, logits)
    serving, added = serving_model(model)
    x = np.random.default_rng(0).integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(model(x)))
    assert added and np.allclose(serving.predict(x, verbose=0), expected, atol=1e-6)
    assert serving_model(keras.Model(image, keras.layers.Softmax()(logits)))[1] is False


def test_an_exact_gelu_exports_to_onnx(tmp_path):
    """Keras' exact GELU (airbench's activation) is TensorFlow's Erfc, which tf2onnx cannot convert alone."""
    if not _installed("onnx"):
        pytest.skip("onnx's runtime is not installed")
    import keras
    import onnxruntime as ort

    from cifarx.commands.export import serving_model, write_format
    from cifarx.run.rundir import RunDir

    image = keras.Input((4, 4, 3), dtype="uint8")
    x = keras.layers.Dense(6, activation="gelu")(keras.layers.Rescaling(1 / 64)(image))
    model = keras.Model(image, keras.layers.Dense(5, activation="softmax")(keras.layers.Flatten()(x)))
    run = RunDir(tmp_path)
    (path,) = write_format(serving_model(model)[0], "onnx", run)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).integers(0, 256, (7, 4, 4, 3), dtype=np.uint8)
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: x})[0],
                               model.predict(x, verbose=0), atol=1e-5)


def test_a_mixed_precision_model_is_exported_in_float32(tmp_path):
    import keras

    from cifarx.commands.export import serving_model, write_format
    from cifarx.models import float32_model
    from cifarx.run.rundir import RunDir

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        image = keras.Input((4, 4, 3), dtype="uint8")
        x = keras.layers.Conv2D(3, 3, activation="relu")(keras.layers.Rescaling(1 / 255)(image))
        model = keras.Model(image, keras.layers.Dense(5, activation="softmax", dtype="float32")(
            keras.layers.Flatten()(x)))
    finally:
        keras.config.set_dtype_policy(before)
    clone, trained = float32_model(model)
    assert trained == "mixed_bfloat16" and {layer.dtype_policy.name for layer in clone.layers} == {"float32"}
    for a, b in zip(model.get_weights(), clone.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert float32_model(clone) == (clone, None)
    fmt = "onnx" if _installed("onnx") else "saved_model"  # ONNX refuses a model in another policy
    (path,) = write_format(serving_model(clone)[0], fmt, RunDir(tmp_path))
    x = np.random.default_rng(0).integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    np.testing.assert_allclose(_run_independently(fmt, path, x), clone.predict(x, verbose=0), atol=1e-5)


def test_a_parity_failure_fails_the_export_in_one_line(trained, tmp_path, monkeypatch):
    import cifarx.commands.export

    tmp, run, *_ = trained
    real = cifarx.commands.export.open_runtime

    def shuffled(fmt, path):  # every image's classes moved by one: no top-1 agrees
        predict = real(fmt, path)
        return lambda x: np.roll(predict(x), 1, axis=1)

    monkeypatch.setattr(cifarx.commands.export, "open_runtime", shuffled)
    out = tmp_path / "bad"
    result = run_cli(["export", f"run={run}", "format=saved_model", f"hydra.run.dir={out}"], cwd=tmp)
    assert result.returncode == 2
    (line,) = [ln for ln in result.stderr.splitlines() if "error" in ln]  # after the progress lines
    assert line.startswith("cifarx export: error: parity check failed: saved_model: top-1 agreement with Keras 0.0000"
                           " < parity.min_agreement=0.999 (50 of 50 test images differ)"), line
    assert str(out) in line
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "failed" and "parity check failed" in status["error"]
    assert json.loads((out / "export.json").read_text())["formats"]["saved_model"]["parity"]["passed"] is False
    assert (out / "saved_model").is_dir() and not (out / "metrics.json").exists()  # kept for inspection


def test_a_format_that_cannot_run_fails_the_export_after_the_others(trained, tmp_path, monkeypatch):
    import cifarx.commands.export

    tmp, run, *_ = trained
    real = cifarx.commands.export.open_runtime

    def broken(fmt, path):
        if fmt == "litert":
            raise ValueError("no delegate for this op")
        return real(fmt, path)

    monkeypatch.setattr(cifarx.commands.export, "open_runtime", broken)
    out = tmp_path / "broken"
    result = run_cli(["export", f"run={run}", "format=all", "parity.images=8", f"hydra.run.dir={out}"], cwd=tmp)
    assert result.returncode == 2
    (line,) = [ln for ln in result.stderr.splitlines() if "cifarx export: error" in ln]
    assert line.startswith("cifarx export: error: export failed: litert: ") and "no delegate for this op" in line
    record = json.loads((out / "export.json").read_text())
    assert set(record["failed"]) == {"litert"} and record["formats"]["saved_model"]["parity"]["passed"]
    assert json.loads((out / "status.json").read_text())["status"] == "failed"


def test_a_missing_extra_is_one_line_naming_the_install_command(trained, tmp_path, monkeypatch):
    from cifarx.commands.export import FORMATS

    tmp, run, *_ = trained
    monkeypatch.setitem(FORMATS, "onnx", dataclasses.replace(FORMATS["onnx"], needs=("onnx", "cifarx_absent_runtime")))
    out = tmp_path / "missing"
    result = run_cli(["export", f"run={run}", "format=onnx", f"hydra.run.dir={out}"], cwd=tmp)
    assert result.returncode == 2
    assert result.stderr.strip() == ("cifarx export: error: format=onnx needs cifarx_absent_runtime, which is not "
                                     "installed: pip install 'cifarx[onnx]'")
    assert not out.exists()  # refused before the run directory was made
    bad = run_cli(["export", f"run={run}", "format=tflite"], cwd=tmp)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "cifarx export: error: invalid value for 'format': Invalid value 'tflite', expected one of "
        "[saved_model, onnx, litert, openvino, all]")


def test_the_benchmark_has_a_row_per_format_and_keras(trained, tmp_path, monkeypatch):
    from cifarx.commands.export import FORMATS

    tmp, run, *_ = trained
    monkeypatch.setitem(FORMATS, "openvino", dataclasses.replace(FORMATS["openvino"], needs=("cifarx_absent_runtime",)))
    out = tmp_path / "bench"
    result = run_cli(["export", f"run={run}", "benchmark=true", "parity.images=16", "timing.warmup=1",
                      "timing.calls=3", "timing.batches=1", "timing.batch_size=8", f"hydra.run.dir={out}"], cwd=tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    bench = json.loads((out / "benchmark.json").read_text())
    rows = {row["format"]: row for row in bench["rows"]}
    timed = ["keras", *(f for f in ("saved_model", "onnx", "litert") if _installed(f))]
    assert list(rows) == [*timed, "openvino"] and bench["cpu"]["cpu"]
    for fmt in timed:
        row = rows[fmt]
        assert row["size_mb"] > 0 and row["agreement"] >= 0.999 and 0 <= row["accuracy"] <= 1
        assert 0 < row["latency_ms_median"] <= row["latency_ms_p90"] and row["images_per_second"] > 0
        assert row["status"] == ("reference" if fmt == "keras" else "ok")
    assert rows["openvino"]["status"] == "not installed: pip install 'cifarx[openvino]'"
    table = (out / "benchmark.md").read_text().splitlines()
    assert table[0].startswith("CPU: ") and table[2].startswith("| format | file | size (MB) |")
    assert [ln.split("|")[1].strip() for ln in table[4:]] == list(rows)
    assert "batch-8 images/s" in result.stdout and "keras" in result.stdout


def test_export_help_explains_every_key(tmp_path):
    result = run_cli(["export", "--help"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [ln.split(None, 3) for ln in result.stdout.split("== Config ==")[1].splitlines() if ln.startswith("  ")]
    assert rows and [r[0] for r in rows if len(r) < 4] == []


def test_the_logged_mlflow_model_is_served_with_keras_answers(trained):
    tmp, run, uri, data, keras_proba = trained
    metrics = json.loads((run / "metrics.json").read_text())
    client = mlflow.MlflowClient(uri)
    model = client.get_logged_model(metrics["mlflow_model_id"])
    assert model.source_run_id == metrics["mlflow_run_id"] and model.status.to_proto() == 2  # READY
    (version,) = client.search_model_versions(f"name='{REGISTERED}'")
    assert version.source == model.artifact_location and version.run_id == model.source_run_id
    info = mlflow.models.Model.load(Path(urlparse(model.artifact_location).path) / "MLmodel")
    assert info.signature.inputs.to_dict()[0]["tensor-spec"] == {"dtype": "uint8", "shape": (-1, 32, 32, 3)}
    assert info.saved_input_example_info["type"] == "ndarray"

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{REGISTERED}/1",
                               "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for_health(f"http://127.0.0.1:{port}", server, 120, "mlflow models serve")
        images = data.x_test[:3]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                         data=json.dumps({"inputs": images.tolist()}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            served = np.asarray(json.loads(response.read())["predictions"])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert served.shape == (3, 10)
    np.testing.assert_array_equal(served.argmax(axis=1), keras_proba[:3].argmax(axis=1))
    np.testing.assert_allclose(served, keras_proba[:3], atol=1e-5)


def test_register_as_needs_a_logged_model(trained, tmp_path):
    tmp, _, uri, *_ = trained
    root = next((tmp / "data").iterdir())
    result = run_cli(["train", f"data.root={root}", "logger=mlflow", f"logger.tracking_uri={uri}",
                      "logger.log_model=false", "logger.register_as=x"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("cifarx train: error: logger.register_as=x registers the logged model: it "
                                     "needs logger.log_model=true")

