"""``logger=mlflow``: the store, one MLflow run per cifarx run, and a parent run per sweep or search."""

from cifarx.lazy import lazy_exports

_PUBLIC = {
    "Tracker": "run",
    "require_mlflow": "store",
    "connect": "store",
    "start_sweep": "sweep",
    "finish_sweep": "sweep",
    "search_parent": "sweep",
    "finish_search_parent": "sweep",
    "connect_for": "hooks",
    "start_for": "hooks",
    "end_for": "hooks",
    "recorded_store": "hooks",
}
__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
