"""`cifarx predict run=<train or classic run> source=<images>`: the class of every image of a source
(an image, a folder, a .zip, a glob or a list file), into a run directory of its own.

The run's predictor (:func:`cifarx.inference.load`, what ``cifarx.load`` returns) decodes each file
exactly as training decoded its images and predicts in batches. A file it cannot read is one
warning and a row of ``skipped.csv``, never the end of the batch: the command then returns
``outcome: partial``, which the CLI turns into exit status 3. Only a source with nothing readable
fails, before any result is written.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from cifarx.errors import DataError, require
from cifarx.run.rundir import RunDir

log = logging.getLogger("cifarx")

PREDICTIONS_FILE = "predictions.csv"
SKIPPED_FILE = "skipped.csv"
CONTACT_SHEET = "contact_sheet.png"
SKIPPED_SHOWN = 20  # skipped files named one a line on the terminal; skipped.csv lists every one


def prediction_rows(result, top_k: int) -> tuple[list[str], list[list[Any]]]:
    """predictions.csv: path, label, probability, then label_2, probability_2 ... up to ``top_k``."""
    header = ["path", "label", "probability"] + [f"{key}_{i}" for i in range(2, top_k + 1)
                                                 for key in ("label", "probability")]
    order, proba = result.top(top_k)
    names = result.class_names
    rows = []
    for i, path in enumerate(result.paths):
        if proba is None:  # a classifier without probabilities: its class only
            rows.append([path, names[order[i, 0]], ""] + [""] * (2 * (top_k - 1)))
            continue
        row = [path]
        for j in range(order.shape[1]):
            row += [names[order[i, j]], f"{proba[i, j]:.6f}"]
        rows.append(row)
    return header, rows


def _contact_sheet(run: RunDir, result, images: np.ndarray) -> None:
    from cifarx import plots

    def short(path: str, width: int = 18) -> str:
        name = Path(path).name
        return name if len(name) <= width else "…" + name[-(width - 1):]

    confidence = result.confidence
    titles = [f"{result.labels[i]}" + (f" {confidence[i]:.2f}" if confidence is not None else "")
              + f"\n{short(result.paths[i])}" for i in range(len(images))]
    what = "predicted class (probability)" if confidence is not None else "predicted class"
    run.save_figure(CONTACT_SHEET, plots.image_grid_figure(
        images, titles, title=f"the first {len(images)} of {len(result):,} images: {what}"))


def _print_summary(result, show: int, multirun: bool) -> None:
    from cifarx.console import print_table

    if multirun:  # one line per job in a sweep; the files hold the rest
        return
    if show:
        order, proba = result.top(2)
        rows = []
        for i in range(min(show, len(result))):
            row = [result.paths[i], result.labels[i]]
            if proba is not None:
                row.append(float(proba[i, 0]))
                row.append(f"{result.class_names[order[i, 1]]} {proba[i, 1]:.2f}" if order.shape[1] > 1 else "-")
            rows.append(row)
        columns = ["file", "predicted"] + (["probability", "runner-up"] if proba is not None else [])
        print_table(f"predictions (the first {len(rows)} of {len(result):,}; all in {PREDICTIONS_FILE})", columns, rows)
    counts = sorted(((n, -i, name) for i, (name, n) in enumerate(result.counts().items()) if n), reverse=True)
    print_table("images per predicted class", ["class", "images", "share"],
                [[name, n, f"{n / len(result):.1%}"] for n, _, name in counts])


def validate_predict(cfg: DictConfig) -> None:
    """The run (a finished train or classic run, and the runs its model came from) and the source
    (something to read), before any run directory exists."""
    from cifarx.data.image_files import check_source
    from cifarx.inference import describe_run

    require(not OmegaConf.is_missing(cfg, "run"), "no run given: `cifarx predict run=<train or classic run dir> "
            "source=<images>` (run directories are under outputs/train/ and outputs/classic/)")
    require(not OmegaConf.is_missing(cfg, "source"), "no source given: `cifarx predict run=<run dir> source=<an image, "
            "a folder, a .zip, a glob such as 'photos/*.jpg' or a .txt list of paths>`")
    info = describe_run(cfg.run, str(cfg.checkpoint))
    check_source(str(cfg.source), str(cfg.data.other_sizes or info.other_sizes))


def run_predict(cfg, run: RunDir) -> dict[str, Any]:
    from cifarx.data.image_files import open_source
    from cifarx.inference import describe, load

    started = time.perf_counter()
    predictor = load(cfg.run, checkpoint=str(cfg.checkpoint), tta=None if cfg.tta is None else str(cfg.tta),
                     other_sizes=None if cfg.data.other_sizes is None else str(cfg.data.other_sizes),
                     batch_size=int(cfg.batch_size), trust_pipeline=bool(cfg.trust_pipeline))
    load_seconds = time.perf_counter() - started
    top_k = min(int(cfg.top_k), len(predictor.class_names))
    shown = [0]

    def tell(name: str, why: str) -> None:
        shown[0] += 1
        if shown[0] <= SKIPPED_SHOWN:
            log.warning("skipped: %s", why)

    t = time.perf_counter()
    with open_source(str(cfg.source)) as source:
        list_seconds = time.perf_counter() - t
        log.info("predicting %s file%s of %s (%s) with %s run %s: tta %s, other sizes %s", f"{len(source.files):,}",
                 "s" if len(source.files) != 1 else "", source.given, source.kind, predictor.info.kind,
                 predictor.info.path, predictor.tta, predictor.other_sizes)
        if source.hidden:
            log.info("left out %d hidden file%s (dot-files, __MACOSX), as training does", source.hidden,
                     "s" if source.hidden != 1 else "")
        result, images = predictor.predict_files(source.files, skip_unreadable=True, progress=True, on_skip=tell,
                                                 keep=int(cfg.contact_sheet) if cfg.figures else 0)
        files, hidden, kind = len(source.files), source.hidden, source.kind
    skipped = len(result.skipped)
    if shown[0] > SKIPPED_SHOWN:
        log.warning("... and %d more skipped (%s lists every one)", shown[0] - SKIPPED_SHOWN, SKIPPED_FILE)
    if not len(result):
        raise DataError(f"nothing readable in source='{cfg.source}': {'the' if files == 1 else f'all {files:,}'} "
                        f"file{'s' if files != 1 else ''} skipped (first: {result.skipped[0][1]})")

    t = time.perf_counter()
    run.write_csv(PREDICTIONS_FILE, *prediction_rows(result, top_k))
    run.write_csv(SKIPPED_FILE, ["path", "reason"], [list(s) for s in result.skipped])
    if cfg.figures and len(images):
        _contact_sheet(run, result, images)
    seconds = {"load": load_seconds, "list": list_seconds, **result.seconds, "write": time.perf_counter() - t}
    metrics = {
        **describe(predictor.info), "checkpoint": str(cfg.checkpoint), "source": str(cfg.source),
        "source_path": str(Path(str(cfg.source)).expanduser().absolute()),
        "source_kind": kind, "files": files, "predicted": len(result), "skipped": skipped, "hidden": hidden,
        "tta": predictor.tta, "other_sizes": predictor.other_sizes, "top_k": top_k,
        "probabilities": result.proba is not None, "counts": result.counts(),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "images_per_second": round(len(result) / max(result.seconds["decode"] + result.seconds["predict"], 1e-9), 1),
    }
    run.write_metrics(metrics)
    _print_summary(result, int(cfg.show), run.job.multirun)
    done = f"; {skipped:,} skipped (see {SKIPPED_FILE})" if skipped else ""
    log.info("predicted %s image%s in %.1fs%s; run directory %s", f"{len(result):,}", "s" if len(result) != 1 else "",
             time.perf_counter() - started, done, run.path)
    return {"predicted": len(result), "skipped": skipped, "outcome": "partial" if skipped else "complete"}
