"""Models: ``conf/model/<name>.yaml`` names an Architecture by ``_target_`` (see
cifarx.models.architecture); ``build_model`` puts cifarx's input pipeline in front of it."""

from __future__ import annotations

from cifarx.models.architecture import Architecture


def architecture(model_cfg) -> Architecture:
    """The Architecture a model config names (already one: returned as is)."""
    if isinstance(model_cfg, Architecture):
        return model_cfg
    from cifarx.config.build import instantiate

    return instantiate(model_cfg, "model")


def preprocessing_rule(model_cfg, data_cfg) -> str:
    """Which input normalisation a run uses: recorded in metrics.json. Pretrained VGG weights
    expect VGG's own preprocess_input, which replaces data.normalize."""
    return architecture(model_cfg).input_normalization(str(getattr(data_cfg.normalize, "value", data_cfg.normalize)))


def build_model(model_cfg, data_cfg, data, seed: int):
    """The full model: uint8 input -> preprocessing -> architecture -> softmax."""
    import keras

    from cifarx.data import channel_stats
    from cifarx.models.preprocessing import input_pipeline

    arch = architecture(model_cfg)
    rule = preprocessing_rule(arch, data_cfg)
    stats = channel_stats(data.x_train) if rule == "zscore" else None
    inputs = keras.Input(shape=data.x_train.shape[1:], dtype="uint8", name="image")
    x = input_pipeline(inputs, normalize=rule, stats=stats, augment=data_cfg.augment, seed=seed,
                       imagenet=rule == "imagenet")
    sample = None
    if arch.train_sample_size():  # e.g. a whitening stem computed from the data
        sample = preprocessed_sample(inputs, x, data.x_train, arch.train_sample_size(), seed)
    outputs = arch.build(x, data.num_classes, train_sample=sample)
    return keras.Model(inputs, outputs, name=arch.name)


def preprocessed_sample(inputs, preprocessed, x_train, count: int, seed: int):
    """``count`` training images (seeded choice) as the layers after the input pipeline see them
    at inference: normalised, not augmented. Only the training split is ever used."""
    import keras
    import numpy as np

    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(x_train), size=min(count, len(x_train)), replace=False))
    pipeline = keras.Model(inputs, preprocessed)
    return np.asarray(pipeline.predict(x_train[pick], batch_size=500, verbose=0))


def load_model(path):
    """Load a saved cifarx model; importing this package registers its custom layers first (and
    cifarx.training.lr_schedules and cifarx.training.optim its schedules and loss).

    Always in Keras' safe mode (no Lambda or other code from the file is run); a damaged or
    foreign file is a one-line RunError naming it, not Keras' traceback.
    """
    from pathlib import Path

    import keras

    import cifarx.models.preprocessing  # noqa: F401  (registers cifarx's layers)
    import cifarx.training.lr_schedules  # noqa: F401  (registers TriangularSchedule, LinearWarmup)
    import cifarx.training.optim  # noqa: F401  (registers SparseSmoothedCrossentropy)
    from cifarx.errors import RunError, one_line
    from cifarx.run.rundir import check_keras_file

    if Path(path).suffix == ".keras":
        check_keras_file(Path(path), f"'{path}'")
    try:
        return keras.models.load_model(str(path), safe_mode=True)
    except Exception as exc:
        if "safe_mode" in str(exc) or "arbitrary code execution" in str(exc):
            raise RunError(f"'{path}' holds Python code (a Lambda layer or a pickled function), which Keras' safe "
                           "mode refuses to run; cifarx's models hold none, so this file was made elsewhere or "
                           "changed since") from exc
        raise RunError(f"cannot load model '{path}': {one_line(str(exc))[:200] or type(exc).__name__} "
                       "(damaged, from another program, or refused by Keras' safe mode); restore it or train again") from exc


def float32_model(model):
    """(the model computing in float32, the mixed policy it was trained with, or None). Every
    exporter wants float32 layers (ONNX refuses others; a bf16 SavedModel differed from Keras' own
    bf16 answers on 1.5% of images here); variables are float32 under a mixed policy, so the
    weights carry over unchanged."""
    import keras

    mixed = sorted({layer.dtype_policy.name for layer in model.layers} - {"float32"})
    if not mixed:
        return model, None

    def in_float32(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    clone = keras.models.clone_model(model, clone_function=in_float32, recursive=True)
    clone.set_weights(model.get_weights())
    return clone, ",".join(mixed)
