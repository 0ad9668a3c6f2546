"""User-facing errors: each one becomes a single line on stderr and a non-zero exit."""

from __future__ import annotations

import re


class CifarxError(Exception):
    """A problem the user can fix (bad config, bad data, missing files). No traceback is shown."""


class ConfigError(CifarxError):
    """An invalid configuration value or override."""


class DataError(CifarxError):
    """A data source that is missing, malformed or corrupt."""


class RunError(CifarxError):
    """A run directory that is missing, incomplete or of the wrong kind."""


class Pruned(Exception):
    """A search's pruner stopped this trial after an epoch (cifarx.commands.search): not an error."""


class TrainingDiverged(CifarxError):
    """The loss became NaN or infinite."""



def require(ok: bool, message: str) -> None:
    """Keras' style of argument check: the message repeats the bad value and says what is valid."""
    if not ok:
        raise ConfigError(message)


def one_line(text: str) -> str:
    """Collapse a multi-line message into one line."""
    return re.sub(r"\s+", " ", str(text)).strip()


EXIT_PARTIAL = 3  # done, but some inputs were left out: a command's result says {"outcome": "partial"}


class CommandExit(BaseException):
    """A command ending with an exit status, raised below the CLI: only ``cli.main`` turns it into the
    process's exit code (printing ``message``, when there is one, on stderr). A library caller of
    ``run_command`` catches it like any exception. A BaseException, as SystemExit is, so that Hydra's
    job runner and callbacks pass it through instead of reporting a crash."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
