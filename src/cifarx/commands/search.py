"""`cifarx search`: an Optuna study that many worker processes share, with per-epoch pruning.

One worker = one process that opens (or creates) the study in its storage and runs trials until the
study holds ``search.n_trials`` of them. Any number of workers, started here (``search.workers=N``)
or on other machines (the same command, e.g. a SLURM array), join the same study: Optuna's journal
file on one machine, or a database (PostgreSQL) across machines. Each trial is a real ``train`` run
in its own directory under the search folder; a Keras callback reports the epoch's validation
accuracy to Optuna and stops the run when the pruner says so (``status.json``: ``pruned``).

A killed search continues with the same command: trials left RUNNING by a dead process (same host,
its pid gone; another host, no epoch reported for ``search.stale_after`` seconds) are marked failed
and ``abandoned`` and do not count, so new trials take their place.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

USAGE = """usage: cifarx search [hparams_search=<space>] [search.<key>=<value> ...] [train overrides ...]

Run an Optuna search of `cifarx train` (pip install "cifarx[search]"). Many processes, here or on
other machines, can join one study: give them the same search.study and search.storage.

  cifarx search hparams_search=simple_cnn_optuna search.n_trials=40 search.workers=2 trainer.epochs=30
  cifarx search search.storage=postgresql://user:pw@db:5432/optuna search.study=cnn   (on each machine)

search keys (conf/search.yaml):
{keys}
hparams_search=<name|file.yaml>: the search space, the `params` of conf/hparams_search/<name>.yaml
(default: simple_cnn_optuna). Every other key=value is a train override given to every trial.
The search folder gets one run directory per trial, search.json (every trial, the best run) and,
by default, the study itself (study.journal). `cifarx compare <search folder>` tabulates the trials.
"""

DEFAULT_SPACE = "simple_cnn_optuna"
DIRECTION = "maximize"
SUMMARY_FILE = "search.json"
TRIAL_FILE = "trial.json"


class SearchError(Exception):
    """A bad search setting or space: one line, exit 2, nothing written."""


# --------------------------------------------------------------------------- settings and space


def _settings(items: list[str]):
    from omegaconf import OmegaConf

    from cifarx.config.schema import config_dir

    base = OmegaConf.load(Path(config_dir()) / "search.yaml")
    OmegaConf.set_struct(base, True)
    try:
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(items))
    except Exception as exc:
        known = ", ".join(f"search.{k}" for k in base.search)
        raise SearchError(f"{_one_line(exc)}; the search keys are: {known}") from None
    s = merged.search
    if str(s.pruner) not in ("median", "halving", "none"):
        raise SearchError(f"search.pruner={s.pruner}: choose median, halving or none")
    if int(s.n_trials) < 1 or int(s.workers) < 1:
        raise SearchError("search.n_trials and search.workers must be at least 1")
    return s


def _one_line(exc: BaseException) -> str:
    from cifarx.errors import one_line

    return one_line(str(exc)).split(" full_key:")[0]


def space_file(name: str) -> Path:
    from cifarx.config.schema import config_dir

    path = Path(name).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return Path(config_dir()) / "hparams_search" / f"{name}.yaml"


def load_space(name: str) -> dict[str, Any]:
    """The space's ``params`` (``hydra.sweeper.params`` too, the older place), parsed by Hydra's
    override parser: {key: parsed override}."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    path = space_file(name)
    if not path.exists():
        offered = sorted(p.stem for p in space_file(DEFAULT_SPACE).parent.glob("*.yaml"))
        raise SearchError(f"hparams_search={name}: no such space ({path}); choose one of: {', '.join(offered)} "
                          "or give a .yaml file")
    cfg = OmegaConf.load(path)
    params = cfg.get("params") or OmegaConf.select(cfg, "hydra.sweeper.params")
    if not params:
        raise SearchError(f"{path} has no `params` (key: choice(...) | interval(...) | range(...))")
    parser = OverridesParser.create()
    space = {}
    for key, value in OmegaConf.to_container(params).items():
        try:
            (override,) = parser.parse_overrides([f"{key}={value}"])
        except Exception as exc:
            raise SearchError(f"{path}: {key}: {_one_line(exc)}") from None
        if not override.is_sweep_override():
            raise SearchError(f"{path}: {key}: {value} is one value; give choice(...), interval(...) or range(...)")
        space[str(key)] = override
    return space


