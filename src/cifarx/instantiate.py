"""Build what a config group names: ``_target_`` is the class to call and the group's other keys
are its arguments, as with Hydra's ``instantiate``.

A target that is a dataclass (a model, a schedule) is its own schema. The group's keys are merged
onto it first, so a wrong type or an unknown key fails in one line naming the group
(``model.width='abc' ...``), and the range checks in its ``__post_init__`` run when the object is
made: at pre-flight, before any run directory exists. Any other target (a Keras optimizer) is
checked against its signature first, then built by ``hydra.utils.instantiate``.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cifarx.errors import CifarxError, ConfigError, one_line

RESERVED = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")


def target_of(node, group: str):
    """The class (or function) that ``group`` names by ``_target_``."""
    from hydra.utils import get_object

    target = node.get("_target_") if isinstance(node, (DictConfig, dict)) else None
    if not target:
        raise ConfigError(f"{group} names nothing to build: its YAML file needs a _target_ "
                          f"(the class it builds; see conf/{group}/)")
    quiet = logging.getLogger("hydra.utils")  # get_object logs its failure over several lines first
    level, quiet.level = quiet.level, logging.CRITICAL
    try:
        return get_object(str(target))
    except Exception as exc:
        raise ConfigError(f"{group}._target_={target!r} cannot be imported "
                          f"({one_line(str(exc)) or type(exc).__name__})") from exc
    finally:
        quiet.level = level


def arguments(node) -> dict[str, Any]:
    """The group's keys that are arguments of its target (Hydra's own ``_..._`` keys removed)."""
    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    return {k: v for k, v in plain.items() if k not in RESERVED}


def accepted(target) -> list[str]:
    """The keyword arguments ``target`` takes by name (its ``**kwargs``, if any, do not count)."""
    if dataclasses.is_dataclass(target):
        return [f.name for f in dataclasses.fields(target) if f.init]
    params = inspect.signature(target).parameters.values()
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def check_arguments(node, group: str, runtime: tuple[str, ...] = ()) -> type:
    """Refuse a key the target does not take; returns the target. ``runtime`` names arguments the
    caller supplies when it builds the object (they may also be set in the YAML)."""
    target = target_of(node, group)
    names = accepted(target)
    for key in arguments(node):
        if key not in names and key not in runtime:
            raise ConfigError(f"{group}.{key} is not an argument of {node._target_}; it takes: {', '.join(names)}")
    return target


def instantiate(node, group: str, **runtime) -> Any:
    """The object ``group`` names, built from its keys (``runtime`` keys override them)."""
    target = check_arguments(node, group, tuple(runtime))
    if dataclasses.is_dataclass(target):
        from omegaconf.errors import OmegaConfBaseException

        try:
            typed = OmegaConf.merge(OmegaConf.structured(target), {**arguments(node), **runtime})
            return OmegaConf.to_object(typed)  # the dataclass itself: its __post_init__ checks run here
        except OmegaConfBaseException as exc:
            key = getattr(exc, "full_key", None) or "?"
            raise ConfigError(f"{group}.{key}: {str(exc).splitlines()[0]}") from exc
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    floats = _floats_where_floats_are_meant(target, arguments(node))
    try:
        return hydra_instantiate(node, _convert_="all", **floats, **runtime)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, CifarxError):
            raise cause from None
        raise ConfigError(f"{group}={node._target_}: {one_line(str(cause))[:300]}") from exc


def _floats_where_floats_are_meant(target, args: dict[str, Any]) -> dict[str, float]:
    """YAML and the command line read ``momentum=0`` as an int; an argument whose default is a
    float gets a float (Keras' optimizers refuse an int momentum)."""
    params = inspect.signature(target).parameters
    return {k: float(v) for k, v in args.items() if isinstance(v, int) and not isinstance(v, bool)
            and k in params and isinstance(params[k].default, float)}
