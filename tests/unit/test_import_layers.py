"""backend/ imports one way: no import circles, and no room imports a room above it.

Read from the sources with ast, so it counts what a running program can import: imports
at module level and inside functions and classes alike (a function-level import is an
arrow too; it only hides a circle until that function runs). Imports under
``if TYPE_CHECKING:`` are left out: they are for the type checker and never run.
tests/tui/test_headless.py holds the other half (backend never imports textual or tui).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Rooms from the bottom up. Each rule: the rooms named first import none of the rooms
# named second (a module is in a room when its name is the room's or starts with it and
# a dot). Modules no rule names (new ones too) may import anything below them; a circle
# through them is still caught above.
_FOUNDATION = (
    "backend.aio",
    "backend.terminal_text",
    "backend.inputs",
    "backend.events",
    "backend.config",
)
_USERS_OF_DRIVERS = (
    "backend.lab",
    "backend.check",
    "backend.session",
    "backend.importer",
    "backend.import_detect",
)
_TOP = ("backend.experiments", "backend.sandbox", "backend.sim", "tui", "textual")
NEVER_UP: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (
        _FOUNDATION,
        ("backend.transport", "backend.probes", "backend.drivers", *_USERS_OF_DRIVERS, *_TOP),
    ),
    (("backend.transport",), ("backend.probes", "backend.drivers", *_USERS_OF_DRIVERS, *_TOP)),
    (("backend.probes",), ("backend.drivers", *_USERS_OF_DRIVERS, *_TOP)),
    (("backend.drivers",), (*_USERS_OF_DRIVERS, *_TOP)),
    (_USERS_OF_DRIVERS, _TOP),
]
FACTORIES = "backend.drivers.factories"
"""Picks the drivers, so it sits above them all: no other module in drivers/ imports it."""


# -- the graph ------------------------------------------------------------------------


def module_names(root: Path, top: str) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py under ``root/top``."""
    names = {}
    for path in sorted((root / top).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(body: Iterable[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import in ``body``, nested ones too, but not under ``if TYPE_CHECKING:``."""
    for statement in body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            yield statement
            continue
        if isinstance(statement, ast.If) and _is_type_checking(statement.test):
            yield from _import_nodes(statement.orelse)
            continue
        for child in ast.iter_child_nodes(statement):
            if isinstance(child, ast.stmt):
                yield from _import_nodes([child])
            elif isinstance(child, (ast.ExceptHandler, ast.match_case)):
                yield from _import_nodes(child.body)


def imported_names(name: str, path: Path) -> list[tuple[str, ...]]:
    """What ``name`` imports: ``(module,)`` for ``import M``, ``(P, X)`` for each X of
    ``from P import X`` (relative imports made absolute)."""
    is_package = path.name == "__init__.py"
    found: list[tuple[str, ...]] = []
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.Import):
            found += [(alias.name,) for alias in node.names]
            continue
        base = node.module or ""
        if node.level:
            package = name.split(".") if is_package else name.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, base] if base else package)
        found += [(base, alias.name) for alias in node.names]
    return found


def import_graph(root: Path, top: str = "backend") -> dict[str, set[str]]:
    """Module -> the modules under ``top`` it imports, and the outside packages it imports.

    ``from P import X`` is an arrow to the module P.X when there is one, else to P
    (``from backend.drivers import ParseError`` is the package's __init__). The parent
    packages an import runs first are not counted, as for any other checker: a package
    whose __init__ gathers its modules would otherwise be a circle with each of them.
    """
    modules = module_names(root, top)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for imported in imported_names(name, path):
            if imported[0].split(".")[0] != top:
                targets.add(imported[0].split(".")[0])
                continue
            target = ".".join(imported)
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def circles(graph: Mapping[str, set[str]]) -> list[set[str]]:
    """Strongly connected groups of more than one module (Tarjan), among graph's keys."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module]):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(group)

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def in_room(module: str, rooms: Iterable[str]) -> bool:
    return any(module == room or module.startswith(room + ".") for room in rooms)


def upward_arrows(graph: Mapping[str, set[str]]) -> list[str]:
    arrows = []
    for module, targets in sorted(graph.items()):
        for lower, higher in NEVER_UP:
            if in_room(module, lower):
                arrows += [f"{module} -> {t}" for t in sorted(targets) if in_room(t, higher)]
        if in_room(module, ("backend.drivers",)) and module != FACTORIES and FACTORIES in targets:
            arrows.append(f"{module} -> {FACTORIES}")
    return arrows


# -- backend/ -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT)


def test_backend_has_no_import_circle(graph: dict[str, set[str]]) -> None:
    assert len(graph) > 100
    assert circles(graph) == []


def test_drivers_import_no_circle_at_all(graph: dict[str, set[str]]) -> None:
    drivers = {m: t for m, t in graph.items() if in_room(m, ("backend.drivers",))}
    assert len(drivers) > 15
    assert circles(drivers) == []


def test_no_room_imports_a_room_above_it(graph: dict[str, set[str]]) -> None:
    assert upward_arrows(graph) == []


def test_drivers_import_nothing_from_sandbox_sim_experiments_or_tui(
    graph: dict[str, set[str]],
) -> None:
    above = ("backend.sandbox", "backend.sim", "backend.experiments", "tui", "textual")
    wrong = {
        module: sorted(t for t in targets if in_room(t, above))
        for module, targets in graph.items()
        if in_room(module, ("backend.drivers",))
    }
    assert {m: t for m, t in wrong.items() if t} == {}


def test_the_factories_pick_every_driver_and_no_driver_imports_them(
    graph: dict[str, set[str]],
) -> None:
    assert {
        "backend.drivers.hv_qemu",
        "backend.drivers.hv_xen",
        "backend.drivers.target_tgt",
        "backend.drivers.target_lio",
        "backend.drivers.target_iet",
        "backend.drivers.initiator",
    } <= graph[FACTORIES]
    importers = [m for m, t in graph.items() if FACTORIES in t and in_room(m, ("backend.drivers",))]
    assert importers == []


# -- the checker itself: it finds what it must, on a planted tree ----------------------


def _plant(root: Path, files: Mapping[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checker_sees_function_level_and_relative_imports_not_type_checking_ones(
    tmp_path: Path,
) -> None:
    _plant(
        tmp_path,
        {
            "backend/__init__.py": "",
            "backend/drivers/__init__.py": "class ParseError(ValueError): ...\n",
            "backend/drivers/base.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from backend.drivers.hv import Driver\n"
                "else:\n"
                "    from backend.events import Event\n"
            ),
            "backend/drivers/hv.py": (
                "from backend.drivers import ParseError\n"
                "from .base import Event\n"
                "class Driver:\n"
                "    def argv(self):\n"
                "        try:\n"
                "            pass\n"
                "        except OSError:\n"
                "            from backend.sandbox.image import argv\n"
            ),
            "backend/drivers/factories.py": "from backend.drivers.hv import Driver\n",
            "backend/drivers/lazy.py": (
                "def make():\n    from backend.drivers.factories import Driver\n"
            ),
            "backend/events.py": "import textual\n",
            "backend/sandbox/__init__.py": "",
            "backend/sandbox/image.py": "from backend.drivers import hv\n",
        },
    )
    graph = import_graph(tmp_path)
    assert graph["backend.drivers.base"] == {"backend.events", "typing"}
    assert graph["backend.drivers.hv"] == {
        "backend.drivers",
        "backend.drivers.base",
        "backend.sandbox.image",
    }
    assert circles(graph) == [{"backend.drivers.hv", "backend.sandbox.image"}]
    assert upward_arrows(graph) == [
        "backend.drivers.hv -> backend.sandbox.image",
        "backend.drivers.lazy -> backend.drivers.factories",
        "backend.events -> textual",
    ]