def suggest(trial, space: dict[str, Any]) -> list[str]:
    """The trial's overrides: each key of the space sampled by ``trial.suggest_*``."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    overrides = []
    for key, override in space.items():
        sweep = override.value()
        log = "log" in getattr(sweep, "tags", set())
        if isinstance(sweep, ChoiceSweep):
            choices = [c if isinstance(c, (int, float, str, bool)) or c is None else str(c) for c in sweep.list]
            value = trial.suggest_categorical(key, choices)
        elif isinstance(sweep, IntervalSweep):
            if isinstance(sweep.start, int) and isinstance(sweep.end, int) and not log:
                value = trial.suggest_int(key, sweep.start, sweep.end)
            else:
                value = trial.suggest_float(key, float(sweep.start), float(sweep.end), log=log)
        elif isinstance(sweep, RangeSweep):
            step = sweep.step or 1
            values = [sweep.start + i * step for i in range(max(0, int((sweep.stop - sweep.start) / step + 1e-9)))]
            if all(float(v).is_integer() for v in [sweep.start, step]):
                value = trial.suggest_int(key, int(values[0]), int(values[-1]), step=int(step), log=log)
            else:
                value = trial.suggest_float(key, float(values[0]), float(values[-1]), step=float(step), log=log)
        else:  # pragma: no cover - the parser makes only these three
            raise SearchError(f"{key}: unsupported search value {sweep}")
        overrides.append(f"{key}={value}")
    return overrides


def objective_problem(cfg) -> str | None:
    """A search maximises a validation metric: never a test score, never a loss, never without a split."""
    objective = str(cfg.get("objective") or "")
    if not objective.startswith("val_"):
        return (f"objective={objective} would let the search select on the test set; a search optimises a "
                "validation metric: objective=val_accuracy with data.val_fraction > 0")
    if "loss" in objective:
        return f"objective={objective}: the search maximises its objective and would pick the worst trial; " \
               "use objective=val_accuracy"
    if not float(cfg.data.get("val_fraction") or 0) > 0:
        return (f"objective={objective} needs a validation split, but data.val_fraction="
                f"{cfg.data.get('val_fraction')} holds none out; set data.val_fraction=0.1 (the search must not "
                "select on the test set)")
    return None


# --------------------------------------------------------------------------- parsing the command line


class Plan:
    """What a command line asks for: settings, space, the train overrides every trial shares."""

    def __init__(self, argv: Sequence[str]):
        from cifarx.config.overrides import expand_paths

        args = list(argv)
        self.argv = args
        search_items = [a for a in args if a.startswith("search.")]
        spaces = [a.split("=", 1)[1] for a in args if a.startswith("hparams_search=")]
        self.train = expand_paths([a for a in args if not a.startswith(("search.", "hparams_search="))])
        bad = [a for a in [*search_items, *self.train] if "=" not in a or a.startswith("-")]
        if bad:
            raise SearchError(f"'{bad[0]}' is not key=value (`cifarx search --help` lists the keys)")
        self.settings = _settings(search_items)
        self.space_name = spaces[-1] if spaces else DEFAULT_SPACE
        space = load_space(self.space_name)
        fixed = {a.split("=", 1)[0].lstrip("+~") for a in self.train}
        self.space = {k: v for k, v in space.items() if k not in fixed}  # a key set on the command line stays fixed
        if not self.space:
            raise SearchError("every key of the space is fixed on the command line: nothing to search")
        s = self.settings
        self.study = str(s.study) if s.study else Path(self.space_name).stem
        from cifarx.run.layout import OUTPUTS

        self.dir = Path(str(s.dir) if s.dir else f"{OUTPUTS}/search/{self.study}").expanduser().resolve()
        self.storage = str(s.storage) if s.storage else str(self.dir / "study.journal")
        env_worker = os.environ.get("SLURM_ARRAY_TASK_ID")
        self.worker = int(s.worker) if s.worker is not None else int(env_worker) if env_worker else 0
        self.mlflow_parent = None  # logger=mlflow: the study's parent run (a cifarx.tracking.hooks.Tracker)

    def check(self) -> None:
        """Compose a trial's config (the first value of every choice) and run the train pre-flight
        and the objective guard: a bad search stops here, before anything is written."""
        from cifarx.config.composition import compose
        from cifarx.config.preflight import preflight

        sample = []
        for key, override in self.space.items():
            sweep = override.value()
            first = sweep.list[0] if hasattr(sweep, "list") else getattr(sweep, "start", None)
            sample.append(f"{key}={first}")
        problem = preflight("train", [*self.train, *sample])
        if problem:
            raise SearchError(problem)
        problem = objective_problem(compose("train", [*self.train, *sample]))
        if problem:
            raise SearchError(problem)


# --------------------------------------------------------------------------- storage and study


def storage_label(storage: str) -> str:
    """The storage with any password hidden (for search.json and messages)."""
    import re

    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", storage)


def open_storage(spec: str):
    from importlib.util import find_spec

    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    try:
        if spec.startswith(("postgresql://", "postgres://")) and find_spec("psycopg") is None \
                and find_spec("psycopg2") is not None:  # SQLAlchemy 2.1's default driver is psycopg 3
            spec = "postgresql+psycopg2://" + spec.split("://", 1)[1]
        if "://" in spec:
            kwargs = {"connect_args": {"timeout": 60}} if spec.startswith("sqlite") else {"pool_pre_ping": True}
            for attempt in range(5):  # workers meeting a new database race to create its tables: one wins
                try:
                    return optuna.storages.RDBStorage(spec, engine_kwargs=kwargs)
                except Exception as exc:
                    if attempt == 4 or "already exists" not in str(exc) and "UniqueViolation" not in str(exc):
                        raise
                    time.sleep(1 + attempt)
        Path(spec).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(Path(spec).expanduser())))
    except Exception as exc:
        raise SearchError(f"cannot open the study's storage search.storage={storage_label(spec)} "
                          f"({_one_line(exc)[:300]})") from None


def make_pruner(settings):
    import optuna

    warmup = int(settings.warmup_epochs)
    if settings.pruner == "median":  # steps are 1-based epochs: prunable from epoch warmup + 1
        return optuna.pruners.MedianPruner(n_startup_trials=int(settings.startup_trials), n_warmup_steps=warmup + 1)
    if settings.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, warmup),
                                                      reduction_factor=int(settings.reduction_factor))
    return optuna.pruners.NopPruner()


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        return True
    return True


def fail_abandoned(study, storage, stale_after: float | None) -> int:
    """Mark failed (user attr ``abandoned``) the RUNNING trials whose process is gone: on this host,
    by its pid; elsewhere, by no epoch reported for ``stale_after`` seconds. Returns how many."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    host, count = socket.gethostname(), 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("worker") or {}
        last = t.user_attrs.get("heartbeat") or (t.datetime_start.timestamp() if t.datetime_start else time.time())
        gone = owner.get("host") == host and not _alive(owner.get("pid"))
        stale = stale_after is not None and owner.get("host") != host and time.time() - last > float(stale_after)
        if gone or stale:
            try:
                storage.set_trial_user_attr(t._trial_id, "abandoned", True)
                storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                count += 1
            except UpdateFinishedTrialError:  # another worker got there first
                pass
    return count


