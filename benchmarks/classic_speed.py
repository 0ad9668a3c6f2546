"""Fit and predict seconds of each `clf` config on 50,000 x 512 features (the report's size).

    python benchmarks/classic_speed.py                                  # synthetic features
    python benchmarks/classic_speed.py --features outputs/extract/<run> # real ones
    python benchmarks/classic_speed.py --clf logreg svm --n 20000

Synthetic features are class-dependent Gaussian clusters (non-negative like ReLU outputs), so the
solvers do real work. Uses cifarx's own pipeline builder with the shipped `clf/*.yaml` configs.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def synthetic(n: int, n_test: int, dim: int, classes: int = 10, seed: int = 0):
    """Train and test draws around the same class centres."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1, (classes, dim))

    def draw(count):
        y = rng.integers(0, classes, count)
        return np.maximum(centers[y] + rng.normal(0, 4.0, (count, dim)), 0).astype(np.float32), y

    return (*draw(n), *draw(n_test))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", help="an extract run directory (default: synthetic)")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--clf", nargs="+", default=["logreg", "rf", "knn", "svm"])
    parser.add_argument("--score-train", action="store_true",
                        help="also score the training split, as `cifarx classic` does unless score_train=false")
    parser.add_argument("--chunk", type=int, default=2000, help="rows per predict call (classic's predict_chunk)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    from cifarx.commands.classic import build_pipeline
    from cifarx.config import compose
    from cifarx.run.rundir import hardware, package_versions

    if args.features:
        f = Path(args.features)
        x, y = np.load(f / "features_train.npy"), np.load(f / "labels_train.npy")
        xt, yt = np.load(f / "features_test.npy"), np.load(f / "labels_test.npy")
    else:
        x, y, xt, yt = synthetic(args.n, args.test, args.dim)
    rows = []
    for name in args.clf:
        cfg = compose("classic", [f"clf={name}", "features=pixels"])
        pipeline = build_pipeline(cfg)
        t = time.perf_counter()
        pipeline.fit(x, y)
        fit = time.perf_counter() - t
        chunks = []  # seconds between two progress updates of `cifarx classic` (one per chunk)
        predictions = {}
        for split, (xs, ys) in {"test": (xt, yt), **({"train": (x, y)} if args.score_train else {})}.items():
            t0 = time.perf_counter()
            parts = []
            for i in range(0, len(xs), args.chunk):
                t = time.perf_counter()
                parts.append(pipeline.predict(xs[i:i + args.chunk]))
                chunks.append(time.perf_counter() - t)
            predictions[split] = (float((np.concatenate(parts) == ys).mean()), time.perf_counter() - t0)
        accuracy, predict = predictions["test"]
        row = {"clf": name, "fit_seconds": fit, "predict_seconds": predict, "test_accuracy": accuracy,
               "longest_chunk_seconds": max(chunks), "chunk": args.chunk}
        if "train" in predictions:
            row["train_predict_seconds"] = predictions["train"][1]
        rows.append(row)
        print(f"{name:8s} fit {fit:7.1f} s   predict test {predict:6.1f} s"
              + (f"   train {row['train_predict_seconds']:6.1f} s" if "train" in predictions else "")
              + f"   longest silent chunk {max(chunks):4.1f} s   accuracy {accuracy:.4f}", flush=True)
    record = {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": hardware(), "versions": package_versions(),
              "train_shape": list(x.shape), "test_shape": list(xt.shape),
              "features": args.features or "synthetic", "results": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"classic_speed_{time.strftime('%Y%m%d_%H%M%S')}.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    main()
