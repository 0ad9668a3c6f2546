"""The deep-learning backend around a training run: seeds, threads, precision, determinism, the
distribution strategy models are built under, and batch sizes for inference."""

from __future__ import annotations

import logging

from cifarx.errors import ConfigError

log = logging.getLogger("cifarx")


def distribution_scope(trainer_cfg):
    """A factory of the scope models are built and compiled in (MirroredStrategy for
    distribute=mirrored, else a no-op), and the number of replicas."""
    import contextlib

    import keras

    if str(trainer_cfg.distribute) != "mirrored":
        return contextlib.nullcontext, 1
    if keras.backend.backend() != "tensorflow":
        raise ConfigError(f"trainer.distribute=mirrored needs the TensorFlow backend, not "
                          f"{keras.backend.backend()} (use JAX's own sharding there)")
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices=devices)
    log.info("distribute: MirroredStrategy over %d devices (%s); batch_size %d is split across them",
             strategy.num_replicas_in_sync, ", ".join(devices), trainer_cfg.batch_size)
    return strategy.scope, strategy.num_replicas_in_sync


def configure_backend(trainer_cfg, seed: int, parallel_jobs: int = 1) -> None:
    """Seeds, threads, precision and determinism, before any model is built."""
    import os

    import keras

    if keras.backend.backend() == "tensorflow" and trainer_cfg.cpu_devices:
        import tensorflow as tf

        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * int(trainer_cfg.cpu_devices))
        except RuntimeError:  # TensorFlow already initialised in this process (a reused worker)
            log.info("TensorFlow devices already initialised; trainer.cpu_devices ignored")
    keras.backend.clear_session()  # a reused sweep worker must not carry the last job's graph
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        threads = trainer_cfg.threads
        if threads is None and parallel_jobs > 1:  # jobs a launcher runs at once share the cores
            threads = max(1, (os.cpu_count() or 1) // parallel_jobs)
        inter = trainer_cfg.inter_op_threads
        try:
            if threads:
                tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            if inter:
                tf.config.threading.set_inter_op_parallelism_threads(int(inter))
        except RuntimeError:  # already initialised in this (reused) worker: keep its pools
            log.info("TensorFlow thread pools already set in this process; keeping them")
        if trainer_cfg.deterministic:
            tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(int(seed))
    keras.mixed_precision.set_global_policy(str(trainer_cfg.precision))


def eval_batch_size(trainer_cfg) -> int:
    """The batch size for validation and evaluation (inference needs no small batches)."""
    return int(trainer_cfg.eval_batch_size or max(256, int(trainer_cfg.batch_size)))


MEMORY_SHARE = 0.6  # the share of available memory one batch's activations may take (the rest: weights, data, TF)
TRAINING_FACTOR = 3  # a training step keeps each activation, its gradient and workspace: ~3x inference


def available_memory() -> int | None:
    """Bytes of memory available to this process now (Linux' MemAvailable; None elsewhere)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def activation_bytes(model) -> int:
    """Bytes of every layer's output for one image: what a batch holds in memory per image, at most."""
    import numpy as np

    total = 0
    for layer in model.layers:
        for out in (layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]):
            shape = [d for d in out.shape[1:] if d is not None]
            total += int(np.prod(shape)) * max(4, np.dtype(getattr(out, "dtype", "float32") or "float32").itemsize)
    return max(total, 1)


def check_batches(model, trainer_cfg, n_train: int, n_largest: int) -> None:
    """Before training: refuse a batch that memory cannot hold for this model's activations (a
    native allocation failure would kill the process without a word), and lower the evaluation
    batch to what fits (``trainer.eval_batch_size`` is then set, and said). A batch larger than a
    split is that split (as Keras takes it): ``n_train`` and ``n_largest`` (the largest split
    evaluated) bound what one batch holds."""
    from omegaconf import read_write

    free = available_memory()
    if free is None:
        return
    per_image, budget = activation_bytes(model), MEMORY_SHARE * free
    batch = int(trainer_cfg.batch_size)
    fits = max(1, int(budget // (per_image * TRAINING_FACTOR)))
    if min(batch, n_train) > fits:
        raise ConfigError(f"trainer.batch_size={batch} needs about {_gib(min(batch, n_train) * per_image * TRAINING_FACTOR)}"
                          f" for this model's activations, {_gib(free)} is available: use at most {fits}")
    evaluation = eval_batch_size(trainer_cfg)
    fits = max(1, int(budget // per_image))
    if min(evaluation, n_largest) > fits:
        log.info("evaluation batch %d would need %s; using %d (trainer.eval_batch_size)", evaluation,
                 _gib(min(evaluation, n_largest) * per_image), fits)
        with read_write(trainer_cfg):
            trainer_cfg.eval_batch_size = fits


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"
