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
