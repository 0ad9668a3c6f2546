"""`cifarx <command> [hydra overrides]`: pick the command's primary config and hand over to Hydra.

Only this module knows about argv. Nothing heavy (TensorFlow, Keras, scikit-learn) is imported
here: each command's module is imported inside the Hydra task, so `--help` and `--cfg` are fast.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from cifarx import __version__


@dataclass(frozen=True)
class Command:
    target: str  # "module:function" taking the composed config and returning a dict
    summary: str
    hydra: bool = True


COMMANDS: dict[str, Command] = {
    "train": Command("cifarx.train:run_train", "train a model (simple_cnn, vgg16, vgg19, airbench) and evaluate it"),
    "evaluate": Command("cifarx.evaluate:run_evaluate", "re-evaluate a trained run: run=<train run dir>"),
    "data": Command("cifarx.stats:run_data", "describe a dataset: class counts, channel stats, sample grid"),
    "extract": Command("cifarx.extract:run_extract", "turn images into feature vectors with a trained model"),
    "classic": Command("cifarx.classic:run_classic", "fit a scikit-learn classifier on features: clf=logreg|rf|knn|svm"),
    "compare": Command("cifarx.compare:main", "tabulate metrics of run or sweep directories", hydra=False),
}

# Hydra flags that only print or inspect: they never need the pre-flight check.
_INSPECT_FLAGS = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc"}
_MULTIRUN_FLAGS = {"--multirun", "-m"}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
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
        "",
        "`cifarx <command> --help` lists that command's config groups and options.",
    ]
    return "\n".join(lines)


def fail(command: str | None, message: str, code: int = 2) -> int:
    prefix = f"cifarx {command}" if command else "cifarx"
    print(f"{prefix}: error: {message}", file=sys.stderr)
    return code


def _load(target: str) -> Callable:
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def _split_overrides(args: Sequence[str]) -> list[str]:
    """The key=value overrides among Hydra's arguments (flags and their values dropped)."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd",
                   "--experimental-rerun"):
            skip = True
            continue
        if arg.startswith("-"):
            continue
        out.append(arg)
    return out


def _resume_problem(overrides: list[str], multirun: bool) -> str | None:
    from cifarx.config import RESUME_OVERRIDES

    if multirun:
        return "resume= continues one run; it cannot be combined with -m"
    changed = [o for o in overrides if not o.startswith(("resume=", "hydra.", *(k + "=" for k in RESUME_OVERRIDES)))]
    if changed:
        return (f"resume= continues a run with its own config; refusing overrides that would change the "
                f"experiment: {' '.join(changed)} (allowed: {', '.join(RESUME_OVERRIDES)})")
    return None


def hydra_quote(value: str) -> str:
    """``value`` as one quoted Hydra override value: spaces, '=', ',', brackets and non-ASCII
    letters stay literal (Hydra's grammar would split or reject them unquoted)."""
    escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
    return f"'{escaped}'"


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def explicit_run_dir(overrides: list[str]) -> str | None:
    """The value of the last ``hydra.run.dir=`` override, unquoted (None when not given)."""
    given = [o.split("=", 1)[1] for o in overrides if o.startswith("hydra.run.dir=")]
    return _unquote(given[-1].strip()) if given else None


def output_problem(overrides: list[str]) -> str | None:
    """Can the run directory be created? (Hydra would fail with a traceback otherwise.)"""
    target = explicit_run_dir(overrides)
    if target is not None and not target.strip():
        return ("hydra.run.dir is empty; give the run's own directory (e.g. hydra.run.dir=outputs/my_run), "
                "or leave it out for a fresh timestamped one")
    target = target or "outputs"
    path = Path(target).expanduser().absolute()
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot create the run directory '{target}': '{parent}' is a file, not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create the run directory '{target}': '{parent}' is not writable (set hydra.run.dir=...)"
    return None


