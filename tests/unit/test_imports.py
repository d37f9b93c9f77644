"""The import graph of core/, app/ and pages/: acyclic, and pointing one way.

Every import counts, at module level or inside a function: an import moved into a function to
dodge a cycle still closes the cycle here. Layers, highest first: pages -> app -> core, and
inside core the edges (CLI, notebooks) -> features -> storage -> foundation. A module imports
its own layer or lower ones, never a higher one, and nothing in core imports Streamlit.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 450  # past this a module has two jobs (docs/architecture.md)

# Inside core, lowest first. A module not listed is a feature module (layer 2).
FOUNDATION = {  # no I/O of its own beyond files and processes; imports no other layer
    "core.errors",
    "core.clock",
    "core.urls",
    "core.client_address",
    "core.text",
    "core.config",
    "core.datadir",
    "core.metrics",
    "core.embedded",
    "core.embedded.processes",
    "core.embedded.postgres",
    "core.embedded.redis",
}
STORAGE = {"core.services", "core.database", "core.models", "core.migrate", "core.history"}
EDGES = ("core.cli", "core.notebook", "core.__main__")  # and core.cli's modules


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_modules() -> dict[str, Path]:
    found = {}
    for folder in ("core", "app", "pages"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            found[module_name(path)] = path
    return found


MODULES = our_modules()


def imported_names(tree: ast.AST) -> set[str]:
    """Every module an AST imports (anywhere in it), as dotted names."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def edges(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Our module -> our modules it imports. ``from core import x`` is an edge to core.x when
    that is a module; the bare ``core`` package (a docstring) is left out."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {
            imported
            for imported in imported_names(ast.parse(path.read_text(), filename=str(path)))
            if imported in modules and imported not in {name, "core", "app"}
        }
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def layer(name: str) -> int:
    if name.startswith("pages"):
        return 6
    if name.startswith("app"):
        return 5
    if name in EDGES or name.startswith("core.cli."):
        return 3
    if name in STORAGE:
        return 1
    if name in FOUNDATION:
        return 0
    return 2


GRAPH = edges(MODULES)


def test_the_graph_covers_every_package() -> None:
    tops = {name.split(".")[0] for name in GRAPH}
    assert tops == {"core", "app", "pages"}
    assert len(GRAPH) > 40 and any(GRAPH.values())


def test_there_is_no_import_cycle() -> None:
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH) or [])


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_imports_point_down_the_layers(name: str) -> None:
    upward = sorted(target for target in GRAPH[name] if layer(target) > layer(name))
    assert upward == [], f"{name} (layer {layer(name)}) imports higher layers: {upward}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("core")))
def test_core_never_imports_streamlit(name: str) -> None:
    tree = ast.parse(MODULES[name].read_text())
    assert not {n for n in imported_names(tree) if n.split(".")[0] == "streamlit"}


@pytest.mark.parametrize(
    "name", sorted(n for n in MODULES if n.startswith(("core", "app"))), ids=str
)
def test_modules_have_one_job(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name}: {lines} lines"


def test_the_cycle_finder_finds_a_cycle_and_a_dodged_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    dodged = ast.parse("def f():\n    from core import services\n")
    assert "core.services" in imported_names(dodged)


def test_an_upward_import_is_caught() -> None:
    assert layer("core.services") < layer("core.chat") < layer("core.cli.chat") < layer("app.page")
    assert layer("core.client_address") == 0  # not core.cli's, whatever its name begins with
    assert layer("app.page") < layer("pages.chat")


def test_a_chat_without_tables_or_documents_loads_none_of_their_libraries() -> None:
    """The terminal client (and any turn of a chat with neither) starts without pandas, DuckDB,
    sqlglot, pyarrow, pypdf or NumPy: they load with the first table or document."""
    heavy = ("pandas", "duckdb", "sqlglot", "pyarrow", "pypdf", "numpy")
    probe = (
        "import sys, core.cli.chat, core.chat, core.turn_saving, core.chat_display; "
        f"print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []
