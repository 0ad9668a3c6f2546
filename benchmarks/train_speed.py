"""cifarx against the report's hand-written way, on the same images, in one process.

    python benchmarks/train_speed.py                          # synthetic images
    python benchmarks/train_speed.py --data-root ~/data/cifar10-jpeg.zip --images 10000 --epochs 2

Measures (and prints as a table, and writes as JSON under benchmarks/results/):
- training images/s of cifarx `simple_cnn` with data=normalize and data=augment (cifarx's own
  `run_train`), and of the baseline: float32 arrays z-scored up front, `model.fit` at the same
  batch size and optimizer, Keras' legacy `ImageDataGenerator.flow` for augmentation;
- evaluation (predict) and feature-extraction throughput;
- cached dataset load time, `cifarx --help` and `cifarx train --cfg job` wall time;
- with --memory-run, peak resident memory of a full-data one-epoch `cifarx train` subprocess.

Epoch times exclude the first epoch (graph tracing) when --epochs > 1. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def compose(overrides):
    from conftest import compose as compose_cfg

    return compose_cfg("train", overrides)


def steady(times):
    return sorted(times[1:])[len(times[1:]) // 2] if len(times) > 1 else times[0]


def synthetic_root(tmp: Path, images: int) -> Path:
    from conftest import write_batches_dir

    per_class = max(1, images // 10)
    return write_batches_dir(tmp / "synthetic", train_per_class=per_class, test_per_class=max(1, per_class // 5))


def cifarx_epoch(root, cache, images, epochs, batch, data_group):
    from cifarx.artifacts import RunDir
    from cifarx.train import run_train

    cfg = compose([f"data={data_group}", f"data.root={root}", f"data.cache_dir={cache}", "data.val_fraction=0",
                   f"data.max_train={images}", "data.max_test=1000", f"trainer.epochs={epochs}",
                   f"trainer.batch_size={batch}", "schedule=constant"])
    with tempfile.TemporaryDirectory() as out:
        run = RunDir(out, "train")
        run.begin(cfg)
        metrics = run_train(cfg, run)
    n = metrics["train_count"] if "train_count" in metrics else images
    return {"epoch_seconds": steady(metrics["epoch_times"]), "images": n}


def baseline_epoch(x_uint8, y, epochs, batch, augment):
    """The report's way, written plainly: float32 z-scored arrays, ImageDataGenerator for augmentation."""
    import keras
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    from cifarx.models.simple_cnn import build_simple_cnn

    x = x_uint8.astype("float32")
    x = (x - x.mean(axis=(0, 1, 2))) / x.std(axis=(0, 1, 2))
    cfg = compose([]).model
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, build_simple_cnn(inputs, cfg, 10))
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    class Timer(keras.callbacks.Callback):
        times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.t)

    timer = Timer()
    timer.times = []
    if augment:
        gen = ImageDataGenerator(horizontal_flip=True, width_shift_range=0.125, height_shift_range=0.125,
                                 fill_mode="constant", cval=0.0)
        model.fit(gen.flow(x, y, batch_size=batch), epochs=epochs, callbacks=[timer], verbose=0)
    else:
        model.fit(x, y, batch_size=batch, epochs=epochs, callbacks=[timer], verbose=0)
    return {"epoch_seconds": steady(timer.times), "images": len(x)}


def throughput(root, cache, batch=256):
    import keras

    from cifarx.data import load_dataset
    from cifarx.models import build_model

    cfg = compose([f"data.root={root}", f"data.cache_dir={cache}"])
    data = load_dataset(cfg.data, 0)
    model = build_model(cfg.model, cfg.data, data, 0)
    x = data.x_test
    model.predict(x[:batch], batch_size=batch, verbose=0)
    t = time.perf_counter()
    model.predict(x, batch_size=batch, verbose=0)
    predict = len(x) / (time.perf_counter() - t)
    extractor = keras.Model(model.input, model.layers[-2].output)
    extractor.predict_on_batch(x[:batch])
    t = time.perf_counter()
    for i in range(0, len(x), batch):
        extractor.predict_on_batch(x[i:i + batch])  # as cifarx.extract does
    return predict, len(x) / (time.perf_counter() - t)


