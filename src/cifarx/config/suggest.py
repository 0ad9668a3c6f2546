""""Did you mean ...?" for misspelled config keys, groups, group options and help topics."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``word`` most likely misspells, or None.

    A dotted key is first matched among its siblings (``trainer.epoch`` -> ``trainer.epochs``),
    a bare name also against the last part of every key (``epochs`` -> ``trainer.epochs``), then
    the whole list by difflib's ratio; among equally close ones a transposition wins
    (``vgg91`` -> ``vgg19``, not ``vgg16``).
    """
    names = [c for c in dict.fromkeys(candidates) if c and c != word]
    if not word or not names:
        return None
    folded = [c for c in names if c.casefold() == word.casefold()]
    if folded:
        return folded[0]
    parent, _, leaf = word.rpartition(".")
    if parent:
        siblings = {c.rpartition(".")[2]: c for c in names if c.rpartition(".")[0] == parent}
        leaf = ALIASES.get(leaf, leaf)
        match = _best(leaf, list(siblings))
        if match:
            return siblings[match]
        if siblings:  # a known section: a key from elsewhere (or the section itself) would mislead
            return None
    same_leaf = [c for c in names if c.rpartition(".")[2] == leaf]
    if len(same_leaf) == 1:
        return same_leaf[0]
    return _best(word, names)


ALIASES = {"lr": "learning_rate", "bs": "batch_size", "epoch": "epochs"}  # habits from other tools


def _best(word: str, names: list[str]) -> str | None:
    scored = sorted(((difflib.SequenceMatcher(None, word, n).ratio(), n) for n in names), reverse=True)
    scored = [(s, n) for s, n in scored if s >= 0.6]
    if not scored:
        return None
    top = [n for s, n in scored if s == scored[0][0]]
    swapped = [n for n in top if sorted(n) == sorted(word)]
    return (swapped or top)[0]


def config_paths(cfg, prefix: str = "") -> list[str]:
    """Every dotted key of a composed config, mappings included (``trainer``, ``trainer.epochs``)."""
    from omegaconf import DictConfig

    out = []
    for key in cfg.keys() if isinstance(cfg, DictConfig) else []:
        if prefix == "" and key == "hydra":
            continue
        path = f"{prefix}{key}"
        out.append(path)
        out += config_paths(cfg._get_node(key), path + ".")
    return out


def compose_quietly(command: str, overrides: list[str]):
    """The command's config with these overrides, or None when they do not compose."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from cifarx.config.schema import config_dir
    from cifarx.run.lifecycle import register_resolvers

    register_resolvers()
    try:
        if GlobalHydra.instance().is_initialized():  # inside a Hydra job: its config search path is this one
            return compose(config_name=command, overrides=overrides)
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name=command):
            return compose(config_name=command, overrides=overrides)
    except Exception:
        return None


def known_keys(command: str, overrides: list[str], bad: str) -> list[str]:
    """The keys ``command`` has with the other overrides (their group choices decide the model's,
    the optimizer's ... keys), or with none of them when those do not compose either."""
    others = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != bad]
    cfg = compose_quietly(command, others)
    if cfg is None:
        cfg = compose_quietly(command, [])
    return config_paths(cfg) if cfg is not None else []


def key_hint(command: str | None, key: str, keys: list[str], overrides: list[str] | None = None) -> str:
    """``; did you mean trainer.epochs?`` (or ``model=vgg16?`` where a group was meant), or ''."""
    from cifarx.config.groups import command_groups

    groups = list(command_groups(command)) if command else []
    given = [o.lstrip("+~").split("=", 1)[0] for o in overrides or []]
    longer = [g for g in given if g.startswith(key + ".")]  # Hydra names the first missing part: trainr
    match = closest(longer[-1] if longer else key, [*keys, *(g for g in groups if g not in keys)])
    if match is None:
        return ""
    values = [o.split("=", 1)[1] for o in overrides or [] if o.lstrip("+~").split("=", 1)[0] == key and "=" in o]
    if match in groups and values:
        return f"; did you mean {match}={values[-1]}?"
    return f"; did you mean {match}?"
