"""`cifarx data`: the report's first questions about a dataset, answered for any source.

Counts per class and split (is it balanced?), image shape and dtype, per-channel mean and std,
and a grid of sample images per class.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from omegaconf import DictConfig

from cifarx.config.validate import validate_data
from cifarx.console import print_table
from cifarx.run.rundir import RunDir

log = logging.getLogger("cifarx")


def describe(x: np.ndarray, y: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    from cifarx.data import channel_stats

    counts = np.bincount(y, minlength=len(class_names))
    mean, std = channel_stats(x)
    return {
        "count": int(len(y)),
        "per_class": {name: int(c) for name, c in zip(class_names, counts)},
        "balanced": bool(counts.min() == counts.max()),
        "imbalance_ratio": float(counts.max() / max(counts.min(), 1)),
        "shape": list(x.shape[1:]), "dtype": str(x.dtype),
        "channel_mean": [round(float(v), 3) for v in mean],
        "channel_std": [round(float(v), 3) for v in std],
    }


def validate_data_command(cfg: DictConfig) -> None:
    validate_data(cfg.data)


def run_data(cfg, run: RunDir) -> dict[str, Any]:
    from cifarx import plots
    from cifarx.data import load_dataset

    data = load_dataset(cfg.data, int(cfg.seed))
    splits = {name: describe(x, y, data.class_names) for name, (x, y) in data.splits().items()}
    summary = {"source": data.source, "class_names": data.class_names, "splits": splits}
    run.write_json("data_summary.json", summary)

    rng = np.random.default_rng(int(cfg.seed))
    per_class = int(cfg.samples_per_class)
    images, titles = [], []
    for label, name in enumerate(data.class_names):
        idx = np.flatnonzero(data.y_train == label)
        for i in rng.choice(idx, size=min(per_class, len(idx)), replace=False):
            images.append(data.x_train[i])
            titles.append(name)
    run.save_figure("samples.png", plots.image_grid_figure(np.asarray(images), titles, columns=per_class,
                                                         title="training samples per class"))
    run.write_metrics({"splits": {k: v["count"] for k, v in splits.items()}, "sha256": data.source["sha256"]})

    names = list(splits)
    print_table("images per class", ["class", *names],
                [[c, *(splits[s]["per_class"][c] for s in names)] for c in data.class_names]
                + [["total", *(splits[s]["count"] for s in names)]])
    print_table("split statistics (0..255 units)", ["split", "shape", "dtype", "balanced", "mean (R, G, B)", "std (R, G, B)"],
                [[s, "x".join(map(str, v["shape"])), v["dtype"], "yes" if v["balanced"] else f"no ({v['imbalance_ratio']:.2f}x)",
                  ", ".join(f"{m:.1f}" for m in v["channel_mean"]), ", ".join(f"{m:.1f}" for m in v["channel_std"])]
                 for s, v in splits.items()])
    log.info("data summary and samples.png in %s", run.path)
    return summary
