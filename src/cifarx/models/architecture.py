"""What a ``conf/model/*.yaml`` file builds: a dataclass of the architecture's hyper-parameters
(its own schema, checked when Hydra instantiates the group) with a method that lays its layers
on the preprocessed input. Adding a model is one such class and one YAML file naming it."""

from __future__ import annotations

from dataclasses import dataclass

from cifarx.errors import require  # noqa: F401  (re-exported for the builders)


@dataclass
class Architecture:
    name: str = "model"  # shown in logs and metrics.json, and the Keras model's name

    def train_sample_size(self) -> int:
        """How many (preprocessed, unaugmented) training images ``build`` needs; 0: none."""
        return 0

    def input_normalization(self, normalize: str) -> str:
        """The input normalisation the model gets, given ``data.normalize``."""
        return normalize

    def check_run(self, cfg) -> None:
        """Checks that need the rest of the train config (none by default)."""

    def build(self, x, num_classes: int, train_sample=None):
        """The output tensor (softmax over ``num_classes``) on the preprocessed input ``x``."""
        raise NotImplementedError
