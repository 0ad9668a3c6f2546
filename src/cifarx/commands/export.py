"""`cifarx export`: a train run's model as a SavedModel, ONNX, LiteRT or OpenVINO file, checked
against Keras on the run's test split, and with ``benchmark=true`` timed on this CPU.

The exported model takes what the Keras model takes, uint8 NHWC images (float32 0..255 with
``input_dtype=float32``), and returns class probabilities: preprocessing is a layer of every
cifarx model, and a softmax is added where the head ends in logits. Keras' ``model.export``
writes each file; each file is then run by its own runtime (never by Keras), so the parity check
covers what a server would run.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from cifarx.config.validate import validate_data
from cifarx.errors import RunError, one_line, require
from cifarx.run.rundir import RunDir, hardware, package_versions, read_json, require_run

log = logging.getLogger("cifarx")

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Format:
    keras: str  # model.export's name for it
    file: str  # what model.export writes into the run directory (OpenVINO adds model.bin beside)
    needs: tuple[str, ...]  # modules that export and run it
    extra: str  # pip install 'cifarx[<extra>]' brings them
    runtime: str  # the distribution that runs it (its version goes into export.json)


FORMATS = {
    "saved_model": Format("tf_saved_model", "saved_model", ("tensorflow",), "export", "tensorflow"),
    "onnx": Format("onnx", "model.onnx", ("onnx", "tf2onnx", "onnxruntime"), "onnx", "onnxruntime"),
    # converted by TensorFlow, run by ai_edge_litert (LiteRT's own package) or else by tf.lite
    "litert": Format("litert", "model.tflite", ("tensorflow",), "litert", "ai-edge-litert"),
    "openvino": Format("openvino", "model.xml", ("openvino",), "openvino", "openvino"),
}
RUNTIME_PACKAGES = ("onnx", "tf2onnx", "onnxruntime", "ai-edge-litert", "openvino")
# How each runtime is run here (recorded in export.json). OpenVINO computes in bf16 by default on CPUs
# with bf16 units: measured on the real CIFAR-10 test split, 0.6% of its top-1 classes then differed
# from Keras', so the check runs it in f32, as a deployment that needs Keras' answers must.
RUNTIME_SETTINGS = {"saved_model": {}, "onnx": {"providers": ["CPUExecutionProvider"]},
                    "litert": {"num_threads": os.cpu_count()},
                    "openvino": {"device": "CPU", "INFERENCE_PRECISION_HINT": "f32"}}


def missing_runtime(fmt: str) -> str | None:
    """One line naming what ``fmt`` needs and the pip command that brings it; None when installed."""
    spec = FORMATS[fmt]
    absent = [m for m in spec.needs if importlib.util.find_spec(m) is None]
    if not absent:
        return None
    return f"format={fmt} needs {', '.join(absent)}, which {'is' if len(absent) == 1 else 'are'} not installed: " \
           f"pip install 'cifarx[{spec.extra}]'"


def chosen_formats(cfg) -> list[str]:
    """format=null: saved_model, or every format with benchmark=true; format=all: every format."""
    fmt = None if cfg.format is None else str(getattr(cfg.format, "value", cfg.format))
    if fmt == "all" or (fmt is None and cfg.benchmark):
        return list(FORMATS)
    return [fmt or "saved_model"]


# -- the model that is exported ------------------------------------------------------------

def ends_in_softmax(model) -> bool:
    """Whether the model's last layer outputs probabilities (a softmax layer or activation)."""
    import keras

    last = model.layers[-1]
    return isinstance(last, keras.layers.Softmax) or \
        getattr(getattr(last, "activation", None), "__name__", "") == "softmax"


