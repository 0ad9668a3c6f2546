"""``cifarx <command> --help [group or key]``: every key of the composed config with its type, its
value and what it means, section by section; ``--help trainer`` (a section), ``--help optimizer``
(a group: its options, then its keys) or ``--help trainer.time_budget`` (one key) narrows it.

Values are the composed config's, so ``cifarx train experiment=fast_cpu --help`` shows fast_cpu's.
Types come from the schemas (cifarx.config.schema), or from the value where a group has none (model,
optimizer, schedule); meanings from the comments in conf/ (cifarx.config.confdoc), the one place they
are written. The page's frame (header, groups, footer) is conf/hydra/help/cifarx.yaml's template.
Nothing heavy is imported: no TensorFlow, Keras or scikit-learn.
"""

from __future__ import annotations

import re
import shutil
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

HELP_FLAGS = ("--help", "-h")
_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-name", "-cn", "--config-path", "-cp", "--config-dir",
                "-cd", "--experimental-rerun", "--shell-completion", "-sc"}
_CAPS = (24, 14, 16)  # widest key, type and value columns; a longer cell pushes its meaning right
_CUT = 40  # a value longer than this is cut in listings (a single key's help shows all of it)


@dataclass
class Row:
    key: str  # full dotted key
    short: str  # relative to its section
    type: str
    value: str
    meaning: str


@dataclass
class Section:
    name: str  # "" for the top level
    title: str
    rows: list[Row] = field(default_factory=list)


def wants_help(args: Sequence[str]) -> bool:
    return any(a in HELP_FLAGS or a.startswith("--help=") for a in args)


