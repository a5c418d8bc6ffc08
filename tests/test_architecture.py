"""The shape of the package: imports run one way, the core stays headless.

The import graph is read from the source with :mod:`ast` (every ``import`` statement,
at module level or inside functions), so a circle is caught even when Python would
tolerate it at run time.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "spimflow"
GUI_MODULES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


@functools.cache
def imported_names(module: str, path: Path) -> set[str]:
    """Every module name ``module`` imports (``from pkg import sub`` counts as ``pkg.sub``
    when ``sub`` is a module of the package)."""
    known = _modules()
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                names.add(sub if sub in known else target)
    return names


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """spimflow module -> the spimflow modules it imports."""
    mods = _modules()
    return {m: {n for n in imported_names(m, p) if n in mods and n != m} for m, p in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_in_a_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    "layer, forbidden",
    [
        ("spimflow.steps", ("spimflow.tasks", "spimflow.cli", "spimflow.checks")),
        ("spimflow.atlas", ("spimflow.tasks", "spimflow.steps", "spimflow.cli")),
        ("spimflow.params", ("spimflow.tasks", "spimflow.steps", "spimflow.config", "spimflow.io")),
        ("spimflow.io", ("spimflow.tasks", "spimflow.steps", "spimflow.config")),
        # the memory requests are read in Snakemake's main process from headers only
        ("spimflow.resources", ("spimflow.tasks", "spimflow.cli", "spimflow.checks", "spimflow.blocks")),
    ],
)
def test_layers_import_downwards(layer, forbidden):
    graph = import_graph()
    bad = [
        f"{m} imports {n}"
        for m, deps in graph.items()
        if m == layer or m.startswith(layer + ".")
        for n in deps
        if n.startswith(forbidden)
    ]
    assert not bad, "\n".join(bad)


def test_tasks_do_not_import_other_tasks():
    graph = import_graph()
    bad = [
        f"{m} imports {n}"
        for m, deps in graph.items()
        if m.startswith("spimflow.tasks.")
        for n in deps
        if n.startswith("spimflow.tasks.")
    ]
    assert not bad, "\n".join(bad)


def test_core_is_headless():
    """Only spimflow.napari may import napari or Qt: the workflow runs on display-less nodes."""
    bad = []
    for module, path in _modules().items():
        if module == "spimflow.napari" or module.startswith("spimflow.napari."):
            continue
        for name in imported_names(module, path):
            if name.split(".")[0] in GUI_MODULES:
                bad.append(f"{module} imports {name}")
    assert not bad, "\n".join(bad)
