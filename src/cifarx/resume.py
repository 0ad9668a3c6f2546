"""`cifarx train resume=<run dir>`: what a resume may change, where it continues, and the run's
own config it continues with. (Which epochs the checkpoint holds is the run directory's
business: cifarx.artifacts.reconcile_history.)"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from cifarx.errors import ConfigError, one_line
from cifarx.overrides import hydra_quote, unquote

log = logging.getLogger("cifarx")

RESUMABLE = ("interrupted", "failed", "completed", "running")  # statuses a run can be resumed from
# What `resume=` may change: the length of the run (to finish or extend it), and Hydra's own keys.
RESUME_OVERRIDES = ("trainer.epochs",)


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
    """Hydra's arguments for continuing run ``resume`` in its own directory; Hydra's copy of this
    invocation goes beside its own. The path is taken verbatim (any name: '=', ',', spaces) and
    handed to Hydra quoted."""
    run_path = str(Path(unquote(resume)).expanduser().resolve())
    kept = [a for a in args if not a.startswith(("resume=", "hydra.run.dir="))]
    return kept + [f"resume={hydra_quote(run_path)}", f"hydra.run.dir={hydra_quote(run_path)}",
                   "hydra.output_subdir=.hydra/resume"]


def resume_config(cfg: DictConfig) -> DictConfig:
    """The interrupted run's own config, with only ``trainer.epochs`` taken from the command line."""
    from hydra.core.hydra_config import HydraConfig

    from cifarx.artifacts import reconcile_history

    run_dir = Path(str(cfg.resume)).expanduser().resolve()
    saved = upgrade(OmegaConf.load(run_dir / "config.yaml"))
    try:  # a run saved by an older cifarx lacks newer keys: they take their defaults (tracking off, no budget)
        from cifarx.config import TrainConfig

        saved = OmegaConf.merge(OmegaConf.structured(TrainConfig), saved)
    except Exception as exc:
        log.warning("the saved config of %s does not match today's schema (%s); resuming with it as saved",
                    run_dir, one_line(str(exc))[:200])
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    for item in overrides:
        if item.startswith("trainer.epochs="):
            saved.trainer.epochs = int(item.split("=", 1)[1])
    saved.resume = str(run_dir)
    done = reconcile_history(run_dir, write=False)  # the epochs last.keras holds
    planned = int(OmegaConf.load(run_dir / "config.yaml").trainer.epochs)
    from cifarx.instantiate import instantiate

    if instantiate(saved.schedule, "schedule").fixed_length and int(saved.trainer.epochs) > planned:
        raise ConfigError(f"schedule={saved.schedule.get('name')} of run {run_dir} ends at its {planned} epochs; "
                          f"trainer.epochs={saved.trainer.epochs} would train on at the final learning rate "
                          "(start a new run with more epochs)")
    if done >= int(saved.trainer.epochs):
        raise ConfigError(f"run {run_dir} already has {done} epochs; pass trainer.epochs > {done} to extend it")
    return saved


def upgrade(saved: DictConfig) -> DictConfig:
    """A config saved before the model, optimizer and schedule groups named the class they build:
    each gets the ``_target_`` of today's ``conf/<group>/<name>.yaml`` and keeps the keys its class
    takes (the old flat schemas held every schedule's knobs); the optimizer's ``ema`` becomes
    Keras' ``use_ema``/``ema_momentum`` and its ``name`` (the group's option) goes."""
    import yaml

    from cifarx.config import config_dir
    from cifarx.instantiate import accepted, target_of

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
