"""cifarx against the report's hand-written way, on the same images, arm by arm in fresh processes.

    python benchmarks/train_speed.py                          # synthetic images
    python benchmarks/train_speed.py --data-root ~/data/cifar10-jpeg.zip --memory-run

Measures (prints as tables, writes as JSON under benchmarks/results/):
- training images/s of cifarx `simple_cnn` (its own `run_train`) with data=normalize and
  data=augment, in float32 and in mixed_bfloat16 (which trades precision for speed, so it is
  reported apart, never as the comparison), and of the baseline: the report's way written
  plainly (float32 arrays z-scored up front, `model.fit` at the same batch size and optimizer,
  TensorFlow's default threads, Keras' legacy `ImageDataGenerator.flow` for augmentation);
- evaluation (predict) and feature-extraction throughput;
- cached dataset load time, `cifarx --help` and `cifarx train --cfg job` wall time;
- with --memory-run, peak resident memory of a full-data one-epoch `cifarx train` process.

Each arm runs in its own process (thread settings are fixed when TensorFlow starts, and a
baseline must not inherit cifarx's), --repeats times, the arms interleaved round by round so a
slow minute on a shared machine hits every arm. An arm's epoch time is its fastest epoch after
the first (which traces the graph); the table shows the median over repeats. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # tests/helpers: the dataset writers the suite uses

ARMS = {  # name -> (kind, data group, extra overrides)
    "baseline normalize": ("baseline", "normalize", []),
    "baseline augment (ImageDataGenerator)": ("baseline", "augment", []),
    "cifarx data=normalize": ("cifarx", "normalize", []),
    "cifarx data=augment": ("cifarx", "augment", []),
}
BF16 = "trainer.precision=mixed_bfloat16"  # trades precision for speed: reported apart
COMPARED = {"cifarx data=normalize": "baseline normalize",
            "cifarx data=augment": "baseline augment (ImageDataGenerator)"}


def compose(overrides):
    from cifarx.config import compose as compose_cfg

    return compose_cfg("train", overrides)


def synthetic_root(tmp: Path, images: int) -> Path:
    from helpers import write_batches_dir  # tests/helpers: the suite's dataset writers

    per_class = max(1, images // 10)
    return write_batches_dir(tmp / "synthetic", train_per_class=per_class, test_per_class=max(1, per_class // 5))


def data_overrides(args) -> list[str]:
    return [f"data.root={args.root}", f"data.cache_dir={args.cache}", "data.val_fraction=0",
            f"data.max_train={args.images}", "data.max_test=1000"]


def cifarx_arm(args, data_group: str, extra: list[str]) -> dict:
    from cifarx.commands.train import run_train
    from cifarx.run.rundir import RunDir

    cfg = compose([f"data={data_group}", *data_overrides(args), f"trainer.epochs={args.epochs}",
                   f"trainer.batch_size={args.batch_size}", "schedule=constant", *extra])
    with tempfile.TemporaryDirectory() as out:
        run = RunDir(out, "train")
        run.begin(cfg)
        metrics = run_train(cfg, run)
    return {"epoch_times": metrics["epoch_times"], "images": metrics["train_count"]}


def baseline_arm(args, data_group: str, extra: list[str]) -> dict:
    """The report's way, written plainly: float32 z-scored arrays, ImageDataGenerator for augmentation."""
    import keras
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    from cifarx.data import load_dataset
    from cifarx.models import architecture

    cfg = compose(data_overrides(args))
    data = load_dataset(cfg.data, int(cfg.seed))  # the images cifarx_arm trains on
    x = data.x_train.astype("float32")
    x = (x - x.mean(axis=(0, 1, 2))) / x.std(axis=(0, 1, 2))
    y = data.y_train
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, architecture(cfg.model).build(inputs, 10))
    model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    if data_group == "augment":
        gen = ImageDataGenerator(horizontal_flip=True, width_shift_range=0.125, height_shift_range=0.125,
                                 fill_mode="constant", cval=0.0)
        model.fit(gen.flow(x, y, batch_size=args.batch_size), epochs=args.epochs, callbacks=[Timer()], verbose=0)
    else:
        model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, callbacks=[Timer()], verbose=0)
    return {"epoch_times": times, "images": len(y)}