def _constants_in_graph(model) -> None:
    """Normalization layers keep mean and variance as eager tensors, which a traced function
    captures; Keras' ONNX path on TensorFlow (tf2onnx) turns each captured tensor into an extra
    graph input a caller would have to feed. As NumPy arrays (same values) they trace as constants."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _constants_in_graph(layer)
        elif isinstance(layer, keras.layers.Normalization) and getattr(layer, "mean", None) is not None:
            layer.mean, layer.variance = np.asarray(layer.mean), np.asarray(layer.variance)


def serving_model(model, input_dtype: str = "uint8"):
    """(the model to export, whether a softmax was added): ``input_dtype`` images in (float32 are
    clipped to 0..255 and rounded to uint8 first, as the images were stored), probabilities out."""
    import keras
    from keras import ops

    class RoundToUint8(keras.layers.Layer):
        def call(self, x):
            return ops.cast(ops.round(ops.clip(x, 0.0, 255.0)), "uint8")

    _constants_in_graph(model)
    probabilities = ends_in_softmax(model)
    shape = tuple(model.input.shape[1:])
    serving = model
    if input_dtype != "uint8" or not probabilities:
        image = keras.Input(shape=shape, dtype=input_dtype, name="image")
        x = image if input_dtype == "uint8" else RoundToUint8(name="round_to_uint8")(image)
        y = model(x)
        if not probabilities:
            y = keras.layers.Softmax(dtype="float32", name="probabilities")(y)
        serving = keras.Model(image, y, name=f"{model.name}_serving")
    serving(np.zeros((1, *shape), input_dtype), training=False)  # Keras' ONNX export refuses a model never called
    return serving, not probabilities


@functools.cache
def _teach_tf2onnx_erfc() -> None:
    """tf2onnx 1.17 has no converter for TensorFlow's Erfc, which Keras' exact GELU uses (airbench's
    activation): such a graph came out as an invalid ONNX file. erfc(x) = 1 - erf(x), with ONNX's
    own Erf (opset >= 9); registered through tf2onnx's handler decorator, once."""
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class Erfc:
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            node.type = "Erf"
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            one = ctx.make_const(utils.make_name("erfc_one"), np.array(1, dtype=dtype))
            ctx.insert_new_node_on_output("Sub", node.output[0], inputs=[one.output[0], node.output[0]],
                                          name=utils.make_name(node.name))


@contextmanager
def _quiet():
    """Converters' chatter off the terminal: Python warnings, tf2onnx's INFO lines, and what
    native code (TensorFlow, LiteRT's delegate) prints on stderr."""
    import sys

    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    levels = {name: logging.getLogger(name).level for name in ("tf2onnx", "absl")}
    try:
        os.dup2(devnull, 2)
        for name in levels:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def write_format(serving, fmt: str, run: RunDir) -> list[Path]:
    """Export ``serving`` as ``fmt`` into a hidden folder of the run, then rename each file into
    place (never over an existing one): a killed export leaves no half-written model."""
    spec = FORMATS[fmt]
    tmp = run.path / f".export-{fmt}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if fmt == "onnx":
            _teach_tf2onnx_erfc()
        try:
            with _quiet():
                serving.export(str(tmp / spec.file), format=spec.keras, verbose=False)
        except Exception as exc:
            raise RunError(f"Keras could not export the model as {fmt}: "
                           f"{one_line(f'{type(exc).__name__}: {exc}')[:300]}") from exc
        made = sorted(tmp.iterdir(), key=lambda p: p.name != spec.file)  # the main file first
        for path in made:
            if run.file(path.name).exists():
                raise RunError(f"{run.file(path.name)} exists already; an export never overwrites a file")
            os.rename(path, run.target(path.name))
        run.has_results = True  # from here on a failure leaves the run (marked failed) for inspection
        return [run.file(p.name) for p in made]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def size_bytes(paths: list[Path]) -> int:
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())


# -- running an exported file with its own runtime -----------------------------------------

