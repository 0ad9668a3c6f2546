"""Matplotlib figures (Agg backend, no display needed); the run directory saves them."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402


def confusion_figure(matrix: np.ndarray, class_names: list[str], normalized: bool, title: str):
    fig, ax = plt.subplots(figsize=(8, 7))
    values = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1) if normalized else matrix
    ConfusionMatrixDisplay(values, display_labels=class_names).plot(
        ax=ax, cmap="Blues", colorbar=True, values_format=".2f" if normalized else "d", xticks_rotation=45)
    ax.set_title(title)
    return fig


def curves_figure(history: dict[str, list[float]]):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for ax, key in zip(axes, ("loss", "accuracy")):
        for prefix, label in (("", "train"), ("val_", "validation")):
            if prefix + key in history:
                ax.plot(epochs, history[prefix + key], label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.25 on short runs
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("training curves")
    return fig


def image_grid_figure(images: np.ndarray, titles: list[str], columns: int = 8, title: str = ""):
    rows = max(1, int(np.ceil(len(images) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.5, rows * 1.7), layout="constrained")
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, img, text in zip(np.atleast_1d(axes).ravel(), images, titles):
        ax.imshow(img)
        ax.set_title(text, fontsize=7)
    if title:
        fig.suptitle(title)
    return fig
