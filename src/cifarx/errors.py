"""User-facing errors: each one becomes a single line on stderr and a non-zero exit."""

from __future__ import annotations

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



def require(ok: bool, message: str) -> None:
    """Keras' style of argument check: the message repeats the bad value and says what is valid."""
    if not ok:
        raise ConfigError(message)


def one_line(text: str) -> str:
    """Collapse a multi-line message into one line."""
    return re.sub(r"\s+", " ", str(text)).strip()


def describe_compose_error(exc: BaseException, command: str | None = None) -> str:
    """Turn a Hydra/OmegaConf composition error into one clear line.

    Hydra's own messages span several lines (and mention HYDRA_FULL_ERROR); users get the bad
    value and the valid choices instead.
    """
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigKeyError, ValidationError

    from cifarx.groups import command_groups, commands_with_group

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
    return one_line(" ".join(lines[:3])) or f"{type(cause).__name__}: {one_line(str(cause))}"
