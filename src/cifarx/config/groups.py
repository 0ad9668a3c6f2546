"""Which config groups and options each command offers: for `cifarx <command> --help` and for
one-line errors that name the command an option belongs to.

Groups live in ``conf/<group>/``; a group only one command offers (its experiments) lives in
``conf/commands/<command>/<group>/``, which that command adds to Hydra's search path.

An option that only some commands can use says so in its header: ``# @commands train`` (a
comma-separated list, no spaces; before any other comment line, beside ``# @package``). The other
commands neither offer it (help, "choose one of", "did you mean") nor accept it: augmentation
and normalisation are layers of a trained model, meaningless to classic, extract and data.
"""

from __future__ import annotations

import functools
from pathlib import Path

COMMANDS_DIR = "commands"


@functools.cache
def _defaults(path: Path) -> list:
    """A YAML file's defaults list (conf/ does not change while cifarx runs: read once)."""
    import yaml

    return (yaml.safe_load(path.read_text()) or {}).get("defaults") or []


def _defaults_groups(path: Path) -> list[str]:
    """The config groups a YAML file's defaults list names (``override /clf: knn`` -> clf)."""
    names = [next(iter(d)) for d in _defaults(path) if isinstance(d, dict)]
    return [n.replace("override ", "").strip().lstrip("+/").split("@")[0] for n in names]


def command_conf(relative: str) -> str:
    """Resolver ``${cifarx_conf:commands/train}``: an absolute path under conf/ (for hydra.searchpath)."""
    from cifarx.config.schema import config_dir

    return str(config_dir() / relative)


def group_dirs(command: str, group: str) -> list[Path]:
    from cifarx.config.schema import config_dir

    root = config_dir()
    return [d for d in (root / group, root / COMMANDS_DIR / command / group) if d.is_dir()]


def offered(command: str, option: Path) -> bool:
    """Whether ``command`` can use this option file (its ``# @commands`` header tag, if any)."""
    from cifarx.config.conffile import read

    only = read(option).tags.get("commands")
    return only is None or command in only.split(",")


def command_groups(command: str) -> dict[str, list[str]]:
    """{group: options} that ``command`` composes, and where its sweeps can run."""
    from cifarx.config.schema import config_dir

    root = config_dir()
    found = {}
    for group in sorted(_defaults_groups(root / f"{command}.yaml")):
        dirs = group_dirs(command, group)
        if dirs and not group.startswith("hydra"):
            found[group] = sorted({p.stem for d in dirs for p in d.glob("*.yaml") if offered(command, p)})
    found["hydra/launcher"] = ["basic", *sorted(p.stem for p in (root / "hydra" / "launcher").glob("*.yaml"))]
    return found


def commands_with_group(group: str) -> list[str]:
    """The commands whose primary config (conf/<command>.yaml) has ``group`` in its defaults."""
    from cifarx.config.schema import config_dir

    return [p.stem for p in sorted(config_dir().glob("*.yaml")) if group in _defaults_groups(p)]


def experiment_problem(command: str, overrides: list[str]) -> str | None:
    """``experiment=X`` where X is another command's experiment: one line naming whose it is."""
    chosen = [o.split("=", 1)[1].strip() for o in overrides if o.lstrip("+").startswith("experiment=")]
    if not chosen:
        return None
    ours = command_groups(command).get("experiment", [])
    if chosen[-1] in ours:
        return None
    owners = [c for c in commands_with_group("experiment") if c != command
              and chosen[-1] in command_groups(c).get("experiment", [])]
    if not owners:
        return None  # unknown everywhere: Hydra's own error lists this command's choices
    return f"experiment={chosen[-1]} is a cifarx {owners[0]} experiment; cifarx {command}'s experiments: " \
           f"{', '.join(ours) or 'none'}"


def unoffered_problem(command: str, overrides: list[str]) -> str | None:
    """``group=option`` where the option exists but ``command`` cannot use it (``# @commands``)."""
    groups = command_groups(command)
    for item in overrides:
        key, eq, value = item.lstrip("+").partition("=")
        group, option = key.replace("override ", "").strip(), value.strip()
        if not eq or group not in groups or option in groups[group] or "," in option:
            continue
        users = [c for c in commands_with_group(group) if option in command_groups(c).get(group, [])]
        if users:
            only = " and ".join(f"cifarx {c}" for c in users)
            return f"{group}={option} means nothing to cifarx {command} (only {only} uses it); " \
                   f"cifarx {command}'s {group} options: {', '.join(groups[group]) or 'none'}"
    return None


def launcher_problem(command: str, overrides: list[str]) -> str | None:
    """``hydra/launcher=X`` that neither conf/hydra/launcher/ nor an installed Hydra plugin has
    (pre-flight skips hydra overrides; Hydra's own error would be a page)."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    from cifarx.config.suggest import closest

    chosen = [o.split("=", 1)[1].strip() for o in overrides if o.lstrip("+").startswith("hydra/launcher=")]
    if not chosen or "," in chosen[-1] or "(" in chosen[-1]:
        return None
    Plugins.instance()  # registers the installed launchers (joblib, submitit_*) in the ConfigStore
    offered = command_groups(command)["hydra/launcher"]
    plugins = {n.removesuffix(".yaml") for n in ConfigStore.instance().repo.get("hydra", {}).get("launcher", {})}
    if chosen[-1] in {*offered, *plugins}:
        return None
    hint = closest(chosen[-1], [*offered, *sorted(plugins)])
    return f"unknown hydra/launcher '{chosen[-1]}'; choose one of: {', '.join(offered)}" + \
        (f"; did you mean hydra/launcher={hint}?" if hint else "")


def groups_help(command: str) -> str:
    """The ``== Configuration groups ==`` lines of ``cifarx <command> --help``."""
    groups = command_groups(command)
    return "\n".join(f"{g}: {', '.join(options)}" for g, options in groups.items()) or "(none)"
