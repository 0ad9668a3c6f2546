"""`cifarx train resume=<run dir>`: what a resume may change, where it continues, and the run's
own config it continues with. (Which epochs the checkpoint holds is the run directory's
business: cifarx.run.rundir.reconcile_history.)"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from cifarx.config.overrides import hydra_quote, unquote
from cifarx.errors import ConfigError, one_line
from cifarx.run.atomic_io import read_record

log = logging.getLogger("cifarx")

# What `resume=` may change: the length of the run (to finish or extend it), whether it may go on
# with data whose content changed, whether steps run eagerly (how, not what), and Hydra's own keys.
RESUME_OVERRIDES = ("trainer.epochs", "resume_new_data", "trainer.run_eagerly")


def problem(overrides: list[str], multirun: bool) -> str | None:
    """Why these overrides cannot go with resume= (one line), or None."""
    if multirun:
        return "resume= continues one run; it cannot be combined with -m"
    changed = [o for o in overrides if not o.startswith(("resume=", "hydra.", *(k + "=" for k in RESUME_OVERRIDES)))]
    if changed:
        return (f"resume= continues a run with its own config; refusing overrides that would change the "
                f"experiment: {' '.join(changed)} (allowed: {', '.join(RESUME_OVERRIDES)})")
    return None


def continue_in_place(args: list[str], resume: str) -> list[str]:
    """Hydra's arguments for continuing run ``resume`` in its own directory. Hydra writes no copy of
    this invocation there (its argv, versions and data go into provenance.json's ``resumes`` once the
    resume begins), so a resume refused inside the job changes nothing. The path is read as Hydra reads a value (quotes and escapes
    removed, any name: '=', ',', spaces, quotes) and handed to Hydra quoted."""
    run_path = str(Path(unquote(resume)).expanduser().resolve())
    kept = [a for a in args if not a.startswith(("resume=", "hydra.run.dir="))]
    return kept + [f"resume={hydra_quote(run_path)}", f"hydra.run.dir={hydra_quote(run_path)}",
                   "hydra.output_subdir=null"]


def stage_ends(cfg, history: dict, stopped: bool) -> tuple[int, int]:
    """Where stage 1 ends and where training ends, in epochs, for a run whose checkpoint holds
    ``history``'s rows: ``trainer.epochs``, unless early stopping (``stopped``: recorded in the
    checkpoint) ended stage 1 sooner; a fine-tuning stage adds its epochs after stage 1's last."""
    stages = [int(s) for s in history.get("stage", [])]
    rows = len(history.get("loss", []))
    last = stages[-1] if stages else 1
    first = sum(1 for s in stages if s == 1) if stages else rows
    stage1 = first if last == 2 or stopped else int(cfg.trainer.epochs)
    finetune = cfg.model.get("finetune")
    tuned = finetune is not None and finetune.blocks > 0
    if last == 2 and stopped:
        return stage1, rows
    return stage1, stage1 + (int(finetune.epochs) if tuned else 0)


def held_epochs(run_dir: Path) -> int:
    """The epochs the run's ``last.keras`` holds (0: killed before its first checkpoint)."""
    from cifarx.run.rundir import reconcile_history

    return reconcile_history(run_dir, write=False) if (run_dir / "last.keras").exists() else 0