def parse(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """(the topic after --help, or None; the overrides)."""
    topic, overrides, skip = None, [], False
    for i, arg in enumerate(args):
        if skip:
            skip = False
        elif arg.startswith("--help="):
            topic = arg.split("=", 1)[1] or None
        elif arg in HELP_FLAGS:
            following = args[i + 1] if i + 1 < len(args) else ""
            if following and not following.startswith("-") and "=" not in following:
                topic, skip = following, True
        elif arg in _VALUE_FLAGS:
            skip = True
        elif not arg.startswith("-"):
            overrides.append(arg)
    return topic, overrides


def help_for(command: str, args: Sequence[str]) -> tuple[str, str | None]:
    """(the help text, or a one-line problem)."""
    from cifarx.config.composition import compose, register_resolvers
    from cifarx.config.groups import experiment_problem, unoffered_problem
    from cifarx.config.messages import describe_compose_error
    from cifarx.config.preflight import sweep_variants

    register_resolvers()
    topic, overrides = parse(args)
    plain = [o for o in overrides if not o.lstrip("+~").startswith("hydra") or o.startswith("hydra.searchpath=")]
    plain = sweep_variants(plain)[0][1]  # a sweep's first values: the page shows one config
    problem = experiment_problem(command, plain) or unoffered_problem(command, plain)
    if problem:
        return "", problem
    try:
        cfg = compose(command, plain, hydra_config=True)
    except Exception as exc:  # Hydra wraps everything; we only need the message
        return "", describe_compose_error(exc, command, plain)
    return render(command, cfg, topic)


def render(command: str, cfg, topic: str | None) -> tuple[str, str | None]:
    """The page for a composed config (with its ``hydra`` node), whole or narrowed to ``topic``."""
    from omegaconf import OmegaConf

    from cifarx.config.confdoc import meanings
    from cifarx.config.groups import command_groups

    choices = {k: v for k, v in OmegaConf.to_container(cfg.hydra.runtime.choices).items()}
    groups = command_groups(command)
    sections = build_sections(cfg, meanings(command, choices), _titles(command, cfg, choices, groups))
    if topic is None:
        template = OmegaConf.to_container(cfg.hydra.help, resolve=True)["template"]
        before, _, after = template.partition("$CONFIG")
        return _fit(before) + format_sections(sections) + _fit(after), None
    return narrow(command, topic, sections, groups, choices)


def _fit(text: str) -> str:
    """The page's frame (header, groups, footer) broken between words on a terminal; whole in a pipe."""
    import shutil
    import sys

    from cifarx.console import wrap_words

    return wrap_words(text, shutil.get_terminal_size().columns) if sys.stdout.isatty() else text


def _titles(command: str, cfg, choices: dict, groups: dict) -> dict[str, str]:
    """{section: its title}: a group's section names the option that built it and what it is."""
    from cifarx.config.confdoc import defaults_comments, option_descriptions, option_file, package_of

    notes = defaults_comments(command)
    titles: dict[str, list[str]] = {}
    for group, choice in choices.items():
        if group not in groups or group.startswith("hydra") or not choice:
            continue
        path = option_file(command, group, choice)
        package = package_of(command, group, path) if path else group
        if package in cfg and package != "":
            titles.setdefault(package, []).append(f"{group}={choice}")
    out = {}
    for section, picks in titles.items():
        picks.sort(key=lambda pick: pick.split("=")[0] != section)  # the section's own group first
        group, _, choice = picks[0].partition("=")
        about = option_descriptions(command, group, [choice])[choice]
        note = notes.get(group)
        out[section] = f"{section} ({', '.join(picks)})" + "".join(f": {t}" for t in (note or about,) if t)
    return out


def build_sections(cfg, meanings: dict[str, str], titles: dict[str, str]) -> list[Section]:
    from omegaconf import DictConfig

    top = Section("", "top level")
    sections = [top]
    for key in cfg:
        if key == "hydra":
            continue
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and not node._is_none() and not node._is_missing():
            section = Section(key, titles.get(key, key))
            _rows(node, key, "", meanings, section.rows)
            sections.append(section)
        else:
            top.rows.append(_row(cfg, key, key, key, meanings))
    return [s for s in sections if s.rows]


def _rows(node, prefix: str, short: str, meanings: dict, out: list[Row]) -> None:
    from omegaconf import DictConfig

    for key in node:
        child = node._get_node(key)
        full, rel = f"{prefix}.{key}", f"{short}{key}"
        if isinstance(child, DictConfig) and len(child) and not child._is_none() and not child._is_interpolation():
            _rows(child, full, rel + ".", meanings, out)
        else:
            out.append(_row(node, key, full, rel, meanings))


def _row(parent, key: str, full: str, short: str, meanings: dict) -> Row:
    meaning = meanings.get(full, "")
    target = parent.get("_target_")
    if not meaning and key == "_target_":
        meaning = "the class the keys beside it build"
    elif not meaning and full.count(".") == 1 and key == "name":
        meaning = f"set by {full.split('.')[0]}=<option>"
    elif not meaning and isinstance(target, str):
        meaning = f"an argument of {target}"
    return Row(full, short, type_name(parent, key), value_text(parent, key), meaning)


def type_name(parent, key: str) -> str:
    """``int``, ``float|null``, ``best|last`` (an enum's values), or the value's type where the
    group has no schema (``list``, ``str`` ...; ``any`` for a null)."""
    import dataclasses

    from omegaconf import DictConfig, ListConfig, OmegaConf
    from omegaconf.nodes import AnyNode, BooleanNode, EnumNode, FloatNode, IntegerNode, PathNode, StringNode

    node = parent._get_node(key)
    names = {IntegerNode: "int", FloatNode: "float", BooleanNode: "bool", StringNode: "str", PathNode: "path"}
    if isinstance(node, EnumNode):
        name = "|".join(m.name for m in node.enum_type)
    elif type(node) in names:
        name = names[type(node)]
    elif isinstance(node, (ListConfig, DictConfig)):
        name = "list" if isinstance(node, ListConfig) else "dict"
    elif isinstance(node, AnyNode):
        typed = dataclasses.is_dataclass(OmegaConf.get_type(parent))  # a schema field declared Any
        value = _resolved(parent, key)
        if typed or value is None:
            return "any"
        return {bool: "bool", int: "int", float: "float", str: "str"}.get(type(value), type(value).__name__)
    else:
        return type(node).__name__
    return f"{name}|null" if node._is_optional() and dataclasses.is_dataclass(OmegaConf.get_type(parent)) else name


def _resolved(parent, key: str):
    try:
        return parent[key]
    except Exception:
        return parent._get_node(key)._value()


def value_text(parent, key: str) -> str:
    """The value as it would be typed on the command line; a plain reference (``${seed}``)
    stays one, other interpolations show what they give."""
    import enum

    from omegaconf import OmegaConf

    node = parent._get_node(key)
    if OmegaConf.is_missing(parent, key):
        return "??? (required)"
    raw = node._value()
    if isinstance(raw, str) and re.fullmatch(r"\$\{[\w.]+\}", raw):
        return raw
    value = _resolved(parent, key)
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    return _yaml(value.name if isinstance(value, enum.Enum) else value)


def _yaml(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str) and (value == "" or value.strip() != value):
        return repr(value)
    return str(value)


def _cut(text: str, limit: int = _CUT) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def format_rows(rows: list[Row], full_keys: bool = False, cut: bool = True, widths=None) -> list[str]:
    """Aligned ``key  type  value  meaning`` lines; meanings wrap to the terminal, never when piped."""
    cells = [((r.key if full_keys else r.short), r.type, _cut(r.value) if cut else r.value, r.meaning) for r in rows]
    widths = widths or _widths(cells)
    columns = shutil.get_terminal_size((0, 0)).columns if sys.stdout.isatty() else 0
    lines = []
    for key, kind, value, meaning in cells:
        left = f"  {key:<{widths[0]}}  {kind:<{widths[1]}}  {value:<{widths[2]}}".rstrip()
        if not meaning:
            lines.append(left)
            continue
        start = max(len(left) + 2, sum(widths) + 8)
        room = columns - start
        if not columns:
            lines.append(f"{left:<{start}}{meaning}")
        elif room >= 30:
            wrapped = textwrap.wrap(meaning, room) or [""]
            lines.append(f"{left:<{start}}{wrapped[0]}")
            lines += [" " * start + more for more in wrapped[1:]]
        else:  # a narrow terminal: the meaning goes under its key
            lines.append(left)
            lines += ["      " + more for more in textwrap.wrap(meaning, max(columns - 6, 20))]
    return lines


def _widths(cells) -> tuple[int, int, int]:
    return tuple(min(max((len(c[i]) for c in cells), default=0), cap) for i, cap in enumerate(_CAPS))


def format_sections(sections: list[Section]) -> str:
    cells = [(r.short, r.type, _cut(r.value)) for s in sections for r in s.rows]
    widths = _widths(cells)  # one alignment for the whole page
    blocks = ["\n".join([s.title, *format_rows(s.rows, widths=widths)]) for s in sections]
    return "\n\n".join(blocks) + "\n"


def format_options(command: str, group: str, options: list[str], chosen: str | None) -> str:
    from cifarx.config.confdoc import option_descriptions

    about = option_descriptions(command, group, options)
    width = max((len(o) for o in options), default=0)
    lines = [f"{group}=<option> (* the one this config uses):"]
    for option in options:
        mark = "*" if option == chosen else " "
        lines.append(f"{mark} {option:<{width}}  {about[option]}".rstrip())
    return "\n".join(lines)


def narrow(command: str, topic: str, sections: list[Section], groups: dict, choices: dict) -> tuple[str, str | None]:
    """The part of the page ``topic`` names: a section, a group's options (and its section), a
    key, or the keys under a prefix (``data.augment``); else one line with a "did you mean"."""
    from cifarx.config.groups import commands_with_group
    from cifarx.config.suggest import closest

    topic = topic.strip().removeprefix("+")
    by_name = {s.name: s for s in sections if s.name}
    rows = [r for s in sections for r in s.rows]
    parts = []
    if topic in groups:
        parts.append(format_options(command, topic, groups[topic], choices.get(topic)))
    if topic in by_name:
        section = by_name[topic]
        parts.append("\n".join([section.title, *format_rows(section.rows)]))
    elif not parts:
        exact = [r for r in rows if r.key == topic] or [r for r in rows if r.key.rpartition(".")[2] == topic]
        under = [r for r in rows if r.key.startswith(topic + ".")]
        if len(exact) == 1:
            parts.append("\n".join(format_rows(exact, full_keys=True, cut=False)).lstrip())
        elif under:
            parts.append("\n".join([topic, *format_rows(under, full_keys=True)]))
    if parts:
        return "\n\n".join(parts), None
    owners = [c for c in commands_with_group(topic.split(".")[0]) if c != command]
    if owners and topic.split(".")[0] not in groups:
        return "", f"{topic} is not an option of cifarx {command}; it belongs to " + \
            " and ".join(f"cifarx {c}" for c in owners)
    names = [*groups, *by_name, *(r.key for r in rows)]
    match = closest(topic, names)
    return "", f"no group or key '{topic}' in cifarx {command}" + \
        (f"; did you mean --help {match}?" if match else f" (`cifarx {command} --help` lists them)")
