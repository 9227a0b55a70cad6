"""The package layering, checked over the import graph of ``ledger/`` (every import,
including those inside functions: a lazy import is still a dependency).

Layers, from the bottom: the core modules (settings, errors, canonical JSON, clock,
database plumbing, keys); the domains; ``wiring``, which builds the application state; the
front doors (``http``, then ``web`` on top of it, then ``server``, ``demo`` and ``cli``).
A unit may import only units at its own layer or below, and no two units may import each
other, directly or through others.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ledger"

CORE = {
    "allocator",
    "canonical",
    "clock",
    "config",
    "cpu",
    "db",
    "dbtypes",
    "dialect",
    "errors",
    "fields",
    "keystore",
    "limits",
    "packed",
    "pagination",
}
DOMAINS = {"consent", "images", "access", "policy", "provenance", "principals", "registry", "audit"}
FRONT_DOORS = {"http", "web", "cli", "server", "demo"}
# What each layer above the domains may import besides everything below it.
LAYER = {
    **dict.fromkeys(CORE, 0),
    **dict.fromkeys(DOMAINS, 1),
    "home": 2,  # creates a home and its first admin: core plus principals
    "tables": 5,  # every table module, for Alembic, the console's and HTTP's included
    "wiring": 2,
    "client": 2,  # the SDK: pure cores only (tests/test_pure_cores.py checks what it loads)
    "client_dicomweb": 2,  # the SDK's DICOMweb calls, mixed into the client
    "client_files": 2,  # the SDK's local files: downloads into a folder, names, revocations
    "http": 3,
    "web": 4,
    "server": 5,
    "demo": 5,
    "cli": 6,
    "__init__": 2,  # the package root: names the SDK's client, imported on first use
    "__main__": 7,  # ``python -m ledger``: the CLI
}


def unit_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "ledger":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def is_module(name: str) -> bool:
    """True when ``name`` (``ledger.x.y``) is a module or package, not a name inside one."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_graph() -> dict[str, dict[str, set[str]]]:
    """unit -> imported unit -> the modules that import it."""
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        source = unit_of(module)
        assert source is not None
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                names = [n for n in names if n == node.module or is_module(n)]
            for name in names:
                target = unit_of(name)
                if target is not None and target != source and target != "__init__":
                    graph[source][target].add(module)
    return graph


def test_every_unit_has_a_layer() -> None:
    units = {
        unit_of(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts))
        for p in PACKAGE.rglob("*.py")
    }
    assert units - LAYER.keys() == set(), "new top-level module: give it a layer here"


def test_units_import_only_their_layer_and_below() -> None:
    wrong = [
        f"{source} -> {target} (in {', '.join(sorted(modules))})"
        for source, targets in import_graph().items()
        for target, modules in targets.items()
        if LAYER[target] > LAYER[source]
    ]
    assert wrong == []


@pytest.mark.parametrize("door", sorted(FRONT_DOORS | {"wiring"}))
def test_domains_never_import_front_doors_or_wiring(door: str) -> None:
    graph = import_graph()
    assert [d for d in DOMAINS if door in graph.get(d, {})] == []


def test_no_cycle_between_units() -> None:
    graph = import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_graph_sees_imports_inside_functions() -> None:
    """The checks above would pass vacuously if the reader missed lazy imports."""
    graph = import_graph()
    assert "http" in graph["server"]
    assert "server" in graph["cli"]  # ``ledger serve`` imports the app inside the command
