"""The pre-flight check: compose and validate a command's config before Hydra creates a run
directory, so a bad override never leaves a half-made run behind."""

from __future__ import annotations

from cifarx.overrides import output_problem, unparsable


def preflight(command: str, overrides: list[str]) -> str | None:
    """Compose and validate the config before Hydra creates a run directory.

    Returns a one-line error message, or None when the config is good. Catching errors here
    means a bad override never leaves a half-made run directory behind.
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from cifarx.commands import validate
    from cifarx.config import config_dir
    from cifarx.errors import CifarxError, describe_compose_error
    from cifarx.groups import experiment_problem
    from cifarx.runtime import register_resolvers

    register_resolvers()
    problem = output_problem(overrides)
    if problem:
        return problem
    plain = [o for o in overrides if not o.lstrip("+~").startswith("hydra") or o.startswith("hydra.searchpath=")]
    problem = unparsable(overrides) or experiment_problem(command, plain)
    if problem:
        return problem
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name=command):
            cfg = compose(config_name=command, overrides=plain)
    except Exception as exc:  # Hydra wraps everything; we only need the message
        return describe_compose_error(exc, command)
    try:
        OmegaConf.resolve(cfg)
        validate(command, cfg, preflight=True)
    except CifarxError as exc:
        return str(exc)
    except Exception as exc:
        return describe_compose_error(exc, command)
    return None
