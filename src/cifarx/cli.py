"""`cifarx <command> [hydra overrides]`: pick the command's primary config and hand over to Hydra.

Only this module knows about argv. Nothing heavy (TensorFlow, Keras, scikit-learn) is imported
here: each command's module is imported inside the Hydra task, so `--help` and `--cfg` are fast.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence

from cifarx import __version__
from cifarx.commands.registry import COMMANDS, load, usage
from cifarx.config.composition import register_resolvers
from cifarx.config.overrides import (  # noqa: F401  (hydra_quote: public API)
    CONFIG_FLAGS,
    expand_paths,
    explicit_dir,
    flag_habit,
    hydra_quote,
    renamed_key,
    split_overrides,
)
from cifarx.config.preflight import preflight  # noqa: F401  (re-exported: tests and tools call cifarx.cli.preflight)
from cifarx.help import help_for, wants_help

# Hydra flags that only print or inspect: they never need the pre-flight check.
_INSPECT_FLAGS = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc"}
_MULTIRUN_FLAGS = {"--multirun", "-m"}
# Exit statuses: 0 done, 1 a bug (a traceback), 2 a user error (one line), 3 done but some inputs were left
# out (errors.EXIT_PARTIAL: predict's skipped.csv), 130 interrupted.


def fail(command: str | None, message: str, code: int = 2) -> int:
    prefix = f"cifarx {command}" if command else "cifarx"
    print(f"{prefix}: error: {message}", file=sys.stderr)
    return code


def _task_for(command: str, preflighted: bool = False) -> Callable:
    """The Hydra task of ``command``. Launchers that run jobs in other processes (joblib,
    submitit) unpickle it there, importing this module: which registers cifarx's resolvers
    (see the end of this file) before Hydra resolves a job's output directory. ``preflighted``:
    cli._main checked exactly the config Hydra will compose, so the job need not check it again."""

    def task(cfg):
        from cifarx.run.lifecycle import run_command

        return run_command(command, load(COMMANDS[command].target), cfg, preflighted=preflighted)

    task.__name__ = command
    return task


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `cifarx --help | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:  # before a run began (loading, pre-flight): a run says more itself
        print("cifarx: interrupted before any run began; nothing was written", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
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
        return int(load(command.target)(rest) or 0)
    if name == "train" and any(a.startswith("hparams_search=") for a in rest):
        return fail(name, "an Optuna search is its own command now: cifarx search hparams_search=<space> "
                          "[train overrides] (pip install \"cifarx[search]\"; docs/sweeps.md)")
    habit = flag_habit(rest) or renamed_key(rest)
    if habit:
        return fail(name, habit)
    rest = expand_paths(rest)
    if wants_help(rest):  # cifarx's own page (cifarx.help): every key explained; `--help <group or key>` narrows
        text, problem = help_for(name, rest)
        return fail(name, problem) if problem else print(text) or 0

    from cifarx.errors import CommandExit
    from cifarx.process import caller_state_kept

    try:
        with caller_state_kept():  # Hydra's logging and the run's SIGTERM handler end with the command
            return _run_hydra_command(name, rest, started)
    except CommandExit as stop:  # the command's own end (or a refusal before it): its line, then its status
        if stop.message:
            print(stop.message, file=sys.stderr)
        return stop.code


def _refuse(name: str, message: str | None) -> None:
    from cifarx.errors import CommandExit

    if message:
        raise CommandExit(2, f"cifarx {name}: error: {message}")


def _checked(name: str, rest: list[str], multirun: bool) -> tuple[list[str], str | None]:
    """Before Hydra makes a folder: a resume turned into its run's own overrides, the config (every
    sweep value too) pre-flighted, and an explicit run directory claimed. Returns the overrides and
    that directory."""
    from cifarx.run.layout import OUTPUTS
    from cifarx.run.ownership import note_missing_folders

    resume = [a.split("=", 1)[1] for a in rest if a.startswith("resume=")]
    if name == "train" and resume:
        from cifarx.run import resume as resuming

        _refuse(name, resuming.problem(split_overrides(rest), multirun))
        rest = resuming.continue_in_place(rest, resume[-1])
    if multirun:  # every value of every swept key, before Hydra makes the sweep's folder
        from cifarx.config.preflight import preflight_sweep

        _refuse(name, preflight_sweep(name, split_overrides(rest)))
        sweep_dir = explicit_dir(split_overrides(rest), key="hydra.sweep.dir")
        note_missing_folders(os.path.dirname(os.path.abspath(sweep_dir)) if sweep_dir  # the folders above the sweep's
                             else os.path.join(OUTPUTS, name, "multirun"))
        return rest, None
    _refuse(name, preflight(name, split_overrides(rest)))
    run_dir = explicit_dir(split_overrides(rest))
    if run_dir is None:  # Hydra's own outputs/<command>/<time>: note which folders above it are new
        note_missing_folders(os.path.join(OUTPUTS, name))
    else:  # own the folder before Hydra writes anything into it
        from cifarx.errors import CifarxError, one_line
        from cifarx.run.ownership import claim_run_dir

        try:
            claim_run_dir(run_dir, resuming=bool(resume) and name == "train")
        except CifarxError as exc:
            _refuse(name, one_line(str(exc)))
    return rest, run_dir


def _run_hydra_command(name: str, rest: list[str], started: float) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from cifarx.process import COMMAND_STARTED, INVOCATIONS

    INVOCATIONS[0] += 1
    COMMAND_STARTED[:] = [started]
    inspecting = any(a.split("=", 1)[0] in _INSPECT_FLAGS for a in rest)  # --cfg job, --cfg=job
    multirun = any(a in _MULTIRUN_FLAGS for a in rest)
    if not inspecting and COMMANDS[name].loading:  # on screen at once: pre-flight already imports Keras (seconds)
        from cifarx.console import start_line

        start_line(name, COMMANDS[name].loading)
    rest, run_dir = (rest, None) if inspecting else _checked(name, rest, multirun)

    import hydra

    from cifarx.config.schema import config_dir
    from cifarx.run.full_disk import NoSpace, full_disk_past_hydra, no_space_before_task

    sys.argv = [f"cifarx {name}", *rest]
    try:
        with full_disk_past_hydra():
            # a job composed from another config than pre-flight checked validates itself
            checked = not inspecting and not any(a.split("=", 1)[0] in CONFIG_FLAGS for a in rest)
            task = _task_for(name, preflighted=checked)
            hydra.main(config_path=str(config_dir()), config_name=name, version_base="1.3")(task)()
    except NoSpace as full:  # Hydra's own writes (the run directory, .hydra/, the log) met a full disk
        return fail(name, no_space_before_task(name, full, run_dir, own=not inspecting and not multirun,
                                               sweep=multirun and not inspecting))
    except KeyboardInterrupt:
        if not multirun:
            raise
        from cifarx.sweep import report_interrupted

        return report_interrupted(name, split_overrides(rest))
    finally:
        from cifarx.run.ownership import MISSING_BEFORE_HYDRA

        MISSING_BEFORE_HYDRA.clear()  # this invocation's note, never the next one's
    return 0


register_resolvers()  # on import: launcher workers unpickling a task (see _task_for) need them too

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