def open_runtime(fmt: str, path: Path) -> Predict:
    """A function from a batch of images to probabilities, run by the format's own runtime."""
    with _quiet():
        if fmt == "saved_model":
            import tensorflow as tf

            loaded = tf.saved_model.load(str(path))
            return lambda x: loaded.serve(tf.constant(x)).numpy()
        if fmt == "onnx":
            import onnxruntime as ort

            session = ort.InferenceSession(str(path), providers=RUNTIME_SETTINGS["onnx"]["providers"])
            names = [i.name for i in session.get_inputs()]
            if len(names) != 1:
                raise RunError(f"{path} takes {len(names)} inputs ({', '.join(names)}), not one image batch")
            return lambda x: session.run(None, {names[0]: x})[0]
        if fmt == "litert":
            return _litert(path)
        if fmt == "openvino":
            import openvino as ov

            settings = dict(RUNTIME_SETTINGS["openvino"])
            compiled = ov.Core().compile_model(str(path), settings.pop("device"), settings)
            return lambda x: np.array(compiled(x)[0])
    raise ValueError(f"format={fmt!r}; choose one of: {', '.join(FORMATS)}")


def runtime_name(fmt: str) -> str:
    if fmt == "litert" and importlib.util.find_spec("ai_edge_litert") is None:
        return "tensorflow (tf.lite, deprecated: pip install 'cifarx[litert]')"
    return FORMATS[fmt].runtime


def _litert(path: Path) -> Predict:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # TensorFlow's own copy (deprecated in favour of ai_edge_litert)
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    interpreter = Interpreter(model_path=str(path), **RUNTIME_SETTINGS["litert"])
    inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    shape: list[tuple] = [()]

    def predict(x: np.ndarray) -> np.ndarray:
        if shape[0] != x.shape:  # the batch size is fixed per allocation: resize when it changes
            with _quiet():
                interpreter.resize_tensor_input(inp, x.shape)
                interpreter.allocate_tensors()
            shape[0] = x.shape
        interpreter.set_tensor(inp, np.ascontiguousarray(x))
        interpreter.invoke()
        return interpreter.get_tensor(out)

    return predict


def predict_batches(predict: Predict, x: np.ndarray, batch_size: int, label: str) -> np.ndarray:
    from cifarx.console import progress_steps

    starts = range(0, len(x), batch_size)
    sizes = [min(batch_size, len(x) - i) for i in starts]
    return np.concatenate([np.asarray(predict(x[i:i + batch_size]), dtype=np.float32)
                           for i in progress_steps(starts, label, sizes)])


def parity(proba: np.ndarray, keras_proba: np.ndarray, y: np.ndarray, pcfg) -> dict[str, Any]:
    """Top-1 agreement with Keras, both accuracies, and whether they pass the configured bounds."""
    pred, keras_pred = proba.argmax(axis=1), keras_proba.argmax(axis=1)
    agreement, accuracy = float(np.mean(pred == keras_pred)), float(np.mean(pred == y))
    keras_accuracy = float(np.mean(keras_pred == y))
    gap = abs(accuracy - keras_accuracy)
    return {"images": int(len(y)), "agreement": agreement, "accuracy": accuracy, "keras_accuracy": keras_accuracy,
            "accuracy_gap": gap, "disagreements": int(np.sum(pred != keras_pred)),
            "max_abs_probability_diff": float(np.max(np.abs(proba - keras_proba))) if len(y) else 0.0,
            "passed": agreement >= float(pcfg.min_agreement) and gap <= float(pcfg.max_accuracy_gap) + 1e-12}


def parity_failure(fmt: str, result: dict, pcfg) -> str:
    why = []
    if result["agreement"] < float(pcfg.min_agreement):
        why.append(f"top-1 agreement with Keras {result['agreement']:.4f} < parity.min_agreement={pcfg.min_agreement} "
                   f"({result['disagreements']} of {result['images']:,} test images differ)")
    if result["accuracy_gap"] > float(pcfg.max_accuracy_gap):
        why.append(f"accuracy {result['accuracy']:.4f} vs Keras {result['keras_accuracy']:.4f} differs by more "
                   f"than parity.max_accuracy_gap={pcfg.max_accuracy_gap}")
    return f"{fmt}: " + " and ".join(why)


# -- the benchmark -------------------------------------------------------------------------

