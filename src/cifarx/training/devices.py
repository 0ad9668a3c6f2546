"""Which devices the machine has, which the backend computes on, and a hint when a GPU sits idle."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("cifarx")

# What to install so each backend sees an NVIDIA GPU ("On a GPU" in docs/performance.md says more).
GPU_FIX = {
    "tensorflow": "pip install 'cifarx[cuda]' (TensorFlow with its CUDA libraries), or train on JAX: "
                  "pip install 'cifarx[jax-cuda]' and set KERAS_BACKEND=jax",
    "jax": "pip install 'cifarx[jax-cuda]' (jax with its CUDA plugin)",
    "torch": "install a CUDA build of PyTorch (see pytorch.org), or train on JAX: "
             "pip install 'cifarx[jax-cuda]' and set KERAS_BACKEND=jax",
}


def machine_gpus() -> list[str]:
    """NVIDIA GPUs the kernel driver reports, whatever the Python packages can use."""
    root = Path("/proc/driver/nvidia/gpus")
    try:
        return sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    except OSError:
        return []


def compute_devices() -> list[str]:
    """The devices the backend can compute on (CPU, GPUs), for provenance."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return [f"{d.device_type}:{d.name}" for d in tf.config.list_physical_devices()]
        if backend == "jax":
            import jax

            return [f"{d.platform}:{d}" for d in jax.devices()]
        if backend == "torch":
            import torch

            return ["CPU:cpu"] + [f"GPU:{torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    except Exception as exc:  # provenance must never break a run
        return [f"unknown ({type(exc).__name__})"]
    return []


def training_device(devices: list[str]) -> str:
    """The device Keras places training on: the first GPU the backend sees, else the CPU."""
    gpus = [d for d in devices if d.split(":", 1)[0].lower() in ("gpu", "cuda")]
    return gpus[0] if gpus else "CPU"


def unused_gpu_hint(devices: list[str]) -> str | None:
    """One line when the machine has a GPU that the active backend cannot use, with the fix."""
    import keras

    found = machine_gpus()
    if not found or training_device(devices) != "CPU":
        return None
    backend = keras.backend.backend()
    return (f"this machine has {len(found)} NVIDIA GPU(s) but the {backend} backend sees none, so training "
            f"runs on the CPU; to use the GPU: {GPU_FIX.get(backend, GPU_FIX['tensorflow'])}")
