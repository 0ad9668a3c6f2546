"""The package's shape, checked statically: packages declare their public names, no module imports
another module's private name, and module-level imports have no cycles (a cycle makes import order
matter and breaks `import cifarx.<anything>` at random)."""

from __future__ import annotations

import ast
import importlib
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


def _top_level_imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph = {}
    for module, path in modules.items():
        out = set()
        for node in ast.parse(path.read_text()).body:  # import time only: imports inside functions run later
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
    assert _cycle(_top_level_imports(_modules())) is None


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
    """`import cifarx.run` (or any package) loads none of the heavy libraries: the CLI's help and
    errors stay instant."""
    import subprocess
    import sys

    code = ("import sys, cifarx.config, cifarx.run, cifarx.tracking, cifarx.commands, cifarx.training, cifarx.cli;"
            "print(sorted(m for m in ('tensorflow', 'keras', 'jax', 'sklearn', 'matplotlib', 'mlflow', 'optuna')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_run_recorded_before_the_package_layout_still_builds_its_schedule():
    """Saved configs name ``cifarx.schedules.<Class>`` (the flat layout): it builds today's class."""
    from cifarx.config.build import target_of
    from cifarx.training.schedules import OneCycle

    assert target_of({"_target_": "cifarx.schedules.OneCycle"}, "schedule") is OneCycle