def counted(trials) -> list:
    """The trials that count towards ``n_trials``: all but abandoned and surplus ones."""
    from optuna.trial import TrialState

    return [t for t in trials if t.state != TrialState.WAITING
            and not t.user_attrs.get("abandoned") and not t.user_attrs.get("surplus")]


# --------------------------------------------------------------------------- one trial


def pruning_callback(trial, objective: str):
    """Report the objective after each epoch; raise :class:`cifarx.errors.Pruned` when the pruner says so."""
    import keras

    from cifarx.errors import Pruned

    class ReportToOptuna(keras.callbacks.Callback):
        tracker = None  # logger=mlflow: the trial's MLflow run, which gets each reported value too

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(objective)
            if value is None:
                return
            step = epoch + 1  # the 1-based epoch, as history.csv counts
            trial.report(float(value), step)
            if self.tracker is not None:
                self.tracker.log_metrics({f"trial_{objective}": float(value)}, step=step)
            trial.set_user_attr("heartbeat", time.time())
            trial.set_user_attr("last_value", float(value))
            if trial.should_prune():
                raise Pruned(f"pruned after epoch {step} ({objective} {float(value):.4f})")

    return ReportToOptuna()


def run_trial(trial, plan: Plan, owner: dict) -> float:
    """One trial: its overrides, a real train run in ``<dir>/trial-NNNN``, the objective."""
    import optuna

    from cifarx.commands.train import run_train
    from cifarx.config.composition import compose
    from cifarx.errors import CommandExit, Pruned
    from cifarx.run.lifecycle import run_command
    from cifarx.run.rundir import write_json_atomic

    run_dir = plan.dir / f"trial-{trial.number:04d}"
    trial.set_user_attr("worker", owner)
    trial.set_user_attr("heartbeat", time.time())
    trial.set_user_attr("run_dir", str(run_dir))
    sampled = suggest(trial, plan.space)
    cfg = compose("train", [*plan.train, *sampled])
    objective = str(cfg.objective)
    callback = pruning_callback(trial, objective)

    trackers = []

    def train(cfg, run):
        run.epoch_callbacks = [callback]
        tracker = getattr(run, "tracker", None)
        if tracker is not None:  # logger=mlflow: a child of the study's parent run
            trackers.append(tracker)
            callback.tracker = tracker
            trial.set_user_attr("mlflow_run_id", tracker.run_id)
            parent = plan.mlflow_parent
            tracker.set_tags({"mlflow.parentRunId": parent.run_id if parent is not None else None,
                              "cifarx.search_study": plan.study, "cifarx.trial": trial.number,
                              "cifarx.trial_state": "running"})
            tracker.log_params({f"trial.{k}": v for k, v in trial.params.items()})
        return run_train(cfg, run)

    state, value = "failed", None
    try:
        value = run_command("train", train, cfg, run_dir=run_dir)
        state = "completed" if value is not None else "failed"
    except Pruned:
        state = "pruned"
        raise optuna.TrialPruned() from None
    except CommandExit as exc:  # run_command's one-line refusal (a user error such as a diverged run)
        if exc.message:
            print(exc.message, file=sys.stderr)
        if exc.code == 130:
            state = "interrupted"
            raise KeyboardInterrupt from None
        raise TrialFailed(f"train exited {exc.code}") from None
    finally:
        for tracker in trackers:  # the MLflow run has ended; its tag says how the trial did
            tracker.set_tags({"cifarx.trial_state": TRIAL_STATES.get(state, "failed")})
        if run_dir.exists():
            record = {"study": plan.study, "number": trial.number, "state": state, "objective": objective,
                      "value": value if value is not None else trial.user_attrs.get("last_value"),
                      "params": dict(trial.params), "overrides": sampled}
            write_json_atomic(run_dir / TRIAL_FILE, record)
            (run_dir / ".hydra").mkdir(exist_ok=True)
            (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {json.dumps(o)}\n" for o in sampled))
    if value is None:
        raise TrialFailed(f"the run's metrics hold no {objective}")
    return float(value)


class TrialFailed(Exception):
    pass


TRIAL_STATES = {"completed": "complete", "pruned": "pruned"}  # the tag cifarx.trial_state; else: failed


# --------------------------------------------------------------------------- MLflow: the study's parent run


def mlflow_logger(plan: Plan):
    """The trials' logger config when it is ``logger=mlflow`` (None otherwise)."""
    from cifarx.config.composition import compose

    logger_cfg = compose("train", plan.train).get("logger")
    return logger_cfg if logger_cfg is not None and str(logger_cfg.name) == "mlflow" else None


def open_parent(plan: Plan):
    """With logger=mlflow: the study's MLflow parent run (a Tracker), shared by every worker and by a
    continued search; None otherwise. A ConfigError when the store cannot be reached."""
    logger_cfg = mlflow_logger(plan)
    if logger_cfg is None:
        return None
    from cifarx.errors import CifarxError
    from cifarx.tracking.hooks import search_parent

    try:
        return search_parent(logger_cfg, plan.study, storage_label(plan.storage),
                             {"search_dir": str(plan.dir), "hparams_search": plan.space_name,
                              "overrides": " ".join(plan.train)})
    except CifarxError as exc:
        raise SearchError(_one_line(exc)) from None


def close_parent(plan: Plan, summary: dict[str, Any], study) -> None:
    """Best value and best trial onto the parent run (best effort: the trials are recorded already)."""
    parent = plan.mlflow_parent
    if parent is None:
        return
    from optuna.trial import TrialState

    try:
        from cifarx.tracking.hooks import finish_search_parent

        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        finish_search_parent(parent, summary, done=not running)
    except Exception as exc:
        _say(plan, f"MLflow: could not update the study's parent run ({_one_line(exc)[:200]})")


# --------------------------------------------------------------------------- the worker loop


def run_worker(plan: Plan) -> dict[str, int]:
    """Run trials until the study holds ``n_trials`` counted ones. Returns this worker's tally."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = plan.settings
    storage = open_storage(plan.storage)
    seed = int(s.seed) if s.seed is not None else int(_train_seed(plan))
    study = optuna.create_study(study_name=plan.study, storage=storage, load_if_exists=True, direction=DIRECTION,
                                sampler=optuna.samplers.TPESampler(seed=seed + plan.worker),
                                pruner=make_pruner(s))
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "worker": plan.worker}
    plan.mlflow_parent = open_parent(plan)
    n_trials = int(s.n_trials)
    tally = {"complete": 0, "pruned": 0, "failed": 0}
    abandoned = fail_abandoned(study, storage, s.stale_after)
    if abandoned:
        _say(plan, f"{abandoned} trial(s) left running by a stopped process marked failed (abandoned); "
                   "new trials take their place")
    while True:
        if len(counted(study.get_trials(deepcopy=False))) >= n_trials:
            break
        trial = study.ask()
        before = [t for t in counted(study.get_trials(deepcopy=False)) if t.number < trial.number]
        if len(before) >= n_trials:  # another worker took the last trial meanwhile
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=TrialState.FAIL)
            break
        try:
            value = run_trial(trial, plan, owner)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            tally["pruned"] += 1
            _say(plan, f"trial {trial.number} pruned{_value_text(study, trial)}")
            continue
        except KeyboardInterrupt:
            trial.set_user_attr("abandoned", True)  # a continued search runs a new trial in its place
            study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as exc:
            study.tell(trial, state=TrialState.FAIL)
            tally["failed"] += 1
            _say(plan, f"trial {trial.number} failed: {_one_line(exc)[:200]}")
            continue
        study.tell(trial, value)
        tally["complete"] += 1
        _say(plan, f"trial {trial.number} complete: {value:.4f}")
    close_parent(plan, write_summary(plan, study), study)
    return tally


def _value_text(study, trial) -> str:
    frozen = study._storage.get_trial(trial._trial_id)
    steps = frozen.intermediate_values
    if not steps:
        return ""
    last = max(steps)
    return f" after epoch {last} ({steps[last]:.4f})"


def _train_seed(plan: Plan) -> int:
    from cifarx.config.composition import compose

    return int(compose("train", plan.train).seed)


def _say(plan: Plan, text: str) -> None:
    print(f"cifarx search [{plan.study} w{plan.worker} pid {os.getpid()}]: {text}", file=sys.stderr, flush=True)


def write_summary(plan: Plan, study) -> dict[str, Any]:
    """search.json in the search folder: every trial, the counts, the best trial and its run directory
    (also the study's user attr ``best_run_dir``)."""
    from optuna.trial import TrialState

    from cifarx.run.rundir import write_json_atomic

    trials = study.get_trials(deepcopy=False)
    rows = [{"number": t.number, "state": t.state.name.lower(), "value": t.value,
             "last_value": t.user_attrs.get("last_value"), "epochs": max(t.intermediate_values, default=0),
             "params": t.params, "run_dir": t.user_attrs.get("run_dir"),
             **({"abandoned": True} if t.user_attrs.get("abandoned") else {})}
            for t in trials if not t.user_attrs.get("surplus")]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None
    summary = {"study": plan.study, "storage": storage_label(plan.storage), "direction": DIRECTION,
               "n_trials": int(plan.settings.n_trials), "pruner": str(plan.settings.pruner),
               "counts": {state: sum(r["state"] == state for r in rows)
                          for state in ("complete", "pruned", "fail", "running")},
               "best": None if best is None else {"number": best.number, "value": best.value, "params": best.params,
                                                  "run_dir": best.user_attrs.get("run_dir"),
                                                  **({"mlflow_run_id": best.user_attrs["mlflow_run_id"]}
                                                     if best.user_attrs.get("mlflow_run_id") else {})},
               "trials": rows}
    if best is not None:
        study.set_user_attr("best_run_dir", best.user_attrs.get("run_dir"))
    plan.dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(plan.dir / SUMMARY_FILE, summary)
    return summary


# --------------------------------------------------------------------------- the command


def _launch_workers(plan: Plan) -> int:
    """``search.workers=N``: N worker processes of this same command; their exit code (the worst)."""
    n = int(plan.settings.workers)
    extra = [] if any(a.startswith("trainer.threads=") for a in plan.train) \
        else [f"trainer.threads={max(1, (os.cpu_count() or 1) // n)}"]  # share the cores, do not oversubscribe
    base = [a for a in plan.argv if not a.startswith(("search.workers=", "search.worker="))]
    procs = [subprocess.Popen([sys.executable, "-m", "cifarx.cli", "search", *base, *extra, "search.workers=1",
                               f"search.worker={plan.worker + i}"], stdin=subprocess.DEVNULL)
             for i in range(n)]
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.terminate()  # SIGTERM: each worker records its trial as abandoned
        for p in procs:
            p.wait()
        raise
    return max(codes, key=lambda c: (c != 0, abs(c)))


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if any(a in ("-h", "--help", "help") for a in args):
        from omegaconf import OmegaConf

        from cifarx.config.schema import config_dir

        keys = OmegaConf.load(Path(config_dir()) / "search.yaml").search
        print(USAGE.format(keys="\n".join(f"  search.{k}={OmegaConf.to_yaml({k: v}).split(': ', 1)[1].strip()}"
                                          for k, v in keys.items())))
        return 0
    try:
        import optuna  # noqa: F401
    except ImportError:
        print('cifarx search: error: Optuna is not installed; pip install "cifarx[search]"', file=sys.stderr)
        return 2
    from cifarx.process import import_keras_quietly, stop_on_sigterm

    try:
        plan = Plan(args)
        plan.check()
        open_storage(plan.storage)  # an unreachable database stops here; a new one gets its tables once
    except SearchError as exc:
        print(f"cifarx search: error: {exc}", file=sys.stderr)
        return 2
    stop_on_sigterm()
    try:
        if int(plan.settings.workers) > 1:
            plan.mlflow_parent = open_parent(plan)  # made once here: the workers find it
            code = _launch_workers(plan)
            import optuna

            study = optuna.load_study(study_name=plan.study, storage=open_storage(plan.storage))
            summary = write_summary(plan, study)
            close_parent(plan, summary, study)
        else:
            import_keras_quietly()
            run_worker(plan)
            import optuna

            summary = write_summary(plan, optuna.load_study(study_name=plan.study, storage=open_storage(plan.storage)))
            code = 0
    except KeyboardInterrupt:
        print(f"cifarx search: interrupted; the same command continues study '{plan.study}' "
              f"({storage_label(plan.storage)})", file=sys.stderr)
        return 130
    except SearchError as exc:
        print(f"cifarx search: error: {exc}", file=sys.stderr)
        return 2
    c, best = summary["counts"], summary["best"]
    print(f"cifarx search: study '{plan.study}': {c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed"
          + (f"; best trial {best['number']}: {best['value']:.4f} in {best['run_dir']}" if best else "")
          + f"; {plan.dir / SUMMARY_FILE}")
    return code
