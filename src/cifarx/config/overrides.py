"""Hydra command-line overrides as text: splitting them from flags, quoting values, reading the
run directory they ask for, and the problems Hydra would otherwise report with a traceback."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Hydra's flags that choose another config (each takes a value): a job composed from one is not the
# config pre-flight checked.
CONFIG_FLAGS = ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd", "--experimental-rerun")


def split_overrides(args: Sequence[str]) -> list[str]:
    """The key=value overrides among Hydra's arguments (flags and their values dropped)."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in CONFIG_FLAGS:
            skip = True
            continue
        if arg.startswith("-"):
            continue
        out.append(arg)
    return out


def hydra_quote(value: str) -> str:
    """``value`` as one quoted Hydra override value: spaces, '=', ',', brackets and non-ASCII
    letters stay literal (Hydra's grammar would split or reject them unquoted)."""
    escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
    return f"'{escaped}'"


def unquote(value: str) -> str:
    """An override's value as Hydra reads it: quotes removed and escapes undone
    (``'it\\'s'`` is ``it's``), so the path cifarx uses is the one Hydra uses."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_override(f"key={value}").value()
    except Exception:
        parsed = None
    if isinstance(parsed, str):
        return parsed
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def explicit_dir(overrides: list[str], key: str = "hydra.run.dir") -> str | None:
    """The value of the last ``hydra.run.dir=`` override (or ``hydra.sweep.dir=``, with ``key``),
    unquoted (None when not given)."""
    given = [o.split("=", 1)[1] for o in overrides if o.startswith(f"{key}=")]
    return unquote(given[-1].strip()) if given else None


def output_problem(overrides: list[str]) -> str | None:
    """Can the run directory be created? (Hydra would fail with a traceback otherwise.)"""
    target = explicit_dir(overrides)
    if target is not None and not target.strip():
        return ("hydra.run.dir is empty; give the run's own directory (e.g. hydra.run.dir=outputs/my_run), "
                "or leave it out for a fresh timestamped one")
    from cifarx.run.layout import OUTPUTS

    target = target or OUTPUTS
    path = Path(target).expanduser().absolute()
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot create the run directory '{target}': '{parent}' is a file, not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create the run directory '{target}': '{parent}' is not writable (set hydra.run.dir=...)"
    return None


def unparsable(overrides: list[str]) -> str | None:
    """The first override Hydra's grammar cannot read, with how to quote it (one line)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for item in overrides:
        try:
            parser.parse_overrides([item])
        except Exception:
            key, _, value = item.partition("=")
            return (f"cannot parse the override {item}: values with spaces, non-ASCII letters or characters "
                    f"such as ( ) , = [ ] need quotes: \"{key}={hydra_quote(value)}\" (the outer quotes are for the shell)")
    return None


# Keys whose values are paths: '~' and '$HOME' in them are expanded before Hydra reads them (the
# shell leaves '~' alone after 'data.root=', and Hydra's grammar refuses it unquoted).
PATH_KEYS = ("data.root", "data.cache_dir", "run", "features", "source", "model_path", "resume",
             "hydra.run.dir", "hydra.sweep.dir")
# Hydra's own flags: any other '--word' is an argparse habit.
HYDRA_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--resolve", "--package", "-p",
               "--run", "-r", "--multirun", "-m", "--shell-completion", "-sc", "--config-path", "-cp",
               "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun", "--info", "-i"}


def expand_paths(args: Sequence[str]) -> list[str]:
    """``args`` with '~', '$HOME' and '${HOME}' expanded in the values of PATH_KEYS overrides, in
    each item of a sweep's comma-separated list."""
    home = os.path.expanduser("~")

    def expand(item: str) -> str:
        item = re.sub(r"\$(?:\{HOME\}|HOME\b)", lambda _: home, item)
        return os.path.expanduser(item) if item.startswith("~") else item

    out = []
    for arg in args:
        key, eq, value = arg.partition("=")
        if eq and key.lstrip("+") in PATH_KEYS and ("~" in value or "$" in value):
            value = ",".join(expand(item) for item in value.split(","))
        out.append(f"{key}{eq}{value}")
    return out


def flag_habit(args: Sequence[str]) -> str | None:
    """One line for an argparse habit (``--data.root X`` or ``--data.root=X``): cifarx takes key=value."""
    for i, arg in enumerate(args):
        if not arg.startswith("--") or arg.split("=", 1)[0] in HYDRA_FLAGS:
            continue
        key, eq, value = arg[2:].partition("=")
        if not eq and i + 1 < len(args) and not args[i + 1].startswith("-") and "=" not in args[i + 1]:
            value = args[i + 1]
        return f"cifarx takes key=value, not flags: {key}={value or 'VALUE'} (not {arg})"
    return None


RENAMED = {"data_root": "data.root"}  # keys of earlier releases -> today's


def renamed_key(args: Sequence[str]) -> str | None:
    """One line for a key that has a new name (``data_root=X`` -> ``data.root=X``)."""
    for arg in args:
        key, eq, value = arg.partition("=")
        if eq and key.lstrip("+~") in RENAMED:
            return f"{key.lstrip('+~')} is now {RENAMED[key.lstrip('+~')]}: {RENAMED[key.lstrip('+~')]}={value}"
    return None


VARYING_ENV = "CIFARX_SWEEP_VARYING"  # the keys a sweep varies, for its jobs (launcher workers inherit it)


def varying_keys(config: Any) -> list[str]:
    """The keys whose value differs between a sweep's jobs: the sweep overrides (``a=1,2``,
    ``range(...)``, ...) and an optimising sweeper's search space (Optuna's ``params``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys = []
    try:
        for override in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task)):
            if override.is_sweep_override():
                keys.append(override.get_key_element().lstrip("+~"))
    except Exception:
        pass
    params = config.hydra.get("sweeper", {}).get("params") or {}
    return list(dict.fromkeys([*keys, *map(str, params)]))


def varying_overrides(task_overrides) -> list[str]:
    """A sweep job's overrides of the keys its sweep varies (all of them outside a known sweep)."""
    varying = os.environ.get(VARYING_ENV)
    items = [str(o) for o in task_overrides]
    if varying is not None:
        keys = set(varying.split(",")) - {""}
        items = [o for o in items if o.split("=", 1)[0].lstrip("+~") in keys]
    return items


def job_dirname(task_overrides) -> str:
    """A sweep job's directory name: what tells it apart (Hydra's own ``override_dirname`` also
    repeats the overrides every job shares). A resolver in conf/hydra/output."""
    return ",".join(varying_overrides(task_overrides)).replace("/", "-")
