"""Seconds `cifarx predict` spends listing, decoding, predicting and writing, on CIFAR-10's 10,000
test images as JPEG files: the test/ folder of the JPEG copy, extracted to a temporary folder.

    python benchmarks/predict_speed.py --run outputs/train/<run>
    python benchmarks/predict_speed.py --run outputs/train/<run> --tta none --repeats 3
    python benchmarks/predict_speed.py --run outputs/classic/<run> --limit 200     # a quick check

Each repeat runs the real command in a fresh process (`python -m cifarx.cli predict`, figures
off, progress as in a log) into a temporary run directory, and reads its phases from the run's
metrics.json (``seconds``: load, list, decode, predict, write); the wall time includes Python's
and TensorFlow's start. The table shows the median over repeats. The images stay outside the
repository and are removed afterwards; the record (timings only) goes under benchmarks/results/.
Not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ZIP = os.environ.get("CIFARX_JPEG_ZIP")  # the JPEG copy of CIFAR-10 (a zip of train/<class>/, test/<class>/)
PHASES = ("load", "list", "decode", "predict", "write")


def extract_test(archive: Path, into: Path, limit: int | None) -> int:
    """The zip's test/<class>/*.jpg under ``into`` (the first ``limit`` by name); returns the count."""
    with zipfile.ZipFile(archive) as zf:
        members = sorted(i.filename for i in zf.infolist() if i.filename.startswith("test/") and not i.is_dir())
        for name in members[:limit]:
            zf.extract(name, into)
    return len(members[:limit])


def predict_once(run: str, source: Path, out: Path, extra: list[str]) -> dict:
    import json

    env = {**os.environ, "CI": "true", "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cifarx.cli", "predict", f"run={run}", f"source={source}",
                           "figures=false", "show=0", f"hydra.run.dir={out}", *extra],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 3):
        sys.exit(f"cifarx predict failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"wall": wall, **metrics["seconds"], "predicted": metrics["predicted"], "skipped": metrics["skipped"],
            "tta": metrics["tta"], "run_kind": metrics["run_kind"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a train or classic run directory")
    parser.add_argument("--zip", type=Path, default=Path(ZIP) if ZIP else None, required=ZIP is None,
                        help="the JPEG copy of CIFAR-10 (default: $CIFARX_JPEG_ZIP)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test images (a quick check)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--tta", default=None, help="none | flip | flip_translate (default: the run's own)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if not args.zip.is_file():
        sys.exit(f"{args.zip} not found (set --zip or CIFARX_JPEG_ZIP)")

    extra = [f"batch_size={args.batch_size}"] + ([f"tta={args.tta}"] if args.tta else [])
    work = Path(tempfile.mkdtemp(prefix="cifarx-predict-speed-"))
    try:
        t = time.perf_counter()
        count = extract_test(args.zip, work / "images", args.limit)
        print(f"extracted {count:,} test images into {work} in {time.perf_counter() - t:.1f}s")
        rounds = [predict_once(args.run, work / "images" / "test", work / f"run{i}", extra)
                  for i in range(args.repeats)]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    median = {k: statistics.median(r[k] for r in rounds) for k in ("wall", *PHASES)}
    n = rounds[0]["predicted"]
    print(f"\ncifarx predict: {n:,} images ({rounds[0]['skipped']} skipped), {rounds[0]['run_kind']} run, "
          f"tta {rounds[0]['tta']}, batch {args.batch_size}; median of {len(rounds)}")
    print(f"{'phase':<10}{'seconds':>10}{'images/s':>12}")
    for phase in (*PHASES, "wall"):
        seconds = median[phase]
        rate = f"{n / seconds:,.0f}" if seconds > 0 and phase in ("decode", "predict", "wall") else "-"
        print(f"{phase:<10}{seconds:>10.3f}{rate:>12}")

    from records import write_benchmark_record

    path = write_benchmark_record(args.out, "predict_speed", settings={k: str(v) for k, v in vars(args).items()},
                                  images=n, rounds=rounds, median=median)
    print(f"\nrecord: {path}")


if __name__ == "__main__":
    main()
