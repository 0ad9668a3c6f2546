"""What pruning and parallel workers buy a search: the same search twice, one after the other.

    python benchmarks/search_pruning.py --data-root ~/data/cifar10-jpeg.zip

Arm "pruned": median pruning, 2 workers. Arm "plain": no pruning, 1 worker. Both run
`cifarx search` over the seed CNN's learning rate, optimizer and schedule (width and batch size held
fixed, so every epoch costs the same and the wall times compare the searches, not what the sampler
happened to pick) on a subset, with the same sampler seed. Prints per arm: wall time of the whole
command, trials complete/pruned, epochs trained, best validation accuracy; then the ratio. Not a test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARMS = {"pruned": ["search.pruner=median", "search.workers=2"], "plain": ["search.pruner=none", "search.workers=1"]}


def run_arm(name: str, args, folder: Path) -> dict:
    cmd = [sys.executable, "-m", "cifarx.cli", "search", f"search.n_trials={args.trials}", f"search.dir={folder / name}",
           f"search.study={name}", f"data.root={args.data_root}", f"data.max_train={args.max_train}",
           "data.max_test=1000", f"trainer.epochs={args.epochs}", "trainer.score_train=false", "figures=false",
           "model.width=1.0", "trainer.batch_size=64", f"data.cache_dir={folder / 'cache'}", *ARMS[name]]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    summary = json.loads((folder / name / "search.json").read_text())
    trials = summary.get("trials", [])
    return {"wall_seconds": round(wall, 1), "complete": summary["counts"]["complete"],
            "pruned": summary["counts"]["pruned"], "epochs_trained": sum(t.get("epochs") or 0 for t in trials),
            "best_val_accuracy": (summary.get("best") or {}).get("value")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--max-train", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        subprocess.run([sys.executable, "-m", "cifarx.cli", "data", f"data.root={args.data_root}",  # decode once
                        f"data.cache_dir={folder / 'cache'}", f"hydra.run.dir={folder / 'warm'}"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        results = {name: run_arm(name, args, folder) for name in ARMS}
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    print(f"{args.trials} trials, {args.epochs} epochs, max_train={args.max_train}; CPU: {cpu}")
    print("| arm | wall s | complete | pruned | epochs trained | best val_accuracy |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} ({' '.join(ARMS[name])}) | {r['wall_seconds']} | {r['complete']} | {r['pruned']} | "
              f"{r['epochs_trained']} | {r['best_val_accuracy']} |")
    print(f"plain / pruned wall time: {results['plain']['wall_seconds'] / results['pruned']['wall_seconds']:.2f}x")


if __name__ == "__main__":
    main()
