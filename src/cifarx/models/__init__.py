"""Model builders by name: one function per architecture, same signature, named layers."""

from __future__ import annotations

from typing import Callable

import keras

from cifarx.data import Dataset, channel_stats
from cifarx.errors import ConfigError
from cifarx.models.preprocessing import input_pipeline
from cifarx.models.simple_cnn import build_simple_cnn
from cifarx.models.vgg import build_vgg, uses_imagenet_preprocessing

BUILDERS: dict[str, Callable] = {"simple_cnn": build_simple_cnn, "vgg16": build_vgg, "vgg19": build_vgg}


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
    outputs = BUILDERS[name](x, model_cfg, data.num_classes)
    return keras.Model(inputs, outputs, name=name)


def load_model(path) -> keras.Model:
    """Load a saved cifarx model; importing this package registers its custom layers first.

    Always in Keras' safe mode (no Lambda or other code from the file is run); a damaged or
    foreign file is a one-line RunError naming it, not Keras' traceback.
    """
    from pathlib import Path

    from cifarx.artifacts import check_keras_file
    from cifarx.errors import RunError, one_line

    if Path(path).suffix == ".keras":
        check_keras_file(Path(path), f"'{path}'")
    try:
        return keras.models.load_model(str(path), safe_mode=True)
    except Exception as exc:
        raise RunError(f"cannot load model '{path}': {one_line(str(exc))[:200] or type(exc).__name__} "
                       "(damaged, from another program, or refused by Keras' safe mode); restore it or train again") from exc