def load_times(root, cache):
    from cifarx.data import load_raw

    t = time.perf_counter()
    load_raw(str(root), str(cache))
    first = time.perf_counter() - t
    t = time.perf_counter()
    load_raw(str(root), str(cache))
    return first, time.perf_counter() - t


def wall(cmd):
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        best = min(best, time.perf_counter() - t)
    return best


def peak_memory_mb(root, cache, tmp):
    code = ("import resource, sys; from cifarx.cli import main; sys.argv=['cifarx']; "
            f"rc = main(['train', 'data.root={root}', 'data.cache_dir={cache}', 'trainer.epochs=1', "
            f"'hydra.run.dir={tmp}/mem']); "
            "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out.split("PEAK")[-1].split()[0]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", help="CIFAR-10 in any format cifarx reads (default: synthetic images)")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--memory-run", action="store_true", help="also measure peak RSS of a full-data epoch")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    import keras

    from cifarx.artifacts import hardware, package_versions
    from cifarx.data import load_dataset

    tmp = Path(tempfile.mkdtemp(prefix="cifarx-bench-"))
    cache = tmp / "cache"
    root = Path(args.data_root).expanduser() if args.data_root else synthetic_root(tmp, args.images)
    first_load, cached_load = load_times(root, cache)
    cfg = compose([f"data.root={root}", f"data.cache_dir={cache}", "data.val_fraction=0", f"data.max_train={args.images}"])
    data = load_dataset(cfg.data, 0)
    results = {}
    for name, fn in [
        ("baseline normalize", lambda: baseline_epoch(data.x_train, data.y_train, args.epochs, args.batch_size, False)),
        ("baseline augment (ImageDataGenerator)", lambda: baseline_epoch(data.x_train, data.y_train, args.epochs, args.batch_size, True)),
        ("cifarx data=normalize", lambda: cifarx_epoch(root, cache, args.images, args.epochs, args.batch_size, "normalize")),
        ("cifarx data=augment", lambda: cifarx_epoch(root, cache, args.images, args.epochs, args.batch_size, "augment")),
    ]:
        keras.backend.clear_session()
        r = fn()
        r["images_per_second"] = len(data.y_train) / r["epoch_seconds"]
        results[name] = r
        print(f"{name}: {r['images_per_second']:.0f} images/s ({r['epoch_seconds']:.1f} s/epoch)", flush=True)
    predict, extract = throughput(root, cache)
    cli = [sys.executable, "-m", "cifarx.cli"]
    extra = {
        "evaluate images/s": predict, "extract images/s": extract,
        "first data load s": first_load, "cached data load s": cached_load,
        "cifarx --help s": wall([*cli, "--help"]), "cifarx train --cfg job s": wall([*cli, "train", "--cfg", "job"]),
    }
    if args.memory_run:
        extra["peak RSS, full-data train epoch MB"] = peak_memory_mb(root, cache, tmp)

    base = {"normalize": results["baseline normalize"]["images_per_second"],
            "augment": results["baseline augment (ImageDataGenerator)"]["images_per_second"]}
    rows = []
    for name, r in results.items():
        ref = base["augment"] if "augment" in name else base["normalize"]
        rows.append([name, f"{r['images_per_second']:.0f}", f"{r['images_per_second'] / ref:.2f}x", f"{r['epoch_seconds']:.1f}"])
    from cifarx.console import print_table

    print_table(f"training, simple_cnn, batch {args.batch_size}, {len(data.y_train)} images "
                f"({'real: ' + str(root) if args.data_root else 'synthetic'})",
                ["run", "images/s", "vs baseline", "s/epoch"], rows)
    aug_cost = results["cifarx data=augment"]["epoch_seconds"] / results["cifarx data=normalize"]["epoch_seconds"] - 1
    print_table("other measurements", ["what", "value"],
                [[k, f"{v:.3f}" if isinstance(v, float) else v] for k, v in extra.items()]
                + [["augmentation cost over normalize (epoch time)", f"{aug_cost:+.1%}"]])
    record = {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": hardware(), "versions": package_versions(),
              "backend": keras.backend.backend(), "settings": vars(args) | {"out": str(args.out), "data_root": str(root)},
              "training": results, "augmentation_cost": aug_cost, **extra}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"train_speed_{time.strftime('%Y%m%d_%H%M%S')}.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    print(f"written {path} ({platform.node()})")


if __name__ == "__main__":
    main()
