"""What the training feed alone costs per batch, next to what a training step costs.

    python benchmarks/feed_cost.py                       # 40,000 synthetic 32x32x3 images, batch 64
    python benchmarks/feed_cost.py --images 50000 --batch-size 512

For each feed in cifarx.data.feed (``tf_data`` on TensorFlow, ``python`` everywhere) it draws
--epochs epochs of batches the way ``fit`` receives them (the Keras data adapter; on TensorFlow a
tf.data dataset consumed inside the graph, as TensorFlow's trainer does; nothing trained) and
reports milliseconds per batch and the process's user and system CPU seconds. It then times real training steps of the seed CNN on the same batches, so the feed's
share of a step can be read off directly. Not a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cpu_seconds() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def epoch_batches(kind: str, feed):
    """One epoch of the feed's batches, as the adapter ``fit`` would use on this backend hands them."""
    import keras
    from keras.src.trainers.data_adapters import get_data_adapter

    if kind == "tf_data":
        return feed
    adapter = get_data_adapter(feed)
    if keras.backend.backend() == "tensorflow":
        return adapter.get_tf_dataset()  # what TensorFlow's trainer iterates for a PyDataset
    return adapter.get_numpy_iterator()


def drain(batches) -> int:
    """Consume every batch as a trainer would: inside the graph for a tf.data dataset (as
    TensorFlow's ``fit`` does), in Python otherwise. Returns the number of batches."""
    if hasattr(batches, "reduce"):
        return int(batches.reduce(0, lambda n, _: n + 1))
    return sum(1 for _ in batches)


def time_feed(kind: str, x, y, batch: int, epochs: int) -> dict:
    """Milliseconds per batch for the feed alone (no model), over ``epochs`` epochs."""
    from cifarx.data.feed import FeedPlan, training_feed

    feed, feed_epoch, steps = training_feed(x, y, FeedPlan(batch, seed=0, kind=kind))
    user0, sys0 = cpu_seconds()
    start = time.perf_counter()
    batches = 0
    for epoch in range(epochs):
        feed_epoch.on_epoch_begin(epoch)
        batches += drain(epoch_batches(kind, feed))
    seconds = time.perf_counter() - start
    user1, sys1 = cpu_seconds()
    return {"ms_per_batch": 1000 * seconds / max(batches, 1), "batches": batches,
            "user_s": user1 - user0, "sys_s": sys1 - sys0}


def time_steps(x, y, batch: int, steps: int) -> float:
    """Milliseconds per training step of the seed CNN (z-score inside, uint8 in), arrays in."""
    from cifarx.config import compose
    from cifarx.data import Dataset
    from cifarx.models import build_model
    from cifarx.training.optim import build_optimizer

    cfg = compose("train", ["data=normalize"])
    data = Dataset(x, y, x[:0], y[:0], x[:0], y[:0], [str(i) for i in range(10)])
    model = build_model(cfg.model, cfg.data, data, 0)
    model.compile(optimizer=build_optimizer(cfg.optimizer, cfg.schedule, steps, 1),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"], steps_per_execution=8)
    n = steps * batch
    model.fit(x[:batch * 16], y[:batch * 16], batch_size=batch, epochs=1, verbose=0, shuffle=False)  # trace
    start = time.perf_counter()
    model.fit(x[:n], y[:n], batch_size=batch, epochs=1, verbose=0, shuffle=False)
    return 1000 * (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=40_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=200)
    args = parser.parse_args()

    import keras
    import numpy as np

    from cifarx.console import print_table
    from cifarx.run.rundir import hardware

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, args.images).astype(np.int64)
    kinds = ["tf_data", "python"] if keras.backend.backend() == "tensorflow" else ["python"]
    feeds = {kind: time_feed(kind, x, y, args.batch_size, args.epochs) for kind in kinds}
    step_ms = time_steps(x, y, args.batch_size, args.train_steps)
    machine = hardware()
    print(f"CPU: {machine['cpu']} ({machine['cpu_count']} cores; flags: {' '.join(machine['cpu_flags'])}); "
          f"backend {keras.backend.backend()}; batch {args.batch_size}")
    print_table("feed alone vs a training step", ["feed", "ms/batch", "share of a step", "user s", "sys s"],
                [[k, f"{v['ms_per_batch']:.3f}", f"{v['ms_per_batch'] / step_ms:.2%}", f"{v['user_s']:.1f}",
                  f"{v['sys_s']:.1f}"] for k, v in feeds.items()]
                + [["(training step, seed CNN)", f"{step_ms:.2f}", "", "", ""]])


if __name__ == "__main__":
    main()
