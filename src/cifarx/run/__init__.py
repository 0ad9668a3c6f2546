"""A run directory and its lifecycle: paths and atomic writes, the lock, status and records, the
history of epochs, resuming, and the begin -> command -> status wrapper every command runs in."""

from cifarx.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "rundir": ["RunDir", "atomic_path", "hardware", "package_versions"],
    "atomic_io": ["read_json", "read_record", "write_json_atomic", "write_bytes_atomic"],
    "checks": ["require_run", "check_keras_file", "effective_status", "resume_hint"],
    "history": ["read_history", "reconcile_history"],
    "lifecycle": ["run_command"],
    "ownership": ["claim_run_dir", "release_run_dir"],
    "resume": ["resume_config", "stage_ends"],
})
