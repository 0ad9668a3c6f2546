"""The names of a run directory's files and the statuses it can be in (``cifarx.run.rundir``
re-exports them)."""

STATUS_FILE = "status.json"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
PROVENANCE_FILE = "provenance.json"
EPOCH_RECORD = "cifarx_epochs.json"  # inside a .keras checkpoint: how many epochs it holds
LOCK_FILE = ".cifarx.lock"
STATUSES = ("running", "completed", "failed", "interrupted", "pruned")  # pruned: a search stopped it early
STOPPED = "stopped"  # shown for a 'running' run whose process is gone (its lock is free)
RESUMABLE = ("interrupted", "failed", "completed", "running")  # statuses a run can be resumed from
OUTPUTS = "outputs"  # the folder Hydra's default run directories go in (conf/hydra/output/cifarx.yaml)
