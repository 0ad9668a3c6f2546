"""Model builders by name: one function per architecture, same signature, named layers."""

from __future__ import annotations

from typing import Callable

import keras

from cifarx.data import Dataset, channel_stats
from cifarx.errors import ConfigError
from cifarx.models.airbench import build_airbench
from cifarx.models.preprocessing import input_pipeline
from cifarx.models.simple_cnn import build_simple_cnn
from cifarx.models.vgg import build_vgg, uses_imagenet_preprocessing

BUILDERS: dict[str, Callable] = {"simple_cnn": build_simple_cnn, "vgg16": build_vgg, "vgg19": build_vgg,
                                 "airbench": build_airbench}


def preprocessing_rule(model_cfg, data_cfg) -> str:
    """Which input normalisation a run uses, and why: recorded in metrics.json.

    Pretrained VGG weights expect VGG's own preprocess_input, so it replaces data.normalize;
    random-init models use data.normalize as configured.
    """
    if model_cfg.name in ("vgg16", "vgg19") and uses_imagenet_preprocessing(model_cfg):
        return "imagenet"
    return str(getattr(data_cfg.normalize, "value", data_cfg.normalize))


def build_model(model_cfg, data_cfg, data: Dataset, seed: int) -> keras.Model:
    """The full model: uint8 input -> preprocessing -> architecture -> softmax."""
    name = model_cfg.name
    if name not in BUILDERS:
        raise ConfigError(f"unknown model '{name}'; choose one of: {', '.join(BUILDERS)}")
    rule = preprocessing_rule(model_cfg, data_cfg)
    mean = std = None
    if rule == "zscore":
        mean, std = channel_stats(data.x_train)
    inputs = keras.Input(shape=data.x_train.shape[1:], dtype="uint8", name="image")
    x = input_pipeline(inputs, normalize=rule, mean=mean, std=std, augment=data_cfg.augment,
                       seed=seed, imagenet=rule == "imagenet")
    builder = BUILDERS[name]
    extra = {}
    if getattr(builder, "needs_train_sample", False):  # e.g. a whitening stem computed from the data
        extra["train_sample"] = preprocessed_sample(inputs, x, data.x_train, int(model_cfg.whiten_images), seed)
    outputs = builder(x, model_cfg, data.num_classes, **extra)
    return keras.Model(inputs, outputs, name=name)


def preprocessed_sample(inputs, preprocessed, x_train, count: int, seed: int):
    """``count`` training images (seeded choice) as the layers after the input pipeline see them
    at inference: normalised, not augmented. Only the training split is ever used."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(x_train), size=min(count, len(x_train)), replace=False))
    pipeline = keras.Model(inputs, preprocessed)
    return np.asarray(pipeline.predict(x_train[pick], batch_size=500, verbose=0))


def load_model(path) -> keras.Model:
    """Load a saved cifarx model; importing this package registers its custom layers first (and
    cifarx.optim its schedules and loss).

    Always in Keras' safe mode (no Lambda or other code from the file is run); a damaged or
    foreign file is a one-line RunError naming it, not Keras' traceback.
    """
    from pathlib import Path

    import cifarx.optim  # noqa: F401  (registers TriangularSchedule, LinearWarmup, SparseSmoothedCrossentropy)
    from cifarx.artifacts import check_keras_file
    from cifarx.errors import RunError, one_line

    if Path(path).suffix == ".keras":
        check_keras_file(Path(path), f"'{path}'")
    try:
        return keras.models.load_model(str(path), safe_mode=True)
    except Exception as exc:
        raise RunError(f"cannot load model '{path}': {one_line(str(exc))[:200] or type(exc).__name__} "
                       "(damaged, from another program, or refused by Keras' safe mode); restore it or train again") from exc