def latency_ms(predict: Predict, x1: np.ndarray, warmup: int, calls: int) -> tuple[float, float]:
    """(median, p90) milliseconds of one batch-1 call."""
    for _ in range(warmup):
        predict(x1)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        predict(x1)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times)), float(np.percentile(times, 90))


def throughput(predict: Predict, xb: np.ndarray, warmup: int, batches: int) -> float:
    """Images per second over ``batches`` calls on ``xb``."""
    for _ in range(min(warmup, 2)):
        predict(xb)
    start = time.perf_counter()
    for _ in range(batches):
        predict(xb)
    return len(xb) * batches / (time.perf_counter() - start)


def benchmark_rows(candidates: list[tuple[dict, Predict, np.ndarray]], timing) -> list[dict]:
    """Each (row, predict, images) timed: batch-1 latency, then throughput on batches of
    ``timing.batch_size`` (the images repeated when there are fewer)."""
    rows = []
    for row, predict, x in candidates:
        xb = np.resize(x, (int(timing.batch_size), *x.shape[1:]))
        log.info("timing %s: %d batch-1 calls, %d calls of %d images", row["format"], timing.calls, timing.batches,
                 len(xb))
        median, p90 = latency_ms(predict, x[:1], int(timing.warmup), int(timing.calls))
        rows.append({**row, "latency_ms_median": median, "latency_ms_p90": p90,
                     "images_per_second": throughput(predict, xb, int(timing.warmup), int(timing.batches))})
    return rows


COLUMNS = [("format", "format"), ("file", "file"), ("size_mb", "size (MB)"), ("accuracy", "accuracy"),
           ("agreement", "agreement"), ("latency_ms_median", "batch-1 ms (median)"),
           ("latency_ms_p90", "batch-1 ms (p90)"), ("images_per_second", "batch-{b} images/s"), ("status", "status")]


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if key in ("accuracy", "agreement"):
        return f"{value:.4f}"
    if key == "size_mb":
        return f"{value:.2f}"
    if key.startswith("latency"):
        return f"{value:.3f}"
    if key == "images_per_second":
        return f"{value:,.0f}"
    return str(value)


def benchmark_table(rows: list[dict], batch: int) -> tuple[list[str], list[list[str]]]:
    header = [title.format(b=batch) for _, title in COLUMNS]
    return header, [[_cell(key, row.get(key)) for key, _ in COLUMNS] for row in rows]


def write_benchmark(run: RunDir, rows: list[dict], timing) -> None:
    from cifarx.console import print_table

    machine = hardware()
    flags = f", {' '.join(machine['cpu_flags'])}" if machine["cpu_flags"] else ""
    cpu = f"{machine['cpu']} ({machine['cpu_count']} cores{flags})"
    run.write_json("benchmark.json", {"cpu": machine, "timing": OmegaConf.to_container(timing), "rows": rows,
                                      "versions": versions()})
    header, cells = benchmark_table(rows, int(timing.batch_size))
    lines = [f"CPU: {cpu}; batch-1 latency over {timing.calls} calls after {timing.warmup} untimed, "
             f"throughput over {timing.batches} calls of {timing.batch_size} images", "",
             "| " + " | ".join(header) + " |", "|" + "|".join("---" if i < 2 or i == len(header) - 1 else "---:"
                                                          for i in range(len(header))) + "|",
             *("| " + " | ".join(row) + " |" for row in cells)]
    run.write_text("benchmark.md", "\n".join(lines) + "\n")
    print_table(f"benchmark on {cpu}", header, cells)


def versions() -> dict[str, str]:
    return package_versions(*RUNTIME_PACKAGES)


# -- the command ---------------------------------------------------------------------------

@dataclass
class Reference:
    """What each exported file is checked against: the run's test images and Keras' answers."""
    x: np.ndarray  # uint8, what Keras takes
    x_in: np.ndarray  # what the exported model takes (input_dtype)
    y: np.ndarray
    proba: np.ndarray  # Keras' probabilities


