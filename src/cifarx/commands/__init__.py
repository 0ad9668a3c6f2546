"""The commands: one module each (train, evaluate, extract, classic, data, predict, export, compare,
search) and the registry that names them."""

from cifarx.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "registry": ["COMMANDS", "Command", "load", "usage", "validate"],
})
