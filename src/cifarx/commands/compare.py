"""Tables of runs: `cifarx compare <dir> ...` and the summary written at the end of a sweep.

Both read only what runs wrote (``metrics.json``, ``status.json``, ``.hydra/overrides.yaml``), so
they work after the fact, across commands, and for sweeps run by any launcher.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("cifarx")

COLUMNS = ["run", "command", "status", "overrides", "train_accuracy", "val_accuracy", "test_accuracy",
           "seconds", "error", "experiment", "reference_accuracy", "epochs", "device", "model", "tta", "resumed",
           "trial", "objective"]  # trial, objective: a `cifarx search` trial (its trial.json)


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories (holding status.json) at or below each path, in a stable order."""
    runs: list[Path] = []
    for p in map(Path, paths):
        if (p / "status.json").exists():
            runs.append(p)
        elif p.is_dir():
            runs += sorted(s.parent for s in p.rglob("status.json"))
    return list(dict.fromkeys(r.resolve() for r in runs))


def job_overrides(run: Path) -> list[str]:
    """The overrides Hydra recorded for ``run`` (``.hydra/overrides.yaml``, a YAML list of strings),
    read as YAML, so values YAML had to quote or fold (``: ``, a long line) come back as given;
    interpolations stay unresolved. An absent or damaged file reads as no overrides."""
    from omegaconf import ListConfig, OmegaConf

    path = run / ".hydra" / "overrides.yaml"
    if not path.exists():
        return []
    try:
        items = OmegaConf.load(path)
        if not isinstance(items, ListConfig):
            return []
        return [item for item in OmegaConf.to_container(items, resolve=False) if isinstance(item, str)]
    except Exception:  # a damaged file never breaks the table
        return []


def _overrides(run: Path) -> str:
    items = job_overrides(run)
    return " ".join(i for i in items if not i.startswith(("hydra.", "hydra/", "data.root=", "data.cache_dir=")))


def _read(path: Path) -> tuple[dict[str, Any], str]:
    """A run's JSON file as a dict (empty when absent), and a note when it is damaged."""
    if not path.exists():
        return {}, ""
    try:
        record = json.loads(path.read_text())
        if isinstance(record, dict):
            return record, ""
        raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        return {}, f"{path.name} unreadable ({type(exc).__name__})"


def _reference(run: Path) -> tuple[str | None, float | None]:
    """The experiment's name and the accuracy its config says the report reached, if any."""
    path = run / "config.yaml"
    if not path.exists():
        return None, None
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(path)
        name = cfg.get("experiment_name")
        return (None if name is None else str(name)), cfg.get("reference_accuracy")
    except Exception:  # a damaged config never breaks the table
        return None, None


def row_for(run: Path) -> dict[str, Any]:
    """One table row; a damaged status.json or metrics.json marks this row, never the table."""
    from cifarx.run.rundir import effective_status

    status, bad_status = _read(run / "status.json")
    metrics, bad_metrics = _read(run / "metrics.json")
    if bad_status or bad_metrics:
        status = {**status, "status": "damaged", "error": "; ".join(filter(None, [bad_status, bad_metrics]))}
    elif status.get("status") == "running" and effective_status(run, status) == "stopped":
        status = {**status, "status": "stopped",
                  "error": status.get("error") or "stopped without finishing (process gone)"}
    seconds = metrics.get("seconds", metrics.get("fit_seconds", status.get("seconds")))
    experiment, reference = _reference(run)
    trial, _ = _read(run / "trial.json")  # a search's trial: its number and objective (a pruned one's last epoch's)

    def number(value):
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    return {"run": str(run), "command": status.get("command", ""), "status": status.get("status", ""),
            "overrides": _overrides(run), "train_accuracy": number(metrics.get("train_accuracy")),
            "val_accuracy": number(metrics.get("val_accuracy")), "test_accuracy": number(metrics.get("test_accuracy")),
            "seconds": number(seconds), "error": status.get("error", ""), "experiment": experiment,
            "reference_accuracy": number(reference), "epochs": metrics.get("epochs"), "device": metrics.get("device"),
            "model": metrics.get("model") or metrics.get("classifier"), "tta": metrics.get("tta"),
            "resumed": bool(metrics.get("resumed")),
            "trial": trial.get("number") if isinstance(trial.get("number"), int) else None,
            "objective": number(trial.get("value"))}


