"""User-facing errors: each one becomes a single line on stderr and a non-zero exit."""

from __future__ import annotations

import functools
import re


class CifarxError(Exception):
    """A problem the user can fix (bad config, bad data, missing files). No traceback is shown."""


class ConfigError(CifarxError):
    """An invalid configuration value or override."""


class DataError(CifarxError):
    """A data source that is missing, malformed or corrupt."""


class RunError(CifarxError):
    """A run directory that is missing, incomplete or of the wrong kind."""


class TrainingDiverged(CifarxError):
    """The loss became NaN or infinite."""


def one_line(text: str) -> str:
    """Collapse a multi-line message into one line."""
    return re.sub(r"\s+", " ", str(text)).strip()


@functools.lru_cache(maxsize=None)
def _defaults(path) -> list:
    """A YAML file's defaults list (conf/ does not change while cifarx runs: read once)."""
    import yaml

    return (yaml.safe_load(path.read_text()) or {}).get("defaults") or []


def _defaults_groups(path) -> list[str]:
    """The config groups a YAML file's defaults list names (``override /clf: knn`` -> clf)."""
    names = [next(iter(d)) for d in _defaults(path) if isinstance(d, dict)]
    return [n.replace("override ", "").strip().lstrip("+/").split("@")[0] for n in names]


def commands_with_group(group: str) -> list[str]:
    """The commands whose primary config (conf/<command>.yaml) has ``group`` in its defaults."""
    from cifarx.config import config_dir

    return [p.stem for p in sorted(config_dir().glob("*.yaml")) if group in _defaults_groups(p)]


def _experiment_groups(folder, name: str) -> set[str]:
    """The groups an experiment sets, through the experiments it builds on (``- fast_gpu``)."""
    path = folder / f"{name}.yaml"
    groups = set(_defaults_groups(path))
    for item in _defaults(path):
        if isinstance(item, str) and item != "_self_" and (folder / f"{item}.yaml").exists():
            groups |= _experiment_groups(folder, item)
    return groups


def command_groups(command: str) -> dict[str, list[str]]:
    """{group: options} that ``command`` composes; experiments only those made for it (every
    group an experiment sets is one of the command's; one that sets no group suits every
    command), and where its sweeps can run."""
    from cifarx.config import config_dir

    root = config_dir()
    groups = [g for g in _defaults_groups(root / f"{command}.yaml") if (root / g).is_dir() and not g.startswith("hydra")]
    found = {}
    for group in sorted(groups):
        options = sorted(p.stem for p in (root / group).glob("*.yaml"))
        if group == "experiment":
            options = [o for o in options if _experiment_groups(root / group, o) <= set(groups)]  # none set: any
        found[group] = options
    found["hydra/launcher"] = ["basic", *sorted(p.stem for p in (root / "hydra" / "launcher").glob("*.yaml"))]
    return found


def experiment_problem(command: str, overrides: list[str]) -> str | None:
    """``experiment=X`` where X is another command's experiment: one line naming whose it is."""
    from cifarx.config import config_dir

    chosen = [o.split("=", 1)[1].strip() for o in overrides if o.lstrip("+").startswith("experiment=")]
    if not chosen or not (config_dir() / "experiment" / f"{chosen[-1]}.yaml").exists():
        return None  # none chosen, or unknown: Hydra's own error lists the choices
    ours = command_groups(command).get("experiment", [])
    if chosen[-1] in ours:
        return None
    owners = [c for c in ("train", "classic") if c != command and chosen[-1] in command_groups(c).get("experiment", [])]
    whose = f" is a cifarx {owners[0]} experiment" if owners else " is not for this command"
    return f"experiment={chosen[-1]}{whose}; cifarx {command}'s experiments: {', '.join(ours) or 'none'}"


def groups_help(command: str) -> str:
    """The ``== Configuration groups ==`` lines of ``cifarx <command> --help``."""
    groups = command_groups(command)
    return "\n".join(f"{g}: {', '.join(options)}" for g, options in groups.items()) or "(none)"


def describe_compose_error(exc: BaseException, command: str | None = None) -> str:
    """Turn a Hydra/OmegaConf composition error into one clear line.

    Hydra's own messages span several lines (and mention HYDRA_FULL_ERROR); users get the bad
    value and the valid choices instead.
    """
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigKeyError, ValidationError

    if isinstance(exc, MissingConfigException):
        missing = exc.missing_cfg_file or ""
        group, _, name = missing.rpartition("/")
        choices = list(exc.options or [])
        if command and group == "experiment":  # only this command's experiments
            choices = command_groups(command).get("experiment", choices)
        options = ", ".join(choices)
        if group and options:
            return f"unknown {group} '{name}'; choose one of: {options}"
        if group:
            return f"unknown {group} '{name}'"
        return one_line(str(exc).split("\n")[0])

    cause: BaseException = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(exc)
    override = re.search(r"Could not override '([^']+)'", text)
    if override and "No match in the defaults list" in text:
        group = override.group(1).lstrip("+~")
        owners = [c for c in commands_with_group(group) if c != command]
        where = f"; it belongs to {' and '.join(f'cifarx {c}' for c in owners)}" if owners else ""
        return f"{group} is not an option of {f'cifarx {command}' if command else 'this command'}{where}"
    unknown_key = "To append to your config" in text or "not in struct" in str(cause)
    if isinstance(cause, ConfigKeyError) or unknown_key:
        key = getattr(cause, "full_key", None) or (override.group(1) if override else "")
        owners = [c for c in commands_with_group(key.split(".")[0]) if c != command] if key else []
        if owners:
            return f"{key} is not an option of {f'cifarx {command}' if command else 'this command'}; it belongs to " \
                   + " and ".join(f"cifarx {c}" for c in owners)
        return f"unknown config key '{key}' (check the spelling; `--cfg job` shows every key)"
    if isinstance(cause, ValidationError):
        first = str(cause).split("\n")[0]
        key = getattr(cause, "full_key", None) or (override.group(1) if override else "")
        return f"invalid value for '{key}': {first}" if key else first
    lines = [ln for ln in text.split("\n") if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
    return one_line(" ".join(lines[:3]))
