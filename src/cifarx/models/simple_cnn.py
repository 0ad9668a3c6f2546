"""The report's seed CNN, layer for layer (72,922 parameters with the default widths)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cifarx.models.architecture import Architecture, require


@dataclass
class SimpleCNN(Architecture):
    """Three conv blocks (valid, same, valid padding), BatchNorm after blocks 1-2, dropout, softmax.
    Layer names follow the report's table (conv2d_1..6, dense_1) so any layer can be addressed."""

    name: str = "simple_cnn"
    filters: list[int] = field(default_factory=lambda: [16, 32, 64])  # per conv block
    width: float = 1.0  # multiplies every entry of filters (a single knob for searches)
    dropout: list[float] = field(default_factory=lambda: [0.25, 0.25])  # after block 2, in block 3
    l2: float = 0.0  # kernel weight decay; the report tried 0.01 and 0.001
    initializer: str = "he_normal"
    activation: str = "relu"

    def __post_init__(self):
        require(len(self.filters) == 3 and all(f > 0 for f in self.filters),
                f"model.filters={list(self.filters)} must be 3 positive channel counts (one per block)")
        require(len(self.dropout) == 2 and all(0 <= d < 1 for d in self.dropout),
                f"model.dropout={list(self.dropout)} must be 2 rates in [0, 1)")
        require(self.l2 >= 0, f"model.l2={self.l2} must be >= 0")
        require(self.width > 0, f"model.width={self.width} must be > 0")

    def build(self, x, num_classes: int, train_sample=None):
        import keras
        from keras import layers

        f1, f2, f3 = (max(1, int(round(f * self.width))) for f in self.filters)
        reg = keras.regularizers.L2(self.l2) if self.l2 else None
        conv = dict(kernel_size=3, activation=self.activation, kernel_initializer=self.initializer,
                    kernel_regularizer=reg)
        x = layers.Conv2D(f1, padding="valid", name="conv2d_1", **conv)(x)
        x = layers.Conv2D(f1, padding="valid", name="conv2d_2", **conv)(x)
        x = layers.MaxPooling2D(2, name="max_pooling2d_1")(x)
        x = layers.BatchNormalization(name="batch_normalization_1")(x)
        x = layers.Conv2D(f2, padding="same", name="conv2d_3", **conv)(x)
        x = layers.Conv2D(f2, padding="same", name="conv2d_4", **conv)(x)
        x = layers.MaxPooling2D(2, name="max_pooling2d_2")(x)
        x = layers.BatchNormalization(name="batch_normalization_2")(x)
        x = layers.Dropout(self.dropout[0], name="dropout_1")(x)
        x = layers.Conv2D(f3, padding="valid", name="conv2d_5", **conv)(x)
        x = layers.Conv2D(f3, padding="valid", name="conv2d_6", **conv)(x)
        x = layers.Dropout(self.dropout[1], name="dropout_2")(x)
        x = layers.MaxPooling2D(2, name="max_pooling2d_3")(x)
        x = layers.Flatten(name="flatten_1")(x)
        return layers.Dense(num_classes, activation="softmax", kernel_initializer=self.initializer,
                            kernel_regularizer=reg, dtype="float32", name="dense_1")(x)
