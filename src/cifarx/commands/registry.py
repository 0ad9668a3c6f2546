"""The commands: what each runs, how its config is checked, and the top-level usage text.

Targets are "module:function" strings, imported only when a command runs, so `cifarx --help`
imports nothing heavy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from cifarx import __version__


@dataclass(frozen=True)
class Command:
    target: str  # "module:function": run_*(config, run directory) -> dict; for compare, main(argv) -> exit code
    summary: str
    validator: str | None = None  # "module:function" raising ConfigError on a bad config
    hydra: bool = True
    keras: bool = False  # imports a deep-learning backend
    loading: str = ""  # what its first seconds load, for the start line (cifarx.console.start_line)


COMMANDS: dict[str, Command] = {
    "train": Command("cifarx.commands.train:run_train", "train a model (simple_cnn, vgg16, vgg19, airbench) and evaluate it",
                     "cifarx.commands.train:validate_train", keras=True,
                     loading="TensorFlow and the data"),
    "evaluate": Command("cifarx.commands.evaluate:run_evaluate", "re-evaluate a trained run: run=<train run dir>",
                        "cifarx.commands.evaluate:validate_evaluate", keras=True,
                        loading="TensorFlow, the model and the data"),
    "data": Command("cifarx.commands.data:run_data", "describe a dataset: class counts, channel stats, sample grid",
                    "cifarx.commands.data:validate_data_command", loading="the data"),
    "extract": Command("cifarx.commands.extract:run_extract", "turn images into feature vectors with a trained model",
                       "cifarx.commands.extract:validate_extract", keras=True,
                       loading="TensorFlow, the model and the data"),
    "classic": Command("cifarx.commands.classic:run_classic", "fit a scikit-learn classifier on features: clf=logreg|rf|knn|svm",
                       "cifarx.commands.classic:validate_classic", loading="scikit-learn and the features"),
    "predict": Command("cifarx.commands.predict:run_predict",
                       "classify new images: run=<train or classic run> source=<image|folder|zip|glob|list>",
                       "cifarx.commands.predict:validate_predict", keras=True, loading="TensorFlow and the model"),
    "compare": Command("cifarx.commands.compare:main", "tabulate metrics of run or sweep directories", hydra=False),
    "export": Command("cifarx.commands.export:run_export",
                      "export a trained run: format=saved_model|onnx|litert|openvino|all, checked against Keras; "
                      "benchmark=true times each", "cifarx.commands.export:validate_export", keras=True,
                      loading="TensorFlow, the model and the data"),
    "search": Command("cifarx.commands.search:main", "Optuna search: many workers on one study, pruning (cifarx[search])",
                      hydra=False),
}


def load(target: str) -> Callable:
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def validate(command: str, cfg) -> None:
    """The checks every command shares, then the command's own."""
    from cifarx.config.validate import validate_common

    validate_common(cfg)
    if COMMANDS[command].validator:
        load(COMMANDS[command].validator)(cfg)


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    return "\n".join([
        f"cifarx {__version__}: config-driven CIFAR-10 experiments",
        "",
        "usage: cifarx <command> [key=value ...] [-m] [--cfg job] [--help]",
        "",
        "commands:",
        *(f"  {name:<{width}}  {cmd.summary}" for name, cmd in COMMANDS.items()),
        "",
        "examples:",
        "  cifarx train experiment=seed_cnn_augment",
        "  cifarx train model=vgg19 data=augment trainer.epochs=10",
        "  cifarx train -m optimizer=adam,sgd schedule=step,cosine",
        "  cifarx extract run=outputs/train/<run>   then   cifarx classic clf=rf features=outputs/extract/<run>",
        "  cifarx predict run=outputs/train/<run> source=photos/",
        "",
        "`cifarx <command> --help` lists that command's config groups and explains every key;",
        "`cifarx <command> --help <group or key>` shows one part (e.g. `cifarx train --help optimizer`).",
    ])