def throughput_arm(args, batch: int = 256) -> dict:
    import keras

    from cifarx.data import load_dataset
    from cifarx.models import build_model

    cfg = compose(data_overrides(args))
    data = load_dataset(cfg.data, int(cfg.seed))  # the images cifarx_arm trains on
    model = build_model(cfg.model, cfg.data, data, int(cfg.seed))
    x = data.x_train
    model.predict(x[:batch], batch_size=batch, verbose=0)
    t = time.perf_counter()
    model.predict(x, batch_size=batch, verbose=0)
    predict = len(x) / (time.perf_counter() - t)
    extractor = keras.Model(model.input, model.layers[-2].output)
    extractor.predict_on_batch(x[:batch])
    t = time.perf_counter()
    for i in range(0, len(x), batch):
        extractor.predict_on_batch(x[i:i + batch])  # as cifarx.commands.extract does
    return {"evaluate images/s": predict, "extract images/s": len(x) / (time.perf_counter() - t)}


def arms_for(args) -> dict[str, tuple[str, str, list[str]]]:
    """The default arms, a mixed_bfloat16 pair, and a pair per --variant."""
    arms = dict(ARMS)
    for variant in [*([BF16] if args.bf16 else []), *args.variant]:
        for group in ("normalize", "augment"):
            arms[f"cifarx data={group}, {variant}"] = ("cifarx", group, variant.split())
    for backend in args.backend:  # the same cifarx arms on another Keras backend
        for group in ("normalize", "augment"):
            arms[f"cifarx data={group} [{backend}]"] = ("cifarx", group, [], backend)
    if args.no_baseline:
        arms = {k: v for k, v in arms.items() if v[0] != "baseline"}
    return {k: v for k, v in arms.items() if not args.only or any(word in k for word in args.only)}


