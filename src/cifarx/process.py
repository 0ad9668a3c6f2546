"""What belongs to the process, not to one command: when the current command started (the time
budget's clock), how many commands this process has run (a run directory's name suffix), importing
Keras without TensorFlow's native start-up chatter, SIGTERM handled like Ctrl-C, and the caller's
logging and signal handlers put back when a command ends.

A bottom module: it imports nothing of cifarx's beyond the console and the device probe, so any
layer may use it."""

from __future__ import annotations

import contextlib
import gc
import os
import sys

INVOCATIONS = [0]  # `cifarx` commands started in this process (cli.main counts them)
COMMAND_STARTED: list[float] = []  # time.monotonic() when cli.main started the current command (the budget's clock)


def run_dir_suffix() -> str:
    """What follows the timestamp in a default run directory's name: the process id, and from a
    second command in the same process on (cifarx called as a library), its number too, so two
    commands started in the same second never share a directory."""
    return str(os.getpid()) if INVOCATIONS[0] <= 1 else f"{os.getpid()}-{INVOCATIONS[0]}"


def import_keras_quietly():
    """Import Keras (and its backend) with C++ start-up chatter (oneDNN, absl) kept off stderr.

    TensorFlow prints those lines from native code before any Python logging is configured and
    no environment variable silences all of them, so stderr is pointed at /dev/null meanwhile.
    """
    if "keras" in sys.modules:
        return sys.modules["keras"]
    from cifarx.console import err_console

    err_console()  # made while stderr is still the terminal: rich decides once whether it may draw live bars
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras

        from cifarx.training.devices import machine_gpus

        if keras.backend.backend() == "tensorflow" and not machine_gpus():
            import tensorflow as tf

            # With no NVIDIA driver, TensorFlow's GPU-capable wheel prints 'failed call to cuInit ...
            # UNKNOWN ERROR (303)' from native code when it first lists devices: list them here, quietly
            # (listing does not start the runtime: threads are still set by the trainer).
            tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    # The deep-learning stack's ~450k import-time objects live as long as the process: out of the
    # cyclic collector's sight, each full collection (Keras' clear_session, Python's own while
    # training) scans only what runs made, in microseconds instead of a quarter of a second. What
    # else is alive now is frozen with them (a command has barely started; a library caller that
    # needs its earlier objects' cycles collected can call gc.unfreeze()).
    gc.freeze()
    return keras


def stop_on_sigterm() -> None:
    """Treat SIGTERM (a cluster's pre-emption, `kill`) like Ctrl-C: stop, record, say how to resume."""
    import signal
    import threading

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


@contextlib.contextmanager
def caller_state_kept():
    """Around one `cifarx` command: what it changes process-wide is put back as the caller had it.
    Hydra configures logging for each job (console, the run's log file, levels), which would keep
    writing a caller's later lines into the last run's log, and a run treats SIGTERM as Ctrl-C.
    When the command ends, every logger that existed before it gets back its handlers, level and
    disabled flag (the handlers the command added are closed, so its log file is complete), and
    SIGTERM its handler; loggers of libraries first imported by the command keep their own set-up.
    A library caller or a test running commands one after another in one process keeps its own."""
    import logging
    import signal
    import threading

    loggers = [logging.getLogger(), *(lg for lg in list(logging.Logger.manager.loggerDict.values())
                                      if isinstance(lg, logging.Logger))]
    before = {lg: (list(lg.handlers), lg.level, lg.disabled) for lg in loggers}
    main_thread = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main_thread else None
    try:
        yield
    finally:
        for lg, (handlers, level, disabled) in before.items():
            for handler in [h for h in lg.handlers if h not in handlers]:  # the command's: closed
                with contextlib.suppress(Exception):  # a stream already gone
                    handler.close()
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.disabled = disabled
        if main_thread and sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)
