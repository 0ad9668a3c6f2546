"""``logger=mlflow``: the store, one MLflow run per cifarx run, and a parent run per sweep or search."""

from cifarx.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "run": ["Tracker"],
    "store": ["require_mlflow", "connect"],
    "sweep": ["start_sweep", "finish_sweep", "search_parent", "finish_search_parent"],
    "hooks": ["connect_for", "start_for", "end_for", "recorded_store"],
})
