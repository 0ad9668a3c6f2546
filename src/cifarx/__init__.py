"""cifarx: config-driven CIFAR-10 experiments (Keras 3, Hydra, scikit-learn)."""

__version__ = "0.1.0"