def table(paths: Sequence[str | Path], sort_by: str = "val_accuracy") -> list[dict[str, Any]]:
    rows = [row_for(r) for r in find_runs(paths)]
    key = sort_by if sort_by in COLUMNS else "val_accuracy"
    numeric = key.endswith("accuracy") or key == "seconds"

    def order(row):
        value = row.get(key)
        if numeric and not isinstance(value, (int, float)):
            value = None  # a hand-edited metrics.json with text where a number belongs
        if numeric:
            return (value is None, -(value or 0) if key != "seconds" else (value or 0))
        return (False, str(value))

    return sorted(rows, key=order)


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def verdict(measured: float | None, reference: float | None, tolerance: float = 0.005) -> str:
    """How a measured accuracy stands against the report's: beats, matches (within 0.5 points), below."""
    if measured is None or reference is None:
        return "-"
    diff = 100 * (measured - reference)
    if abs(diff) <= 100 * tolerance:
        return f"matches ({diff:+.1f})"
    return f"{'beats' if diff > 0 else 'below'} ({diff:+.1f})"


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """The results table as Markdown: one row per run, the report's number beside cifarx's."""
    def pct(value) -> str:
        return "-" if value is None else f"{100 * float(value):.2f}%"

    lines = ["| run | experiment | epochs | test accuracy | report | vs report | seconds | device |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = Path(r["run"]).name
        seconds = "-" if r["seconds"] is None else f"{float(r['seconds']):,.0f}"
        if r.get("resumed"):
            seconds += " (after resume)"
        lines.append(f"| {name} | {r['experiment'] or r['command']} | {r['epochs'] or '-'} | {pct(r['test_accuracy'])} "
                     f"| {pct(r['reference_accuracy'])} | {verdict(r['test_accuracy'], r['reference_accuracy'])} "
                     f"| {seconds} | {r['device'] or '-'} |")
    return "\n".join(lines) + "\n"


def varying(rows: list[dict[str, Any]]) -> list[str]:
    """Each row's overrides minus those every row shares: what tells the jobs apart."""
    split = [r["overrides"].split() for r in rows]
    common = set.intersection(*map(set, split)) if len(rows) > 1 else set()
    return [" ".join(o for o in items if o not in common) for items in split]


def print_rows(rows: list[dict[str, Any]], title: str, common: Path | None = None) -> None:
    from cifarx.console import print_table

    paths = [r["run"] for r in rows]
    shared = Path(os.path.commonpath(paths)) if len(paths) > 1 else Path(paths[0]).parent if paths else None

    def name(run: str) -> str:
        if common is not None and Path(run).parent == common:
            return Path(run).name.split("_", 1)[0]  # the job number
        return str(Path(run).relative_to(shared)) if shared is not None else run  # what tells the runs apart

    if any(r.get("trial") is not None for r in rows):  # a search: trial, state, objective first
        print_table(title, ["trial", "state", "objective", "overrides", "val acc", "test acc", "epochs", "seconds"],
                    [["-" if r.get("trial") is None else r["trial"], r["status"],
                      "-" if r.get("objective") is None else float(r["objective"]), diff or "-",
                      *("-" if r[k] is None else float(r[k]) for k in ("val_accuracy", "test_accuracy")),
                      r.get("epochs") or "-", "-" if r["seconds"] is None else f"{float(r['seconds']):.1f}"]
                     for r, diff in zip(rows, varying(rows))])
        return
    print_table(title, ["run", "status", "overrides", "train acc", "val acc", "test acc", "seconds"],
                [[name(r["run"]), r["status"], diff or "-",
                  *("-" if r[k] is None else float(r[k]) for k in ("train_accuracy", "val_accuracy", "test_accuracy")),
                  "-" if r["seconds"] is None else f"{float(r['seconds']):.1f}"]
                 for r, diff in zip(rows, varying(rows))])


def short_path(path: str) -> str:
    """``path`` relative to the working directory when it is under it."""
    try:
        return str(Path(path).relative_to(Path.cwd())) or "."
    except ValueError:
        return path


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="cifarx compare",
                                     description="Tabulate the metrics of run or sweep directories.")
    parser.add_argument("paths", nargs="+", help="run directories, sweep directories or any folder above them")
    parser.add_argument("--sort", default="val_accuracy", choices=COLUMNS,
                        help="column to sort by (accuracies descending; default: val_accuracy)")
    parser.add_argument("--csv", metavar="FILE", help="also write the table as CSV ('-' for stdout)")
    parser.add_argument("--format", choices=["table", "markdown"], default="table",
                        help="markdown: the results table with the report's numbers beside (for the README)")
    args = parser.parse_args(argv)
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        print(f"cifarx compare: error: '{missing[0]}' does not exist", file=sys.stderr)
        return 2
    empty = [p for p in args.paths if not find_runs([p])]
    rows = table(args.paths, args.sort)
    if rows and empty:  # one line per path that held nothing, so a mistyped folder is not silently dropped
        for path in empty:
            print(f"cifarx compare: no cifarx runs (status.json) under {path}", file=sys.stderr)
    if not rows:
        print(f"cifarx compare: error: no cifarx runs (status.json) under {', '.join(args.paths)}", file=sys.stderr)
        return 2
    if args.csv == "-":
        sys.stdout.write(to_csv(rows))
        return 0
    if args.csv:
        Path(args.csv).write_text(to_csv(rows))
    if args.format == "markdown":
        sys.stdout.write(to_markdown(rows))
        return 0
    shared = os.path.commonpath([r["run"] for r in rows]) if len(rows) > 1 else str(Path(rows[0]["run"]).parent)
    print_rows(rows, f"{len(rows)} runs under {short_path(shared)}, sorted by {args.sort}")
    return 0
