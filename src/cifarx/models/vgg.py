"""VGG16/VGG19 from keras.applications as a (frozen) feature base with the report's dense head."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from cifarx.errors import ConfigError, one_line
from cifarx.models.architecture import Architecture, require

log = logging.getLogger("cifarx")

APPLICATIONS = {"vgg16": "VGG16", "vgg19": "VGG19"}
WEIGHTS_FILES = {
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "vgg19": "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
}
FEATURE_LAYER = "features"  # the head's last hidden layer (512-d by default)


@dataclass
class Head:
    units: list[int] = field(default_factory=lambda: [1024, 512])  # Dense-relu-BatchNorm-Dropout per entry
    dropout: float = 0.5
    batch_norm: bool = True


@dataclass
class Finetune:
    blocks: int = 0  # 0: no second stage; N: unfreeze the top N conv blocks of the base
    epochs: int = 0
    learning_rate: float = 1e-5


@dataclass
class VGG(Architecture):
    name: str = "vgg16"  # the keras.applications base: vgg16 | vgg19
    weights: Optional[str] = "imagenet"  # imagenet | null (random init) | path to a .h5/.keras file
    cut_at: Optional[str] = None  # base layer to stop at, e.g. block4_pool; null: whole base
    freeze: bool = True
    input_size: int = 32  # resize inside the model (e.g. 64, 128, 224)
    head: Head = field(default_factory=Head)
    finetune: Finetune = field(default_factory=Finetune)

    def __post_init__(self):
        require(self.name in APPLICATIONS,
                f"model.name={self.name!r} is not a VGG base this builds; choose one of: {', '.join(APPLICATIONS)}")
        require(self.input_size >= 32, f"model.input_size={self.input_size} must be >= 32 (VGG's minimum)")
        require(len(self.head.units) > 0 and all(u > 0 for u in self.head.units),
                f"model.head.units={list(self.head.units)} must be positive layer widths")
        require(0 <= self.head.dropout < 1, f"model.head.dropout={self.head.dropout} must be in [0, 1)")
        ft = self.finetune
        require(ft.blocks >= 0 and ft.epochs >= 0,
                f"model.finetune.blocks={ft.blocks} and model.finetune.epochs={ft.epochs} must be >= 0")
        require((ft.blocks > 0) == (ft.epochs > 0),
                "model.finetune.blocks and model.finetune.epochs must both be 0 or both be positive")
        require(ft.learning_rate > 0, f"model.finetune.learning_rate={ft.learning_rate} must be > 0")

    def input_normalization(self, normalize: str) -> str:
        """Pretrained weights expect the network's own preprocess_input, not the data z-score."""
        return "imagenet" if self.weights is not None else normalize

    def check_run(self, cfg) -> None:
        require(cfg.trainer.time_budget is None or self.finetune.blocks == 0,
                "trainer.time_budget plans one training stage; with model.finetune set trainer.epochs instead")

    def build(self, x, num_classes: int, train_sample=None):
        """Resize (optional) -> VGG base up to ``cut_at`` -> Flatten -> head -> softmax."""
        import keras
        from keras import layers

        if self.input_size != x.shape[1]:
            x = layers.Resizing(self.input_size, self.input_size, name="resize")(x)
        base = _base(self, self.input_size)
        if self.cut_at:
            names = [layer.name for layer in base.layers[1:]]
            if self.cut_at not in names:
                raise ConfigError(f"model.cut_at='{self.cut_at}' is not a layer of {self.name}; "
                                  f"choose one of: {', '.join(names)}")
            base = keras.Model(base.input, base.get_layer(self.cut_at).output, name=self.name)
        else:
            base.name = self.name
        base.trainable = not self.freeze
        x = base(x)
        x = layers.Flatten(name="flatten")(x)
        units = list(self.head.units)
        for i, n in enumerate(units):
            last = i == len(units) - 1
            x = layers.Dense(n, activation="relu", name=FEATURE_LAYER if last else f"fc{i + 1}")(x)
            if self.head.batch_norm:
                x = layers.BatchNormalization(name=f"fc{i + 1}_bn")(x)
            if self.head.dropout:
                x = layers.Dropout(self.head.dropout, name=f"fc{i + 1}_dropout")(x)
        return layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)


def _base(cfg: VGG, input_size: int):
    import keras

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


def base_of(model):
    import keras

    for layer in model.layers:
        if layer.name in APPLICATIONS and isinstance(layer, keras.Model):
            return layer
    raise ConfigError("model has no VGG base to fine-tune")


def unfreeze_top_blocks(model, blocks: int) -> list[str]:
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
