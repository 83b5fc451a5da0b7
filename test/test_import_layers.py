"""The import graph of ``handypriors_core`` and ``handypriors_ros``: no cycles, and the layers hold.

The layers (``docs/DEVELOPING.md`` draws them; each package's ``__init__`` docstring states its row): a package
may import only the packages :data:`MAY_IMPORT` lists for it, so every dependency points down.

A static walk (``ast``, nothing is imported): every ``import`` / ``from ... import`` of every module, resolved to
the most specific module of the two packages it names (``from .x import y`` is an edge to ``x``, or to ``x.y``
when ``y`` is a submodule). Module-level imports (outside functions, ``TYPE_CHECKING`` blocks left out) run
when the module is imported, so a cycle among them is a real one; imports inside functions are walked as well
(a deferred import that closes a cycle only hides it). The core never imports ``handypriors_ros`` or ``rclpy``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("handypriors_core", "handypriors_ros")

#: Shared by every layer: typed errors, argument checks, YAML -> settings, shipped defaults.
BASE = {"errors", "checks", "config", "defaults"}
#: What each part of the core may import (besides itself), bottom to top; ``ros`` is ``handypriors_ros``.
MAY_IMPORT: dict[str, set[str]] = {
    "errors": set(),
    "checks": {"errors"},
    "config": {"errors"},
    "defaults": {"errors"},
    "geometry": BASE,
    "render": BASE,
    "priors": BASE,
    "visualization": BASE,
    "models": BASE | {"geometry"},
    "physics": BASE | {"geometry"},
    "metrics": BASE | {"geometry"},
    "io": BASE | {"geometry", "models"},
    "estimation": BASE | {"geometry", "models", "render", "physics", "priors", "io"},
    "segmentation": BASE | {"geometry", "models", "io"},
    "synthetic": BASE | {"geometry", "models", "render", "physics", "io", "estimation"},
    "evaluation": BASE | {"geometry", "models", "io", "metrics"},
    "cli_contact": BASE | {"geometry", "models", "io", "estimation", "synthetic"},
    "app": BASE | {"geometry", "models", "render", "physics", "priors", "io", "estimation", "segmentation",
                   "synthetic", "evaluation", "metrics", "visualization"},
    "cli": BASE | {"app", "cli_contact"},
}
#: Module-level exceptions: test helpers that build an estimation scene.
EXCEPTIONS = {("handypriors_core.segmentation.testing", "estimation")}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    deferred: bool  # inside a function (runs when called, not when imported)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """``(node, deferred)`` of every import statement (TYPE_CHECKING blocks skipped)."""
    def walk(node, deferred):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    yield from walk(ast.Module(body=[other], type_ignores=[]), deferred)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, deferred
            inner = deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from walk(child, inner)
    yield from walk(tree, False)


def external_names(tree: ast.AST) -> set[str]:
    """Top-level names of every absolute import (``rclpy``, ``torch``, ``handypriors_ros`` ...)."""
    names = set()
    for node, _ in _imports(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def import_edges(modules: dict[str, Path]) -> list[Edge]:
    edges = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, deferred in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                targets = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in modules else stem
                           for alias in node.names]
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a name inside a module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.append(Edge(name, target, node.lineno, deferred))
    return edges


def cycles(nodes, edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {n: set() for n in nodes}
    for e in edges:
        graph[e.source].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _describe(component: list[str], edges: list[Edge]) -> str:
    inside = set(component)
    lines = {f"  {e.source} -> {e.target} (line {e.line}{', in a function' if e.deferred else ''})"
             for e in edges if e.source in inside and e.target in inside}
    return "cycle among " + ", ".join(component) + ":\n" + "\n".join(sorted(lines))


@pytest.fixture(scope="module")
def graph():
    modules = all_modules()
    return modules, import_edges(modules)


def test_walk_sees_the_packages(graph):
    """The walk itself: it finds the modules and known edges (a broken walk would find no cycle either)."""
    modules, edges = graph
    assert {"handypriors_core.cli", "handypriors_core.app.track", "handypriors_ros.allegro_tracker"} <= set(modules)
    pairs = {(e.source, e.target) for e in edges}
    assert ("handypriors_core.cli", "handypriors_core.app.track") in pairs  # `from .app.track import ...`
    assert ("handypriors_core.app.track", "handypriors_core.app.progress") in pairs
    assert any(s.startswith("handypriors_ros.") and t.startswith("handypriors_core.") for s, t in pairs)
    assert cycles(["a", "b", "c"], [Edge("a", "b", 1, False), Edge("b", "c", 1, True), Edge("c", "a", 1, False)]) \
        == [["a", "b", "c"]]


def test_no_import_cycle_at_module_level(graph):
    modules, edges = graph
    eager = [e for e in edges if not e.deferred]
    found = cycles(modules, eager)
    assert not found, "\n".join(_describe(c, eager) for c in found)


def test_no_import_cycle_with_deferred_imports(graph):
    modules, edges = graph
    found = cycles(modules, edges)
    assert not found, "\n".join(_describe(c, edges) for c in found)


def layer(module: str) -> str:
    """``ros`` for handypriors_ros, else the core's top-level package or module (``estimation``, ``cli``)."""
    parts = module.split(".")
    if parts[0] == "handypriors_ros":
        return "ros"
    return parts[1] if len(parts) > 1 else "core"


def test_every_dependency_points_down_the_layers(graph):
    modules, edges = graph
    parts = {layer(m) for m in modules} - {"ros", "core"}
    assert parts <= set(MAY_IMPORT), f"place {sorted(parts - set(MAY_IMPORT))} in MAY_IMPORT (and DEVELOPING.md)"
    upward = sorted({f"{e.source} -> {e.target} (line {e.line})" for e in edges
                     if layer(e.source) not in ("ros", "core") and layer(e.target) != layer(e.source)
                     and layer(e.target) not in MAY_IMPORT[layer(e.source)]
                     and (e.source, layer(e.target)) not in EXCEPTIONS})
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_core_never_imports_ros(graph):
    modules, _ = graph
    offenders = []
    for name, path in modules.items():
        if name.startswith("handypriors_core"):
            bad = external_names(ast.parse(path.read_text())) & {"handypriors_ros", "rclpy"}
            offenders += [f"{name} imports {b}" for b in sorted(bad)]
    assert not offenders, offenders
