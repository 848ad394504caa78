"""The architecture as a test: imports point down the layers only, and no module cycles.

Every import in the project's files counts, wherever it stands (module level, inside a
function, under TYPE_CHECKING): a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("benchmark", "methods", "tasks")

# layer -> the layers it may import (itself included). Kernel: config, errors, registry,
# files, logs, rundir. "api" is benchmark/__init__.py, the public facade (lazy re-exports).
ALLOWED = {
    "kernel": {"kernel"},
    "reporting": {"kernel", "reporting"},
    "tasks": {"kernel", "tasks"},
    "models": {"kernel", "tasks", "models"},
    "training": {"kernel", "tasks", "models", "training"},
    "evaluation": {"kernel", "tasks", "models", "evaluation"},
    "methods": {"kernel", "tasks", "models", "training", "evaluation", "methods"},
    "loop": {"kernel", "tasks", "models", "training", "evaluation", "methods", "reporting", "loop"},
    "run": {"kernel", "tasks", "models", "training", "evaluation", "methods", "reporting", "loop", "run"},
    "tools": {"kernel", "tasks", "models", "training", "evaluation", "methods", "reporting", "loop", "run", "tools"},
    "api": {"kernel", "tasks", "models", "training", "evaluation", "methods", "reporting", "loop", "run"},
}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] in ("methods", "tasks"):
        return parts[0]
    if module == "benchmark":
        return "api"
    if parts[1] in ("models", "training", "evaluation", "loop", "run", "tools", "reporting"):
        return parts[1]
    return "kernel"


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an import name lands in (longest known prefix), or None if external."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            # "from benchmark.reporting import metrics" is an edge to the submodule, not the package
            names = [
                n
                for n in names
                if n != node.module
                or _resolve(node.module, modules) == node.module
                and not any(f"{node.module}.{a.name}" in modules for a in node.names)
            ]
        else:
            continue
        found |= {target for n in names if (target := _resolve(n, modules)) and target != module}
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_imports_point_down_the_layers(graph):
    upward = [
        f"{src} ({layer_of(src)}) imports {dst} ({layer_of(dst)})"
        for src, targets in graph.items()
        for dst in sorted(targets)
        if layer_of(dst) not in ALLOWED[layer_of(src)]
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles(graph):
    cycles = [component for component in _strongly_connected(graph) if len(component) > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_an_upward_import_and_a_cycle():
    """The two tests above would fail on a real violation."""
    assert "reporting" not in ALLOWED["tasks"] and "run" not in ALLOWED["reporting"]
    toy = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [sorted(c) for c in _strongly_connected(toy) if len(c) > 1] == [["a", "b", "c"]]


def test_reporting_never_imports_torch():
    """Reports, plots and the leaderboard run on a laptop without torch's import cost."""
    code = (
        "import sys, benchmark.reporting.leaderboard, benchmark.reporting.reports, benchmark.reporting.plots, "
        "benchmark.reporting.summary, benchmark.reporting.publish; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative enough for a few hundred modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components
