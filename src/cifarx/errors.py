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


class Pruned(Exception):
    """A search's pruner stopped this trial after an epoch (cifarx.commands.search): not an error."""


class TrainingDiverged(CifarxError):
    """The loss became NaN or infinite."""



def require(ok: bool, message: str) -> None:
    """Keras' style of argument check: the message repeats the bad value and says what is valid."""
    if not ok:
        raise ConfigError(message)


def one_line(text: str) -> str:
    """Collapse a multi-line message into one line."""
    return re.sub(r"\s+", " ", str(text)).strip()


def describe_compose_error(exc: BaseException, command: str | None = None, overrides: list[str] | None = None) -> str:
    """Turn a Hydra/OmegaConf composition error into one clear line.

    Hydra's own messages span several lines (and mention HYDRA_FULL_ERROR); users get the bad
    value, the valid choices and, for a misspelling, "did you mean" (``overrides``: the ones
    composed, whose group choices decide which keys exist).
    """
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigKeyError, ValidationError

    from cifarx.config.groups import command_groups, commands_with_group
    from cifarx.config.suggest import closest, key_hint, known_keys

    if isinstance(exc, MissingConfigException):
        missing = exc.missing_cfg_file or ""
        group, _, name = missing.rpartition("/")
        choices = list(exc.options or [])
        if command and group in command_groups(command):  # only what this command offers (cifarx.config.groups)
            choices = command_groups(command)[group]
        options = ", ".join(choices)
        hint = closest(name, choices)
        if group and options:
            return f"unknown {group} '{name}'; choose one of: {options}" + \
                (f"; did you mean {group}={hint}?" if hint else "")
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
        if not owners and command:
            where = key_hint(command, group, known_keys(command, overrides or [], group), overrides)
        return f"{group} is not an option of {f'cifarx {command}' if command else 'this command'}{where}"
    unknown_key = "To append to your config" in text or "not in struct" in str(cause)
    if isinstance(cause, ConfigKeyError) or unknown_key:
        key = getattr(cause, "full_key", None) or (override.group(1) if override else "")
        users = commands_with_group(key.split(".")[0]) if key else []
        known = known_keys(command, overrides or [], key) if command and key else []
        ours = any(k.split(".")[0] == key.split(".")[0] for k in known)  # a section of this command (evaluate's data)
        owners = [c for c in users if c != command] if command not in users and not ours else []  # another command's
        if owners:
            return f"{key} is not an option of {f'cifarx {command}' if command else 'this command'}; it belongs to " \
                   + " and ".join(f"cifarx {c}" for c in owners)
        hint = key_hint(command, key, known, overrides) if command and key else ""
        listing = f"`cifarx {command} --help` lists every key" if command else "`--cfg job` shows every key"
        return f"unknown config key '{key}'" + (hint or f" (check the spelling; {listing})")
    if isinstance(cause, ValidationError):
        first = str(cause).split("\n")[0]
        key = getattr(cause, "full_key", None) or (override.group(1) if override else "")
        return f"invalid value for '{key}': {first}" if key else first
    lines = [ln for ln in text.split("\n") if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
    return one_line(" ".join(lines[:3])) or f"{type(cause).__name__}: {one_line(str(cause))}"


EXIT_PARTIAL = 3  # done, but some inputs were left out: a command's result says {"outcome": "partial"}


class CommandExit(BaseException):
    """A command ending with an exit status, raised below the CLI: only ``cli.main`` turns it into the
    process's exit code (printing ``message``, when there is one, on stderr). A library caller of
    ``run_command`` catches it like any exception. A BaseException, as SystemExit is, so that Hydra's
    job runner and callbacks pass it through instead of reporting a crash."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
