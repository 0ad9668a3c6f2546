"""What a training run is made of besides the model: backend and devices, the time budget, callbacks,
optimizers, losses and learning-rate schedules."""

from cifarx.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "backend": ["configure_backend", "distribution_scope", "eval_batch_size", "check_batches"],
    "budget": ["fit_to_budget", "plan_epochs"],
    "optim": ["build_optimizer", "build_loss"],
    "schedules": ["Schedule"],
    "devices": ["machine_gpus", "compute_devices"],
})
