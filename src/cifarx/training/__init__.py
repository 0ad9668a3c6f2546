"""What a training run is made of besides the model: backend and devices, the time budget, callbacks, optimizers, losses and learning-rate schedules."""

from cifarx.lazy import lazy_exports

_PUBLIC = {
    "configure_backend": "backend",
    "distribution_scope": "backend",
    "eval_batch_size": "backend",
    "check_batches": "backend",
    "fit_to_budget": "budget",
    "plan_epochs": "budget",
    "build_optimizer": "optim",
    "build_loss": "optim",
    "Schedule": "schedules",
    "machine_gpus": "devices",
    "compute_devices": "devices",
}
__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
