"""cifarx: config-driven CIFAR-10 experiments (Keras 3, Hydra, scikit-learn)."""

import time as _time

__version__ = "0.1.0"
STARTED = _time.monotonic()  # when cifarx was first imported: `trainer.time_budget` counts from here
