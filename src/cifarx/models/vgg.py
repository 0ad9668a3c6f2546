"""VGG16/VGG19 from keras.applications as a (frozen) feature base with the report's dense head."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import keras
from keras import layers

from cifarx.errors import ConfigError, one_line

log = logging.getLogger("cifarx")

APPLICATIONS = {"vgg16": "VGG16", "vgg19": "VGG19"}
WEIGHTS_FILES = {
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "vgg19": "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
}
FEATURE_LAYER = "features"  # the head's last hidden layer (512-d by default)


def uses_imagenet_preprocessing(cfg) -> bool:
    """Pretrained weights expect the network's own preprocess_input, not the data z-score."""
    return cfg.weights is not None


def _base(cfg, input_size: int):
    app = getattr(keras.applications, APPLICATIONS[cfg.name])
    shape = (input_size, input_size, 3)
    weights = cfg.weights
    if weights in (None, "imagenet"):
        try:
            return app(include_top=False, weights=weights, input_shape=shape)
        except Exception as exc:  # the download failed (offline) or the cache is corrupt
            cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
            raise ConfigError(
                f"cannot load ImageNet weights for {cfg.name}: Keras expected "
                f"{WEIGHTS_FILES[cfg.name]} in {cache} and could not download it "
                f"({type(exc).__name__}); download it elsewhere and pass model.weights=PATH, "
                "or use model.weights=null for random initialisation"
            ) from exc
    path = Path(str(weights)).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.weights='{weights}' is not a file; use imagenet, null, or a path "
                          f"to a {WEIGHTS_FILES[cfg.name]}-style .h5/.keras weights file")
    base = app(include_top=False, weights=None, input_shape=shape)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            base.load_weights(str(path))
        skipped = [w for w in caught if "freshly-initialized" in str(w.message) or "Skipping" in str(w.message)]
        if skipped:  # Keras only warns when parts of the file do not match: refuse half-loaded bases
            raise ValueError(one_line(str(skipped[0].message)))
    except Exception as exc:
        raise ConfigError(f"model.weights='{weights}' does not fit {cfg.name}'s convolutional base "
                          f"(include_top=False): {str(exc).splitlines()[0][:160]}") from exc
    return base


def build_vgg(x, cfg, num_classes: int):
    """Resize (optional) -> VGG base up to ``cut_at`` -> Flatten -> head -> softmax."""
    if cfg.input_size != x.shape[1]:
        x = layers.Resizing(cfg.input_size, cfg.input_size, name="resize")(x)
    base = _base(cfg, cfg.input_size)
    if cfg.cut_at:
        names = [layer.name for layer in base.layers[1:]]
        if cfg.cut_at not in names:
            raise ConfigError(f"model.cut_at='{cfg.cut_at}' is not a layer of {cfg.name}; "
                              f"choose one of: {', '.join(names)}")
        base = keras.Model(base.input, base.get_layer(cfg.cut_at).output, name=cfg.name)
    else:
        base.name = cfg.name
    base.trainable = not cfg.freeze
    x = base(x)
    x = layers.Flatten(name="flatten")(x)
    units = list(cfg.head.units)
    for i, n in enumerate(units):
        last = i == len(units) - 1
        x = layers.Dense(n, activation="relu", name=FEATURE_LAYER if last else f"fc{i + 1}")(x)
        if cfg.head.batch_norm:
            x = layers.BatchNormalization(name=f"fc{i + 1}_bn")(x)
        if cfg.head.dropout:
            x = layers.Dropout(cfg.head.dropout, name=f"fc{i + 1}_dropout")(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)


def base_of(model: keras.Model) -> keras.Model:
    for layer in model.layers:
        if layer.name in APPLICATIONS and isinstance(layer, keras.Model):
            return layer
    raise ConfigError("model has no VGG base to fine-tune")


def unfreeze_top_blocks(model: keras.Model, blocks: int) -> list[str]:
    """Make the top ``blocks`` conv blocks of the base trainable (BatchNorm stays frozen)."""
    base = base_of(model)
    base.trainable = True
    block_ids = sorted({int(l.name.split("_")[0][5:]) for l in base.layers if l.name.startswith("block")})
    top = set(block_ids[-blocks:]) if blocks else set()
    opened = []
    for layer in base.layers:
        if layer.name.startswith("block") and int(layer.name.split("_")[0][5:]) in top:
            layer.trainable = True
            opened.append(layer.name)
        else:
            layer.trainable = False
    return opened