def unparsable(overrides: list[str]) -> str | None:
    """The first override Hydra's grammar cannot read, with how to quote it (one line)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for item in overrides:
        try:
            parser.parse_overrides([item])
        except Exception:
            key, _, value = item.partition("=")
            return (f"cannot parse the override {item}: values with spaces, non-ASCII letters or characters "
                    f"such as ( ) , = [ ] need quotes: \"{key}={hydra_quote(value)}\" (the outer quotes are for the shell)")
    return None


def preflight(command: str, overrides: list[str]) -> str | None:
    """Compose and validate the config before Hydra creates a run directory.

    Returns a one-line error message, or None when the config is good. Catching errors here
    means a bad override never leaves a half-made run directory behind.
    """
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from cifarx.config import config_dir
    from cifarx.errors import CifarxError, describe_compose_error, experiment_problem
    from cifarx.runtime import validate_command_config

    problem = output_problem(overrides)
    if problem:
        return problem
    plain = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    problem = unparsable(overrides) or experiment_problem(command, plain)
    if problem:
        return problem
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name=command):
            cfg = compose(config_name=command, overrides=plain)
    except Exception as exc:  # Hydra wraps everything; we only need the message
        return describe_compose_error(exc, command)
    try:
        OmegaConf.resolve(cfg)
        validate_command_config(command, cfg)
    except CifarxError as exc:
        return str(exc)
    except Exception as exc:
        return describe_compose_error(exc, command)
    return None


def _task_for(command: str) -> Callable:
    """The Hydra task of ``command``. Launchers that run jobs in other processes (joblib,
    submitit) unpickle it there, importing this module: which registers cifarx's resolvers
    (see the end of this file) before Hydra resolves a job's output directory."""

    def task(cfg):
        from cifarx.runtime import run_command

        return run_command(command, _load(COMMANDS[command].target), cfg)

    task.__name__ = command
    return task


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `cifarx --help | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] in ("-V", "--version"):
        print(f"cifarx {__version__}")
        return 0
    name, rest = args[0], args[1:]
    command = COMMANDS.get(name)
    if command is None:
        return fail(None, f"unknown command '{name}'; choose one of: {', '.join(COMMANDS)}")
    if not command.hydra:
        return int(_load(command.target)(rest) or 0)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from cifarx.runtime import register_resolvers

    register_resolvers()
    inspecting = any(a in _INSPECT_FLAGS for a in rest)
    multirun = any(a in _MULTIRUN_FLAGS for a in rest)
    resume = [a.split("=", 1)[1] for a in rest if a.startswith("resume=")]
    if name == "train" and resume and not inspecting:
        problem = _resume_problem(_split_overrides(rest), multirun)
        if problem:
            return fail(name, problem)
        # Continue in the run's own directory; Hydra's copy of this invocation goes beside its own.
        # The path is taken verbatim (any name: '=', ',', spaces) and handed to Hydra quoted.
        run_path = str(Path(_unquote(resume[-1])).expanduser().resolve())
        rest = [a for a in rest if not a.startswith(("resume=", "hydra.run.dir="))]
        rest += [f"resume={hydra_quote(run_path)}", f"hydra.run.dir={hydra_quote(run_path)}",
                 "hydra.output_subdir=.hydra/resume"]
    if not inspecting and not multirun:
        message = preflight(name, _split_overrides(rest))
        if message:
            return fail(name, message)
        run_dir = explicit_run_dir(_split_overrides(rest))
        if run_dir is not None:  # own the folder before Hydra writes anything into it
            from cifarx.errors import CifarxError, one_line
            from cifarx.runtime import claim_run_dir

            try:
                claim_run_dir(run_dir, resuming=bool(resume) and name == "train")
            except CifarxError as exc:
                return fail(name, one_line(str(exc)))

    import hydra

    from cifarx.config import config_dir

    sys.argv = [f"cifarx {name}", *rest]
    try:
        hydra.main(config_path=str(config_dir()), config_name=name, version_base="1.3")(_task_for(name))()
    except KeyboardInterrupt:
        if not multirun:
            raise
        return _sweep_interrupted(name, _split_overrides(rest))
    return 0


def _sweep_interrupted(name: str, overrides: list[str]) -> int:
    """Ctrl-C in a sweep: summarise the jobs that finished, list those that never ran."""
    from cifarx.sweep import CURRENT, summarize_interrupted

    sweep_dir = CURRENT.get("dir")
    missing = summarize_interrupted(overrides)
    where = f"; summary in {sweep_dir}" if sweep_dir else ""
    if missing is None:
        detail = "the sweeper decides its jobs, so the ones not run cannot be listed"
    elif missing:
        detail = f"{len(missing)} jobs did not run: " + "; ".join(m or "(no overrides)" for m in missing)
    else:
        detail = "every job had started"
    print(f"cifarx {name}: sweep interrupted{where}; {detail}", file=sys.stderr)
    return 130


def _register_on_import() -> None:
    from cifarx.runtime import register_resolvers

    register_resolvers()


_register_on_import()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
