"""One line for a config that does not compose: the bad value, the valid choices, and for a
misspelled key or choice "did you mean" (from the keys that config really has)."""

from __future__ import annotations

import re

from cifarx.config.composition import compose_quietly
from cifarx.config.groups import command_groups, commands_with_group
from cifarx.config.suggest import closest, config_paths
from cifarx.errors import one_line


def describe_compose_error(exc: BaseException, command: str | None = None, overrides: list[str] | None = None) -> str:
    """Turn a Hydra/OmegaConf composition error into one clear line.

    Hydra's own messages span several lines (and mention HYDRA_FULL_ERROR); users get the bad
    value, the valid choices and, for a misspelling, "did you mean" (``overrides``: the ones
    composed, whose group choices decide which keys exist).
    """
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigKeyError, ValidationError

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