def export_one(serving, fmt: str, run: RunDir, ref: Reference, pcfg) -> tuple[dict, Predict]:
    """Write ``fmt``, run it with its own runtime on the reference images, compare with Keras:
    (its record, its predict function). A file that cannot be written or run is a RunError."""
    log.info("exporting %s ...", fmt)
    start = time.perf_counter()
    files = write_format(serving, fmt, run)
    seconds = time.perf_counter() - start
    try:
        predict = open_runtime(fmt, files[0])
        proba = predict_batches(predict, ref.x_in, int(pcfg.batch_size), f"{fmt} on the test split")
    except RunError:
        raise
    except Exception as exc:
        raise RunError(f"{runtime_name(fmt)} could not run {files[0]}: "
                       f"{one_line(f'{type(exc).__name__}: {exc}')[:300]}") from exc
    result = parity(proba, ref.proba, ref.y, pcfg)
    log.info("%s: %s, top-1 agreement with Keras %.4f, accuracy %.4f (Keras %.4f) on %s test images", fmt,
             files[0].name, result["agreement"], result["accuracy"], result["keras_accuracy"], f"{len(ref.y):,}")
    size = size_bytes(files)
    return {"files": [p.name for p in files], "size_bytes": size, "export_seconds": round(seconds, 3),
            "runtime": runtime_name(fmt), "runtime_settings": RUNTIME_SETTINGS[fmt], "parity": result,
            "row": {"format": fmt, "file": files[0].name, "size_mb": size / 1e6, "accuracy": result["accuracy"],
                    "agreement": result["agreement"], "status": "ok" if result["passed"] else "parity failed"}}, predict


def validate_export(cfg: DictConfig) -> None:
    require(not OmegaConf.is_missing(cfg, "run"),
            "no run given: `cifarx export run=<train run dir> format=onnx` (run directories are under outputs/train/)")
    formats = chosen_formats(cfg)
    if len(formats) == 1:  # format=all skips (and names) what is not installed
        problem = missing_runtime(formats[0])
        require(problem is None, problem or "")
    require_run(cfg.run, "train", needs=(f"{cfg.checkpoint}.keras",))
    validate_data(cfg.data)


