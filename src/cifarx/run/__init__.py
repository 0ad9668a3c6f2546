"""A run directory and its lifecycle: paths and atomic writes, the lock, status and records, the history of epochs, resuming, and the begin -> command -> status wrapper every command runs in."""

from cifarx.lazy import lazy_exports

_PUBLIC = {
    "RunDir": "rundir",
    "atomic_path": "rundir",
    "hardware": "rundir",
    "package_versions": "rundir",
    "read_json": "atomic_io",
    "read_record": "atomic_io",
    "write_json_atomic": "atomic_io",
    "write_bytes_atomic": "atomic_io",
    "require_run": "checks",
    "check_keras_file": "checks",
    "effective_status": "checks",
    "resume_hint": "checks",
    "read_history": "history",
    "reconcile_history": "history",
    "run_command": "lifecycle",
    "register_resolvers": "lifecycle",
    "import_keras_quietly": "lifecycle",
    "claim_run_dir": "ownership",
    "release_run_dir": "ownership",
    "resume_config": "resume",
    "stage_ends": "resume",
}
__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
