"""The package's shape, checked statically: packages declare their public names, no module imports
another module's private name, and imports have no cycles, neither at module level (a cycle there
makes import order matter and breaks `import cifarx.<anything>` at random) nor inside functions
(a deferred import that closes a cycle is the same tangle, only postponed: neither module can be
understood, tested or moved without the other)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGES = ("cifarx.config", "cifarx.run", "cifarx.tracking", "cifarx.commands", "cifarx.training")


def _modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "cifarx").rglob("*.py"):
        parts = list(path.with_suffix("").relative_to(SRC).parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _target(module: str, name: str, modules: dict[str, Path]) -> str:
    """The cifarx module an import names (``from a.b import c`` names a.b.c when c is a module)."""
    for candidate in (f"{module}.{name}", module):
        while candidate and candidate not in modules:
            candidate = candidate.rpartition(".")[0]
        if candidate:
            return candidate
    return module


def _imports(modules: dict[str, Path], deferred: bool = False) -> dict[str, set[str]]:
    """module -> the cifarx modules it imports: at import time, or with ``deferred`` anywhere
    (inside functions too)."""
    graph = {}
    for module, path in modules.items():
        out = set()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree) if deferred else tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cifarx"):
                out |= {_target(node.module, alias.name, modules) for alias in node.names}
            elif isinstance(node, ast.Import):
                out |= {_target(a.name, "", modules) for a in node.names if a.name.startswith("cifarx")}
        graph[module] = out - {module, "cifarx"}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_module_level_imports_have_no_cycle():
    assert _cycle(_imports(_modules())) is None


def test_imports_inside_functions_close_no_cycle_either():
    assert _cycle(_imports(_modules(), deferred=True)) is None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_module_imports_another_modules_private_name():
    offenders = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cifarx"):
                offenders += [f"{module}: from {node.module} import {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert offenders == []


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_declares_public_names_that_resolve(package):
    module = importlib.import_module(package)
    assert module.__all__, f"{package} declares no public names"
    assert sorted(dir(module)) == sorted(module.__all__)
    for name in module.__all__:
        assert not name.startswith("_")
        assert getattr(module, name) is not None


def test_importing_a_package_is_light():
    """`import cifarx.run` (or any package), or a command's validator, loads none of the heavy
    libraries: the CLI's help and pre-flight's errors stay instant."""
    import subprocess
    import sys

    code = ("import sys, cifarx.config, cifarx.run, cifarx.tracking, cifarx.commands, cifarx.training, cifarx.cli;"
            "from cifarx.commands.registry import COMMANDS, load;"
            "[load(c.validator) for c in COMMANDS.values() if c.validator];"  # pre-flight imports these
            "print(sorted(m for m in ('tensorflow', 'keras', 'jax', 'sklearn', 'matplotlib', 'mlflow', 'optuna')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_run_recorded_before_the_package_layout_still_builds_its_schedule():
    """Saved configs name ``cifarx.schedules.<Class>`` (the flat layout): it builds today's class."""
    from cifarx.config.build import target_of
    from cifarx.training.schedules import OneCycle

    assert target_of({"_target_": "cifarx.schedules.OneCycle"}, "schedule") is OneCycle


def test_a_model_saved_before_its_schedule_classes_moved_still_loads(tmp_path):
    """A .keras file records each custom object's module as it was when saved (``cifarx.optim``,
    then ``cifarx.training.optim``); the registered name is what loads it, wherever it lives now."""
    import json
    import zipfile

    import keras

    from cifarx.models import load_model
    from cifarx.training.lr_schedules import LinearWarmup, TriangularSchedule

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(LinearWarmup(TriangularSchedule(0.5, 100, 10), 5)), loss="mse")
    model.save(tmp_path / "new.keras")
    with zipfile.ZipFile(tmp_path / "new.keras") as new, zipfile.ZipFile(tmp_path / "old.keras", "w") as old:
        for item in new.infolist():
            data = new.read(item)
            if item.filename == "config.json":
                data = json.dumps(json.loads(data)).replace('"cifarx.training.lr_schedules"',
                                                           '"cifarx.training.optim"').encode()
                assert b"cifarx.training.optim" in data
            old.writestr(item, data)
    schedule = load_model(tmp_path / "old.keras").optimizer._learning_rate
    assert isinstance(schedule, LinearWarmup) and isinstance(schedule.after, TriangularSchedule)
    assert schedule.after.peak == 0.5 and schedule.warmup == 5


def test_every_import_of_a_cifarx_name_resolves_even_inside_functions():
    """An import inside a function runs only when that function does: one left pointing at a name
    that moved fails in a user's sweep, not at import time. Each is resolved here."""
    missing = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cifarx"):
                target = importlib.import_module(node.module)
                missing += [f"{module}: from {node.module} import {a.name}" for a in node.names
                            if not hasattr(target, a.name)
                            and importlib.util.find_spec(f"{node.module}.{a.name}") is None]
    assert missing == []


def test_every_command_the_registry_names_resolves():
    """The registry names each command's function and validator by string: a moved one fails here."""
    from cifarx.commands.registry import COMMANDS, load

    for command in COMMANDS.values():
        assert callable(load(command.target))
        assert command.validator is None or callable(load(command.validator))
