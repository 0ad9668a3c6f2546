"""Reading one file of ``conf/``: its description (the leading comment block), its header tags
(``# @package``, Hydra's; ``# @commands``, cifarx's), the comment that explains each key, and its
defaults list. What the explanations are used for is in cifarx.config.confdoc."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:(?:\s|$)(.*)$")
_TAG = re.compile(r"^#\s*@(\w+)\s+(\S+)\s*$")


@dataclass
class ConfFile:
    description: str = ""  # the leading comment block, as one paragraph
    tags: dict[str, str] = field(default_factory=dict)  # header tags: {"package": "data", "commands": "train"}
    meanings: dict[str, str] = field(default_factory=dict)  # {"trainer.epochs": "..."}, keys relative to the file
    defaults: list[tuple[str, str]] = field(default_factory=list)  # (defaults-list entry, its comment)


def _split_comment(text: str) -> tuple[str, str]:
    """``value  # comment`` -> (value, comment); a '#' inside quotes or glued to a word is not one."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].strip(), text[i + 1:].strip()
    return text.strip(), ""


@functools.cache
def read(path: Path) -> ConfFile:
    """The comments of one YAML file (conf/ does not change while cifarx runs: read once)."""
    doc = ConfFile()
    header, in_header, pending = [], True, ""
    stack: list[tuple[int, str]] = []  # (indent, key) of the mappings the current line is inside
    skip_deeper = None  # indent of a block scalar or list item whose deeper lines are not keys
    for raw in path.read_text().splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if not stripped:
            in_header, pending = in_header and not header, ""
            continue
        if stripped.startswith("#"):
            tag = _TAG.match(stripped)
            if in_header and tag:
                doc.tags[tag.group(1)] = tag.group(2)
            elif in_header and not (header and header[-1] is None):
                text = stripped[1:]
                example = text.startswith("   ")  # an indented example: the description ends before it
                header.append(None if example else text.strip())
            else:
                pending = stripped.lstrip("#").strip()
            continue
        in_header = False
        if skip_deeper is not None and indent > skip_deeper:
            continue
        skip_deeper = None
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if stripped.startswith("-"):  # a list item: the defaults list's entries are recorded
            if stack and stack[-1][1] == "defaults" and len(stack) == 1:
                entry, comment = _split_comment(stripped[1:])
                doc.defaults.append((entry, comment))
            skip_deeper, pending = indent, ""
            continue
        match = _KEY.match(stripped)
        if not match:
            pending = ""
            continue
        key, (value, comment) = match.group(1), _split_comment(match.group(2))
        path_ = ".".join([k for _, k in stack] + [key])
        if comment or pending:
            doc.meanings[path_] = comment or pending
        pending = ""
        if not value:
            stack.append((indent, key))
        elif value[0] in "|>":
            skip_deeper = indent
    doc.description = " ".join(h for h in header if h)
    return doc


def summary(text: str, limit: int = 110) -> str:
    """The first sentence of a description, at most ``limit`` characters (cut at a word)."""
    first = re.split(r"(?<=[.!?])\s+(?=[A-Z(`])", text.strip(), maxsplit=1)[0] if text else ""
    first = first.rstrip(":")
    if len(first) <= limit:
        return first
    return first[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " ..."