def resume_config(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The run's own config, with only the RESUME_OVERRIDES among ``overrides`` taken from the
    command line, checked as a new run's would be (its ``_target_``s included: a config read from a
    run directory is data, not code) and against the run: its length, and the data it started on.

    Reads, never writes: a refused resume leaves the run exactly as it was."""
    from cifarx.config.schema import TrainConfig
    from cifarx.config.validate import check_ranges, validate_train_config
    from cifarx.run.layout import CONFIG_FILE, STATUS_FILE

    run_dir = Path(str(cfg.resume)).expanduser().resolve()
    saved = upgrade(OmegaConf.load(run_dir / CONFIG_FILE))
    try:  # a run saved by an older cifarx lacks newer keys: they take their defaults (tracking off, no budget)
        saved = OmegaConf.merge(OmegaConf.structured(TrainConfig), saved)
    except Exception as exc:
        raise ConfigError(f"the saved config of run {run_dir} does not fit cifarx's schema "
                          f"({one_line(str(exc))[:200]}); it cannot be resumed") from exc
    planned = int(saved.trainer.epochs)  # as the run was started (or last extended)
    saved.resume_new_data = False  # an allowance is for the resume that asks for it, not every later one
    for item in overrides:
        key, _, value = item.partition("=")
        if key == "trainer.epochs":
            saved.trainer.epochs = _int(value, key)
        elif key == "resume_new_data":
            saved.resume_new_data = _true(value)
        elif key == "trainer.run_eagerly":
            saved.trainer.run_eagerly = _true(value)
    saved.resume = str(run_dir)
    check_ranges(saved)  # the ranges validate_common checks for a new run
    validate_train_config(saved)
    from cifarx.run.history import checkpoint_stopped
    from cifarx.run.rundir import read_history

    done = held_epochs(run_dir)
    history = {k: v[:done] for k, v in read_history(run_dir / "history.csv").items()} if done else {}
    stage1, total = stage_ends(saved, history, checkpoint_stopped(run_dir / "last.keras"))
    if int(saved.trainer.epochs) < min(done, stage1):
        raise ConfigError(f"run {run_dir} already has {min(done, stage1)} epochs; trainer.epochs="
                          f"{saved.trainer.epochs} would shorten it (leave trainer.epochs out to finish it)")
    from cifarx.config.build import instantiate

    fixed = instantiate(saved.schedule, "schedule").fixed_length
    noun, what, beyond = "schedule", f"schedule={saved.schedule.get('name')}", "at the final learning rate"
    if not fixed and "total_steps" in saved.optimizer:  # optimizer=sgd_lookahead: its averaging spans the run
        fixed, beyond = True, "at its final averaging"
        noun, what = "optimizer", f"optimizer {saved.optimizer._target_.rsplit('.', 1)[-1]}"
    if fixed and int(saved.trainer.epochs) > planned:
        raise ConfigError(f"{what} of run {run_dir} ends at its {planned} epochs; "
                          f"trainer.epochs={saved.trainer.epochs} would train on {beyond} "
                          "(start a new run with more epochs)")
    status = read_record(run_dir / STATUS_FILE).get("status")
    if done >= total and status == "completed":
        raise ConfigError(f"run {run_dir} is complete ({done} epochs{', stopped early' if stage1 < planned else ''}); " + (
            f"its {noun} ends there: start a new run with more epochs" if fixed
            else f"pass trainer.epochs > {int(saved.trainer.epochs)} to extend it"))
    check_data(saved, run_dir)
    return saved


def _true(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes")


def _int(value: str, key: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{key}={value!r} must be an integer") from None


def check_data(saved: DictConfig, run_dir: Path) -> None:
    """Refuse to resume on data whose content differs from what the run started on, unless
    ``resume_new_data=true`` (then provenance records both)."""

    from cifarx.data import load_raw
    from cifarx.errors import DataError
    from cifarx.run.layout import PROVENANCE_FILE

    record = read_record(run_dir / PROVENANCE_FILE)  # the data it trained on last: the first process's, or a resume's
    try:
        hashes = [(part.get("data") or {}).get("sha256") for part in [record, *(record.get("resumes") or [])]]
    except (AttributeError, TypeError):  # a provenance.json edited by hand
        hashes = []
    recorded = [h for h in hashes if h][-1] if any(hashes) else None
    if not recorded:  # stopped before it loaded its data: nothing to compare with
        return
    _, info = load_raw(saved.data.root, saved.data.cache_dir, str(saved.data.get("other_sizes") or "refuse"))
    if info["sha256"] != recorded and not saved.get("resume_new_data"):
        raise DataError(f"the data changed since run {run_dir} started: it trained on sha256 {recorded}, "
                        f"data.root={saved.data.root} now holds sha256 {info['sha256']}; restore that data, or "
                        "pass resume_new_data=true to go on with the new data (provenance records both)")


def upgrade(saved: DictConfig) -> DictConfig:
    """A config saved before the model, optimizer and schedule groups named the class they build:
    each gets the ``_target_`` of today's ``conf/<group>/<name>.yaml`` and keeps the keys its class
    takes (the old flat schemas held every schedule's knobs); the optimizer's ``ema`` becomes
    Keras' ``use_ema``/``ema_momentum`` and its ``name`` (the group's option) goes."""
    import yaml

    from cifarx.config.build import accepted, target_of
    from cifarx.config.schema import config_dir

    for group in ("model", "optimizer", "schedule"):
        node = saved.get(group)
        if not isinstance(node, DictConfig) or "_target_" in node or "name" not in node:
            continue
        name, target = str(node.name), None
        while target is None and (config_dir() / group / f"{name}.yaml").is_file():
            text = yaml.safe_load((config_dir() / group / f"{name}.yaml").read_text()) or {}
            target, name = text.get("_target_"), (text.get("defaults") or [None])[0]
        if target is None:
            continue
        with open_dict(node):
            node._target_ = target
            if group == "optimizer":
                if node.get("ema") is not None:
                    node.use_ema, node.ema_momentum = True, float(node.ema)
                del node["name"]
            takes = accepted(target_of(node, group))
            for key in [k for k in node if k != "_target_" and k not in takes]:
                del node[key]
    return saved
