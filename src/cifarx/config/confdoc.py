"""What each config key means, read from the comments in ``conf/``: the one source of the
explanations ``cifarx <command> --help`` shows (nothing is copied into code).

A key's meaning is the comment on its line (``time_budget_reserve: 0.08  # share of ...``), or a
comment line right above it. A file's description is its leading comment block; ``# @key value``
lines there are header tags (Hydra reads ``@package``; cifarx reads ``@commands``, see
cifarx.config.groups). Experiment files are not read for meanings: their comments say why a value was
chosen, not what the key does.
"""

from __future__ import annotations

from pathlib import Path

from cifarx.config.conffile import read, summary
from cifarx.config.groups import COMMANDS_DIR, command_groups, group_dirs
from cifarx.config.schema import config_dir


def option_file(command: str, group: str, option: str) -> Path | None:
    """conf/<group>/<option>.yaml, or the command's own (conf/commands/<command>/<group>/)."""
    for folder in group_dirs(command, group):
        if (folder / f"{option}.yaml").is_file():
            return folder / f"{option}.yaml"
    return None


def _chain(path: Path) -> list[Path]:
    """An option file, then the files of its own group that its defaults list extends
    (data/augment -> normalize -> raw)."""
    files, seen = [], set()
    todo = [path]
    while todo:
        current = todo.pop(0)
        if current in seen or not current.is_file():
            continue
        seen.add(current)
        files.append(current)
        for entry, _ in read(current).defaults:
            name = entry.strip()
            if name and name != "_self_" and ":" not in name and "@" not in name and not name.startswith("/"):
                todo.append(current.parent / f"{name}.yaml")
    return files


def package_of(command: str, group: str, path: Path) -> str:
    package = read(path).tags.get("package", group.replace("/", "."))
    return "" if package == "_global_" else package


def meanings(command: str, choices: dict[str, str | None]) -> dict[str, str]:
    """{full dotted key: meaning} for ``command`` with these group ``choices`` (Hydra's
    ``hydra.runtime.choices``): its primary config first, then each chosen option (and what it
    extends), then the group's other options (logger=none holds no comment for logger.experiment;
    mlflow.yaml does), then the other commands' primary configs (``seed`` means the same everywhere),
    then every other option file (classic composes no split, yet has data.val_fraction)."""
    found: dict[str, str] = {}

    def add(path: Path, prefix: str) -> None:
        for key, meaning in read(path).meanings.items():
            if prefix == "" and key.split(".")[0] in ("hydra", "defaults"):
                continue
            found.setdefault(f"{prefix}.{key}" if prefix else key, meaning)

    add(config_dir() / f"{command}.yaml", "")
    groups = command_groups(command)
    for group, choice in choices.items():
        if group.startswith("hydra") or group in ("experiment", "hparams_search") or not choice:
            continue
        chosen = option_file(command, group, choice)
        others = [option_file(command, group, o) for o in groups.get(group, []) if o != choice]
        for path in [*(_chain(chosen) if chosen else []), *(p for p in others if p)]:
            add(path, package_of(command, group, path))
    for other in sorted(config_dir().glob("*.yaml")):  # a key every command has (seed) means the same
        add(other, "")
    for folder in sorted(d for d in config_dir().iterdir() if d.is_dir() and d.name not in ("hydra", COMMANDS_DIR)):
        for path in sorted(folder.glob("*.yaml")):  # keys another option sets (split: data.val_fraction)
            if package_of(command, folder.name, path):
                add(path, package_of(command, folder.name, path))
    return found


def option_descriptions(command: str, group: str, options: list[str]) -> dict[str, str]:
    """{option: the first sentence of its file's description}."""
    out = {}
    for option in options:
        path = option_file(command, group, option)
        out[option] = summary(read(path).description) if path else ""
    if group == "hydra/launcher" and "basic" in out and not out["basic"]:
        out["basic"] = "Hydra's own: one job after another, in this process."
    return out


def defaults_comments(command: str) -> dict[str, str]:
    """{group: the comment on its line in the command's defaults list} (``- data: raw  # only ...``)."""
    out = {}
    for entry, comment in read(config_dir() / f"{command}.yaml").defaults:
        name = entry.split(":")[0].replace("override ", "").strip().lstrip("/")
        if comment and ":" in entry:
            out[name] = comment
    return out
