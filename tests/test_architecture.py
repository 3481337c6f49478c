"""The package's shape: no import cycles between cascade's modules, every scenario on one
runner path, and the public names importable as the README shows them."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import cascade

ROOT = Path(cascade.__file__).parent
README = Path(__file__).resolve().parents[1] / "README.md"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] == "__main__":
            continue
        mods[".".join(parts)] = path
    return mods


def import_graph() -> dict[str, set[str]]:
    """Module -> the cascade modules it imports anywhere in its body (functions included).
    ``from cascade.x import y`` counts as importing ``cascade.x.y`` when that is a module."""
    mods = _modules()
    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods
                         else node.module for a in node.names]
            for name in names:
                if name in mods and name != mod:
                    graph[mod].add(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (c := visit(n)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_find_cycle_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    graph = import_graph()
    assert "cascade.runner" in graph["cascade.analysis.targets"]  # the graph sees lazy imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_layers():
    """Exchange rules know nothing of the model, engine or outputs; the engine nothing of the
    analysis, plots or command line."""
    graph = import_graph()
    for mod, deps in graph.items():
        if mod.startswith("cascade.rules."):
            assert all(d.startswith(("cascade.rules", "cascade._numba", "cascade.errors"))
                       for d in deps), (mod, deps)
        if mod.startswith("cascade.engine"):
            assert not any(d.startswith(("cascade.analysis", "cascade.plots", "cascade.cli",
                                         "cascade.runner", "cascade.result")) for d in deps), mod


def test_one_runner_path():
    """Single- and multi-venue scenarios share one simulate, one EngineState constructor and
    one result assembly."""
    from cascade.engine import EngineState
    from cascade.model import venues
    from cascade.result import Result

    assert not hasattr(venues, "simulate_venues")
    assert not hasattr(EngineState, "initial")
    assert not hasattr(Result, "assemble_venues")


def test_every_module_imports():
    for info in pkgutil.walk_packages(cascade.__path__, "cascade."):
        importlib.import_module(info.name)


def test_readme_public_names():
    """Every ``cascade.NAME`` / ``cascade.a.b.NAME`` the README's Python blocks use resolves
    after a plain ``import cascade``, and every ``from cascade... import`` works."""
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    seen = 0
    for block in blocks:
        for line in block.splitlines():
            m = re.match(r"\s*from (cascade[\w.]*) import ([\w, ]+)", line)
            if m:
                mod = importlib.import_module(m.group(1))
                for name in m.group(2).split(","):
                    assert hasattr(mod, name.strip()), line
                    seen += 1
            for dotted in re.findall(r"\bcascade((?:\.\w+)+)", line):
                obj = cascade
                for part in dotted.strip(".").split("."):
                    obj = getattr(obj, part)
                seen += 1
    assert seen >= 3


def test_subpackages_listed_for_tab_completion():
    for name in ("run", "load_scenario", "liquidation_price", "validate", "rules", "model",
                 "engine", "analysis", "io", "plots", "cli", "targets"):
        assert name in dir(cascade)
        assert getattr(cascade, name) is not None
    assert callable(cascade.targets.validate)
