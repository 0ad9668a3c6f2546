"""Build what a config group names: ``_target_`` is the class to call and the group's other keys
are its arguments, as with Hydra's ``instantiate``.

A target that is a dataclass (a model, a schedule) is its own schema. The group's keys are merged
onto it first, so a wrong type or an unknown key fails in one line naming the group
(``model.width='abc' ...``), and the range checks in its ``__post_init__`` run when the object is
made: at pre-flight, before any run directory exists. Any other target (a Keras optimizer) is
checked against its signature first, then built by ``hydra.utils.instantiate``.

A config is data, not code, wherever it was read from (a run directory's ``config.yaml`` may have
been copied from anyone): every ``_target_`` must resolve to a class of its group's allowed kind
(:data:`ALLOWED`) before anything is called, and no argument may name another ``_target_``.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from cifarx.errors import CifarxError, ConfigError, one_line

RESERVED = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")


def _architecture(obj) -> bool:
    from cifarx.models.architecture import Architecture

    return isinstance(obj, type) and issubclass(obj, Architecture)


def _schedule(obj) -> bool:
    from cifarx.training.schedules import Schedule

    return isinstance(obj, type) and issubclass(obj, Schedule)


def _keras_optimizer(obj) -> bool:
    from cifarx.process import import_keras_quietly

    keras = import_keras_quietly()  # quiet: TensorFlow's start-up lines stay off the terminal
    return isinstance(obj, type) and issubclass(obj, keras.optimizers.Optimizer)


def _sklearn_estimator(obj) -> bool:
    from sklearn.base import BaseEstimator
    from sklearn.pipeline import make_pipeline, make_union

    return (isinstance(obj, type) and issubclass(obj, BaseEstimator)) or obj in (make_pipeline, make_union)


# What each group may build: (description for the refusal, check of the imported object).
ALLOWED = {
    "model": ("a cifarx Architecture class (cifarx.models.architecture.Architecture)", _architecture),
    "schedule": ("a cifarx schedule class (cifarx.training.schedules.Schedule)", _schedule),
    "optimizer": ("a Keras optimizer class (e.g. keras.optimizers.Adam)", _keras_optimizer),
    "clf": ("a scikit-learn estimator class (or sklearn.pipeline.make_pipeline of them)", _sklearn_estimator),
}


def nested_targets(node, where: str) -> list[tuple[str, Any]]:
    """Every ``(key path, _target_)`` inside ``node``'s arguments (lists included), depth first."""
    found = []
    items = (node.items() if isinstance(node, (DictConfig, dict))
             else enumerate(node) if isinstance(node, (ListConfig, list, tuple)) else ())
    for key, value in items:
        if isinstance(value, (DictConfig, dict)) and value.get("_target_") is not None:
            found.append((f"{where}.{key}", value.get("_target_")))
        if isinstance(value, (DictConfig, dict, ListConfig, list, tuple)):
            found += nested_targets(value, f"{where}.{key}")
    return found


def require_allowed(obj, target: str, group: str) -> None:
    """ConfigError unless ``obj`` (what ``group``'s ``_target_`` names) is of the group's allowed kind."""
    kind = group.split(".")[0]
    if kind in ALLOWED and not ALLOWED[kind][1](obj):
        raise ConfigError(f"{group}._target_={target!r} is not {ALLOWED[kind][0]}; cifarx calls nothing else "
                          "from a config (a config is data, not code)")


# Modules that moved since runs were recorded (cifarx 0.1's flat layout): a run's saved config still builds.
MOVED_MODULES = {"cifarx.schedules.": "cifarx.training.schedules."}


def current_path(target: str) -> str:
    """``target`` under today's module layout."""
    for old, new in MOVED_MODULES.items():
        if target.startswith(old):
            return new + target[len(old):]
    return target


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
        obj = get_object(current_path(str(target)))
    except Exception as exc:
        raise ConfigError(f"{group}._target_={target!r} cannot be imported "
                          f"({one_line(str(exc)) or type(exc).__name__})") from exc
    finally:
        quiet.level = level
    require_allowed(obj, str(target), group)
    return obj


def check_tree(node, group: str) -> None:
    """Check ``group``'s ``_target_`` and every nested one (e.g. a pipeline's steps) before any is called."""
    target_of(node, group)
    for where, target in nested_targets(node, group):
        target_of({"_target_": target}, where)


def arguments(node) -> dict[str, Any]:
    """The group's keys that are arguments of its target (Hydra's own ``_..._`` keys removed)."""
    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    return {k: v for k, v in plain.items() if k not in RESERVED}


def accepted(target) -> list[str]:
    """The keyword arguments ``target`` takes by name. Its ``**kwargs`` count only in a subclass,
    as its parent's arguments (a class that extends a Keras optimizer passes them on)."""
    if dataclasses.is_dataclass(target):
        return [f.name for f in dataclasses.fields(target) if f.init]
    return list(_named_parameters(target))


def _named_parameters(target) -> dict[str, inspect.Parameter]:
    """``target``'s named parameters, and for a subclass whose ``**kwargs`` go to its parent, the
    parent's too (its own first)."""
    params = inspect.signature(target).parameters
    named = {k: p for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if isinstance(target, type) and any(p.kind == p.VAR_KEYWORD for p in params.values()) and len(target.__mro__) > 2:
        named.update({k: p for k, p in _named_parameters(target.__mro__[1]).items() if k not in named})
    return named


def check_arguments(node, group: str, runtime: tuple[str, ...] = ()) -> type:
    """Refuse a key the target does not take, or an argument that names a ``_target_`` of its own
    (Hydra would build it: nothing but the group's own class is built); returns the target.
    ``runtime`` names arguments the caller supplies when it builds the object (they may also be set
    in the YAML)."""
    target = target_of(node, group)
    special = [k for k in node if k in RESERVED and k != "_target_"]
    if special:  # _args_ would hand the class positional objects, _partial_ a callable: none is needed
        raise ConfigError(f"{group}.{special[0]} is not allowed: {group} is built from its _target_ and named "
                          "arguments only (a config is data, not code)")
    inner = nested_targets(arguments(node), group)
    if inner:
        raise ConfigError(f"{inner[0][0]}._target_={inner[0][1]!r}: an argument of {group} cannot build an object; "
                          "cifarx builds only the group's own class (a config is data, not code)")
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
        return hydra_instantiate(node, _convert_="all", _recursive_=False, **floats, **runtime)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, CifarxError):
            raise cause from None
        raise ConfigError(f"{group}={node._target_}: {one_line(str(cause))[:300]}") from exc


def _floats_where_floats_are_meant(target, args: dict[str, Any]) -> dict[str, float]:
    """YAML and the command line read ``momentum=0`` as an int; an argument whose default is a
    float gets a float (Keras' optimizers refuse an int momentum)."""
    params = _named_parameters(target)
    return {k: float(v) for k, v in args.items() if isinstance(v, int) and not isinstance(v, bool)
            and k in params and isinstance(params[k].default, float)}
