"""`cifarx evaluate run=<train run>`: reload a train run's model and data and evaluate it into a new run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cifarx.config.validate import validate_data
from cifarx.errors import require
from cifarx.run.rundir import RunDir, read_history, read_json, require_run

log = logging.getLogger("cifarx")


def validate_evaluate(cfg: DictConfig) -> None:
    require(not OmegaConf.is_missing(cfg, "run"),
            "no run given: `cifarx evaluate run=<train run dir>` (run directories are under outputs/train/)")
    require_run(cfg.run, "train", needs=(f"{cfg.checkpoint}.keras",))
    validate_data(cfg.data)


def run_evaluate(cfg, run: RunDir) -> dict[str, Any]:
    """`cifarx evaluate run=DIR`: reload a train run's model and data, evaluate into a new run."""
    from cifarx.data import load_dataset
    from cifarx.evaluation import Scoring, evaluate_model  # scikit-learn: not at pre-flight
    from cifarx.models import load_model
    from cifarx.training import compile_cache

    compile_cache.enable(bool(cfg.get("compile_cache", True)), cfg.get("compile_cache_dir"), key="compile_cache_dir")

    source = Path(str(cfg.run)).expanduser().resolve()  # a finished train run: checked by validate_evaluate
    train_cfg = OmegaConf.load(source / "config.yaml")
    if cfg.data.root is not None:  # the same images, read from where they are now
        train_cfg.data.root = str(cfg.data.root)
    data = load_dataset(train_cfg.data, int(train_cfg.seed))
    model = load_model(source / f"{cfg.checkpoint}.keras")
    history = read_history(source / "history.csv") or None
    extra = {"source_run": str(source), "checkpoint": str(cfg.checkpoint), "model": train_cfg.model.name,
             "params": int(model.count_params()),
             "source_metrics": read_json(source / "metrics.json") if (source / "metrics.json").exists() else None}
    tta = str(cfg.tta if cfg.tta is not None else train_cfg.get("tta") or "none")
    metrics = evaluate_model(run, model, data, Scoring(int(cfg.batch_size), tta, figures=bool(cfg.figures)),
                             history, extra)
    source = extra["source_metrics"] or {}
    recorded = source.get("test_accuracy")
    log.info("test accuracy %.4f now (%s weights, tta %s), %s recorded by the run (%s weights, tta %s)",
             metrics["test_accuracy"], cfg.checkpoint, tta,
             f"{recorded:.4f}" if isinstance(recorded, (int, float)) else "none",
             source.get("evaluated_checkpoint", "?"), source.get("tta", "?"))
    return metrics

