"""The commands: one module each (train, evaluate, extract, classic, data, compare, search) and the registry that names them."""

from cifarx.lazy import lazy_exports

_PUBLIC = {
    "COMMANDS": "registry",
    "Command": "registry",
    "load": "registry",
    "usage": "registry",
    "validate": "registry",
}
__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
