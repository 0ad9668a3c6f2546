"""Wall time to accuracy: run `cifarx train experiment=...` end to end in a fresh process, per seed.

    python benchmarks/time_to_accuracy.py --experiment fast_cpu --data-root ~/data/cifar10-jpeg.zip --seeds 0 1
    python benchmarks/time_to_accuracy.py --experiment fast_gpu --data-root ... -- model.width=0.5

Prints, per seed and as mean/spread: wall time of the whole command (start-up, data loading,
training and evaluation, as `time` would report it), training seconds, epochs, test accuracy
(with the run's test-time augmentation) and, when the run has a validation split, the training
time at which validation accuracy first reached each --threshold. For every run also where the
time went (metrics.json's `phases`: start-up, training from the first step to the last, scoring,
and under a time budget what was left unused, each beside the budget's estimate) and what JAX
compiled (`compile`: compiles, their seconds, compilation-cache hits). The data cache is filled
before the first timed run, so every run loads the decoded arrays as a user's second run does.
Writes the results, with the machine's CPU (and flags) and versions, as JSON under
benchmarks/results/. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def crossings(run: Path, thresholds: list[float]) -> dict[str, float | None]:
    """Training seconds at which val_accuracy first reached each threshold (None: never)."""
    from cifarx.run.rundir import read_history

    history = read_history(run / "history.csv")
    metrics = json.loads((run / "metrics.json").read_text())
    seconds, elapsed, out = metrics.get("epoch_times", []), 0.0, {}
    reached: dict[float, float] = {}
    for value, took in zip(history.get("val_accuracy", []), seconds):
        elapsed += took
        for t in thresholds:
            if value >= t and t not in reached:
                reached[t] = elapsed
    for t in thresholds:
        out[f"{t:.3f}"] = round(reached[t], 1) if t in reached else None
    return out


def run_once(args, seed: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "cifarx.cli", "train", f"experiment={args.experiment}", f"seed={seed}",
           f"data.root={args.data_root}", f"data.cache_dir={args.cache}", f"hydra.run.dir={out}", *args.overrides]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "CI": "true"})
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"seed {seed} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    compiled = metrics.get("compile") or {}
    return {"seed": seed, "wall_seconds": round(wall, 1), "train_seconds": metrics["train_seconds"],
            "epochs": metrics["epochs"], "test_accuracy": metrics["test_accuracy"], "tta": metrics.get("tta"),
            "device": metrics.get("device"), "backend": metrics.get("backend"),
            "phases": metrics.get("phases"), "epoch_times": metrics.get("epoch_times"),
            "compile": {k: v for k, v in compiled.items() if k != "phases"} or None,
            "val_crossings_seconds": crossings(out, args.threshold), "run": str(out)}


def phase_lines(r: dict) -> list[str]:
    """Where one run's wall time went: the phases (beside the budget's estimates) and JAX's compiles."""
    from cifarx.training.phases import describe

    lines = []
    if r.get("phases"):
        lines.append(f"  phases: {describe(r['phases'])}")
    times = r.get("epoch_times") or []
    if times:
        later = sorted(times[1:])
        median = f", later epochs {later[len(later) // 2]:.2f} s (median)" if later else ""
        lines.append(f"  epochs: first {times[0]:.2f} s{median}")
    c = r.get("compile")
    if c:
        lines.append(f"  compile: {c['compiles']} compiled ({c['compile_seconds']:.1f} s with cache loads, "
                     f"{c['trace_seconds']:.1f} s tracing), {c['cache_hits']} of {c['requests']} from the cache "
                     f"({c.get('cache_dir')}); steps {c.get('steps')}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", default="fast_cpu")
    parser.add_argument("--data-root", required=True, help="CIFAR-10 in any format cifarx reads")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threshold", type=float, action="append", default=None,
                        help="validation accuracies to time (default 0.80, 0.85)")
    parser.add_argument("--cache", default=None, help="data cache (default: a temporary one)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directories under this folder")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("overrides", nargs="*", help="extra cifarx overrides, after --")
    args = parser.parse_args()
    args.threshold = args.threshold or [0.80, 0.85]

    from records import write_benchmark_record

    from cifarx.console import print_table
    from cifarx.data import load_raw
    from cifarx.run.rundir import hardware

    tmp = Path(tempfile.mkdtemp(prefix="cifarx-tta-"))
    args.cache = args.cache or str(tmp / "cache")
    load_raw(str(args.data_root), args.cache)  # decode once, untimed: every timed run reads the cache
    runs_dir = args.keep or tmp
    results = []
    for seed in args.seeds:
        r = run_once(args, seed, runs_dir / f"{args.experiment}_seed{seed}")
        results.append(r)
        print(f"seed {seed}: {r['test_accuracy']:.4f} test accuracy in {r['wall_seconds']:.1f} s wall "
              f"({r['train_seconds']:.1f} s training, {r['epochs']} epochs)", flush=True)
        print("\n".join(phase_lines(r)), flush=True)
    accs = [r["test_accuracy"] for r in results]
    walls = [r["wall_seconds"] for r in results]
    machine = hardware()
    summary = {"test_accuracy_mean": statistics.mean(accs), "test_accuracy_min": min(accs),
               "test_accuracy_max": max(accs), "wall_seconds_mean": statistics.mean(walls),
               "wall_seconds_max": max(walls), "runs": len(results)}
    print(f"CPU: {machine['cpu']} ({machine['cpu_count']} cores; flags: {' '.join(machine['cpu_flags']) or 'none'})")
    print_table(f"experiment={args.experiment} {' '.join(args.overrides)}",
                ["seed", "test accuracy", "wall s", "train s", "epochs", "device"],
                [[r["seed"], f"{r['test_accuracy']:.4f}", r["wall_seconds"], r["train_seconds"], r["epochs"],
                  r["device"]] for r in results]
                + [["mean", f"{summary['test_accuracy_mean']:.4f}", f"{summary['wall_seconds_mean']:.1f}", "", "", ""]])
    path = write_benchmark_record(args.out, f"time_to_accuracy_{args.experiment}", experiment=args.experiment,
                                  overrides=args.overrides, summary=summary, runs=results)
    print(f"written {path}")


if __name__ == "__main__":
    main()
