"""cifarx: config-driven CIFAR-10 experiments (Keras 3, Hydra, scikit-learn)."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``cifarx.load(run)`` (see cifarx.inference), imported on first use: ``import cifarx`` stays light."""
    if name in ("load", "Predictor", "Predictions"):
        from cifarx import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'cifarx' has no attribute {name!r}")
