"""The backend stays usable without a screen: no backend module imports textual or tui.

(Drawing libraries that render to text, such as plotext for reports, are allowed.)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("textual", "tui")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_backend_source_imports_the_ui() -> None:
    sources = sorted((ROOT / "backend").rglob("*.py"))
    assert len(sources) > 10
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN
        )
        for path in sources
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_every_backend_module_loads_no_ui_package() -> None:
    script = (
        "import importlib, pkgutil, sys, backend\n"
        "names = [m.name for m in pkgutil.walk_packages(backend.__path__, 'backend.')]\n"
        "for name in names: importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(len(names), bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    count, bad = result.stdout.strip().split(" ", 1)
    assert int(count) > 10
    assert bad == "[]"
