"""The pre-flight check: compose and validate a command's config before Hydra creates a run
directory, so a bad override never leaves a half-made run behind."""

from __future__ import annotations

from cifarx.config.overrides import output_problem, unparsable


def preflight(command: str, overrides: list[str]) -> str | None:
    """Compose and validate the config before Hydra creates a run directory.

    Returns a one-line error message, or None when the config is good. Catching errors here
    means a bad override never leaves a half-made run directory behind.
    """
    from omegaconf import OmegaConf

    from cifarx.commands.registry import validate
    from cifarx.config.composition import compose, register_resolvers
    from cifarx.config.groups import experiment_problem, launcher_problem, unoffered_problem
    from cifarx.config.messages import describe_compose_error
    from cifarx.errors import CifarxError

    register_resolvers()
    problem = output_problem(overrides)
    if problem:
        return problem
    plain = [o for o in overrides if not o.lstrip("+~").startswith("hydra") or o.startswith("hydra.searchpath=")]
    problem = unparsable(overrides) or experiment_problem(command, plain) or unoffered_problem(command, plain) \
        or launcher_problem(command, overrides)
    if problem:
        return problem
    try:
        cfg = compose(command, plain)
    except Exception as exc:  # Hydra wraps everything; we only need the message
        return describe_compose_error(exc, command, plain)
    try:
        OmegaConf.resolve(cfg)
        validate(command, cfg)
        if command == "train" and cfg.get("resume") is not None:  # the run's own config, its length, its data
            from cifarx.run.resume import resume_config

            resume_config(cfg, plain)
    except CifarxError as exc:
        return str(exc)
    except Exception as exc:
        return describe_compose_error(exc, command, plain)
    return None


def sweep_variants(overrides: list[str]) -> list[tuple[str | None, list[str]]]:
    """Configs that between them hold every value of every swept key (``k=a,b``, ``range(...)``):
    the first value of each, then each other value once. Each comes with the sweep it varies (None
    for the first). Sweeps that cannot be listed (``interval``, ``glob``) keep the config's default."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    fixed, swept = [], []
    for item in overrides:
        try:
            override = parser.parse_override(item)
        except Exception:
            fixed.append(item)  # unparsable: preflight names it
            continue
        if not override.is_sweep_override():
            fixed.append(item)
            continue
        try:
            values = list(override.sweep_string_iterator())
        except Exception:
            continue
        if values:
            swept.append((item, override.get_key_element(), values))
    first = [f"{key}={values[0]}" for _, key, values in swept]
    variants: list[tuple[str | None, list[str]]] = [(None, fixed + first)]
    for i, (item, key, values) in enumerate(swept):
        for value in values[1:]:
            variants.append((item, fixed + first[:i] + [f"{key}={value}"] + first[i + 1:]))
    return variants


def preflight_sweep(command: str, overrides: list[str]) -> str | None:
    """Pre-flight of a ``-m`` sweep: one line for the first bad value, naming the sweep it is in."""
    from cifarx.config.overrides import unparsable

    problem = unparsable(overrides)
    if problem:
        return problem
    for sweep, variant in sweep_variants(overrides):
        problem = preflight(command, variant)
        if problem:
            return problem + (f" (in the sweep {sweep})" if sweep else "")
    return None