def run_export(cfg, run: RunDir) -> dict[str, Any]:
    """`cifarx export run=DIR format=...`: export, check each file against Keras, optionally time."""
    import keras

    from cifarx.console import print_table
    from cifarx.data import load_dataset
    from cifarx.evaluation import predict_proba
    from cifarx.models import float32_model, load_model

    source = Path(str(cfg.run)).expanduser().resolve()  # a finished train run: checked by validate_export
    train_cfg = OmegaConf.load(source / "config.yaml")
    if cfg.data.root is not None:  # the same images, read from where they are now
        train_cfg.data.root = str(cfg.data.root)
    model_file = source / f"{cfg.checkpoint}.keras"
    model, trained_policy = float32_model(load_model(model_file))
    if trained_policy:
        log.info("the model trained in %s; it is exported (and checked against Keras) in float32", trained_policy)
    data = load_dataset(train_cfg.data, int(train_cfg.seed))
    pcfg, input_dtype = cfg.parity, str(getattr(cfg.input_dtype, "value", cfg.input_dtype))
    n = len(data.y_test) if pcfg.images is None else min(int(pcfg.images), len(data.y_test))
    x = data.x_test[:n]
    ref = Reference(x, x if input_dtype == "uint8" else x.astype(np.float32), data.y_test[:n],
                    predict_proba(model, x, int(pcfg.batch_size), description="Keras on the test split"))
    keras_accuracy = float(np.mean(ref.proba.argmax(axis=1) == ref.y))
    serving, softmax_added = serving_model(model, input_dtype)
    run.write_json("class_names.json", data.class_names)
    run.write_text("labels.txt", "".join(f"{name}\n" for name in data.class_names))

    formats: dict[str, dict] = {}
    runtimes: dict[str, Predict] = {}
    skipped: dict[str, str] = {}  # not installed (format=all only: one format's is refused before the run)
    failed: dict[str, str] = {}  # could not be written or run: the other formats still go, the run fails at the end
    for fmt in chosen_formats(cfg):
        if missing_runtime(fmt):
            skipped[fmt] = missing_runtime(fmt)
            log.warning("skipping %s", skipped[fmt])
            continue
        try:
            formats[fmt], runtimes[fmt] = export_one(serving, fmt, run, ref, pcfg)
        except RunError as exc:
            failed[fmt] = one_line(str(exc))
            log.error("%s: %s", fmt, failed[fmt])

    source_metrics = read_json(source / "metrics.json") if (source / "metrics.json").exists() else {}
    run.write_json("export.json", {
        "source_run": str(source), "checkpoint": str(cfg.checkpoint), "model_file": str(model_file),
        "model": train_cfg.model.get("name", model.name), "source_test_accuracy": source_metrics.get("test_accuracy"),
        "class_names": data.class_names,
        "input": {"name": "image", "shape": [-1, *map(int, x.shape[1:])], "dtype": input_dtype, "range": [0, 255],
                  "layout": "NHWC, RGB" + (", rounded to uint8 inside" if input_dtype != "uint8" else "")},
        "output": {"shape": [-1, data.num_classes], "dtype": "float32",
                   "meaning": "class probabilities (softmax), in class_names.json order"},
        "softmax_added": softmax_added, "backend": keras.backend.backend(),
        "precision": "float32" + (f" (trained in {trained_policy})" if trained_policy else ""),
        "parity_check": {"split": "test", "images": n, "of": int(len(data.y_test)), "keras_accuracy": keras_accuracy,
                         "min_agreement": float(pcfg.min_agreement), "max_accuracy_gap": float(pcfg.max_accuracy_gap)},
        "formats": {fmt: {k: v for k, v in info.items() if k != "row"} for fmt, info in formats.items()},
        "skipped": skipped, "failed": failed,
        "versions": versions(),
    })
    if formats:
        print_table(f"parity with Keras on {n:,} test images", ["format", "file", "agreement", "accuracy", "Keras",
                                                                "status"],
                    [[f, i["row"]["file"], i["parity"]["agreement"], i["parity"]["accuracy"],
                      i["parity"]["keras_accuracy"], i["row"]["status"]] for f, i in formats.items()])
    if cfg.benchmark:
        keras_row = {"format": "keras", "file": model_file.name, "size_mb": model_file.stat().st_size / 1e6,
                     "accuracy": keras_accuracy, "agreement": 1.0, "status": "reference"}
        rows = benchmark_rows([(keras_row, model.predict_on_batch, ref.x),
                               *((formats[f]["row"], runtimes[f], ref.x_in) for f in formats)], cfg.timing)
        rows += [{"format": fmt, "status": "failed (see export.json)"} for fmt in failed]
        rows += [{"format": fmt, "status": f"not installed: {why.rsplit(': ', 1)[-1]}"} for fmt, why in skipped.items()]
        write_benchmark(run, rows, cfg.timing)
    failures = [*(parity_failure(f, i["parity"], pcfg) for f, i in formats.items() if not i["parity"]["passed"]),
                *(f"{fmt}: {why}" for fmt, why in failed.items())]
    if failures:
        kept = f"; the run stays in {run.path} for inspection" if run.has_results else ""
        raise RunError(f"{'export' if failed else 'parity check'} failed: {'; '.join(failures)}{kept}")
    if not formats:
        raise RunError(f"no format could be exported: {'; '.join(skipped.values())}")
    metrics = {"formats": list(formats), "parity_images": n, "keras_accuracy": keras_accuracy,
               **{f"{fmt}_{k}": info["parity"][k] for fmt, info in formats.items() for k in ("agreement", "accuracy")}}
    run.write_metrics(metrics)
    log.info("exported %s into %s", ", ".join(f"{f} ({formats[f]['files'][0]})" for f in formats), run.path)
    return metrics