def run_arm(args, name: str, spec) -> dict:
    """Run one arm in a fresh interpreter; returns what it printed as JSON, plus the process's
    user and system CPU seconds (threads fighting over few cores show up as system time)."""
    cmd = [sys.executable, __file__, "--arm", json.dumps(spec), "--root", str(args.root), "--cache", str(args.cache),
           "--images", str(args.images), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    default = os.environ.get("KERAS_BACKEND", "tensorflow")
    backend = spec[3] if isinstance(spec, list) and len(spec) > 3 else default
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "KERAS_BACKEND": backend})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"arm {name!r} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if isinstance(result, dict):
        result.update(user_s=after.ru_utime - before.ru_utime, sys_s=after.ru_stime - before.ru_stime)
    return result


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
    """Peak RSS of `cifarx train` (default config, all images, one epoch, then evaluation), as the
    kernel accounts it for a waited-for child (the same number `/usr/bin/time -v` prints)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run([sys.executable, "-m", "cifarx.cli", "train", f"data.root={root}", f"data.cache_dir={cache}",
                    "trainer.epochs=1", f"hydra.run.dir={tmp}/mem"], check=True, capture_output=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        raise SystemExit("peak memory: an earlier child process used more; run --memory-run first")
    return peak / 1024


def best_steady(times: list[float]) -> float:
    return min(times[1:]) if len(times) > 1 else times[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", help="CIFAR-10 in any format cifarx reads (default: synthetic images)")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=3, help="per arm and repeat; the first is not timed")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per arm, interleaved")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--variant", action="append", default=[], metavar="OVERRIDES",
                        help="also time cifarx with these overrides, e.g. 'trainer.steps_per_execution=1'")
    parser.add_argument("--backend", action="append", default=[], choices=["jax", "torch"],
                        help="also time the cifarx arms on this Keras backend (when installed)")
    parser.add_argument("--bf16", action="store_true", help="also time cifarx in mixed_bfloat16 (reported apart)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the hand-written TensorFlow arms")
    parser.add_argument("--only", nargs="+", help="run only the arms whose names contain one of these")
    parser.add_argument("--memory-run", action="store_true", help="also measure peak RSS of a full-data epoch")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--arm", help=argparse.SUPPRESS)  # internal: run one arm and print JSON
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.arm:
        spec = json.loads(args.arm)
        if spec == "throughput":
            result = throughput_arm(args)
        else:
            kind, group, extra = spec[:3]
            result = (cifarx_arm if kind == "cifarx" else baseline_arm)(args, group, extra)
        print(json.dumps(result))
        return

    from records import write_benchmark_record

    from cifarx.console import print_table
    from cifarx.run.rundir import hardware

    tmp = Path(tempfile.mkdtemp(prefix="cifarx-bench-"))
    args.cache = tmp / "cache"
    args.root = Path(args.data_root).expanduser() if args.data_root else synthetic_root(tmp, args.images)
    first_load, cached_load = load_times(args.root, args.cache)
    extra: dict[str, float] = {"first data load s": first_load, "cached data load s": cached_load}
    if args.memory_run:  # first, so that no earlier child's peak hides it
        extra["peak RSS, full-data train epoch MB"] = peak_memory_mb(args.root, args.cache, tmp)

    arms = arms_for(args)
    names = list(arms)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for round_ in range(args.repeats):
        order = names[round_ % len(names):] + names[:round_ % len(names)]
        for name in order:
            r = run_arm(args, name, arms[name])
            runs[name].append(r)
            ips = r["images"] / best_steady(r["epoch_times"])
            print(f"[{round_ + 1}/{args.repeats}] {name}: {ips:.0f} images/s "
                  f"(epochs {', '.join(f'{t:.1f}' for t in r['epoch_times'])} s)", flush=True)
    results = {}
    for name, rs in runs.items():
        seconds = statistics.median(best_steady(r["epoch_times"]) for r in rs)
        results[name] = {"epoch_seconds": seconds, "images": rs[0]["images"],
                         "images_per_second": rs[0]["images"] / seconds,
                         "user_s": statistics.median(r["user_s"] for r in rs),
                         "sys_s": statistics.median(r["sys_s"] for r in rs),
                         "all_epoch_times": [r["epoch_times"] for r in rs]}
    extra.update(run_arm(args, "throughput", "throughput"))
    cli = [sys.executable, "-m", "cifarx.cli"]
    extra["cifarx --help s"] = wall([*cli, "--help"])
    extra["cifarx train --cfg job s"] = wall([*cli, "train", "--cfg", "job"])

    ratios = {}  # every cifarx arm against the baseline with the same data group
    for name in results:
        ref = COMPARED.get(name.split(",")[0])
        if ref in results:
            ratios[name] = results[name]["images_per_second"] / results[ref]["images_per_second"]
    rows = [[name, f"{r['images_per_second']:.0f}", f"{ratios[name]:.2f}x" if name in ratios else "1.00x",
             f"{r['epoch_seconds']:.2f}", f"{r['user_s']:.0f}", f"{r['sys_s']:.1f}"] for name, r in results.items()]
    source = "real: " + str(args.root) if args.data_root else "synthetic"
    machine = hardware()
    print(f"CPU: {machine['cpu']} ({os.cpu_count()} cores; flags: {' '.join(machine['cpu_flags']) or 'none'})")
    print_table(f"training, simple_cnn, batch {args.batch_size}, {args.images} images ({source}); "
                f"median of {args.repeats} processes",
                ["run", "images/s", "vs baseline", "s/epoch", "user s", "sys s"], rows)
    costs = {}
    for plain in results:
        aug = plain.replace("data=normalize", "data=augment")
        if plain.startswith("cifarx data=normalize") and aug in results:
            costs["augmentation cost over normalize" + plain[len("cifarx data=normalize"):]] = (
                results[aug]["epoch_seconds"] / results[plain]["epoch_seconds"] - 1)
    print_table("other measurements", ["what", "value"],
                [[k, f"{v:.3f}"] for k, v in extra.items()] + [[k, f"{v:+.1%}"] for k, v in costs.items()])
    path = write_benchmark_record(args.out, "train_speed", settings={k: str(v) for k, v in vars(args).items()},
                                  training=results, ratios=ratios, **costs, **extra)
    print(f"written {path} ({platform.node()})")


if __name__ == "__main__":
    main()
