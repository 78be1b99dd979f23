"""The import graph of ``ahop_cli``: every module imports, no module imports another one that
(directly or not) imports it back, and no ``ahop_cli`` import hides inside a function."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ahop_cli"


def module_name(path: Path, root: Path) -> str:
    """``root/pkg/a/b.py`` -> ``pkg.a.b`` (``__init__.py`` -> the package)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (anywhere in its file)."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import mod` names a submodule; `from pkg.mod import f` a module
                targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (``[a, b, ..., a]``), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def nested_imports(root: Path) -> list[str]:
    """``file:line`` of every import of the package made inside a function or class."""
    found = []
    package = root.name
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for outer in ast.walk(tree):
            if not isinstance(outer, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            for node in ast.walk(outer):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""] if node.level == 0 else [package]
                if any(n == package or n.startswith(package + ".") for n in names):
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return found


def test_every_module_imports() -> None:
    names = sorted(import_graph(PACKAGE))
    assert "ahop_cli.cli" in names and "ahop_cli.cv.engine" in names
    for name in names:
        importlib.import_module(name)


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph(PACKAGE)
    assert find_cycle(graph) is None
    # the layering the cycle check protects: the CLI's owner and the engine never reach the
    # commands that use them
    assert "ahop_cli.cli" not in set().union(*graph.values())
    assert not graph["ahop_cli.lightning_cli"] & {"ahop_cli.search", "ahop_cli.cv.command"}
    assert "ahop_cli.search" not in graph["ahop_cli.cv.engine"]
    assert "ahop_cli.lightning_cli" not in graph["ahop_cli.config_edit"]


def test_no_package_import_inside_a_function() -> None:
    assert nested_imports(PACKAGE) == []


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


@pytest.mark.parametrize(
    "files",
    [
        {"pkg/__init__.py": "", "pkg/a.py": "from pkg.b import f\n", "pkg/b.py": "import pkg.a\n"},
        {  # the circle of the old ahop_cli: hidden in a function, through `from pkg import`
            "pkg/__init__.py": "",
            "pkg/cli.py": "from pkg import engine\n",
            "pkg/engine.py": "def probe():\n    from pkg.cli import main\n",
            "pkg/sub/__init__.py": "",
        },
    ],
)
def test_the_checks_find_a_cycle_and_a_hidden_import(tmp_path: Path, files) -> None:
    root = _write(tmp_path, files)
    cycle = find_cycle(import_graph(root))
    assert cycle is not None and cycle[0] == cycle[-1] and len(cycle) == 3
    hidden = nested_imports(root)
    assert hidden == (["pkg/engine.py:2"] if "pkg/engine.py" in files else [])


def test_every_subpackage_ships_in_the_wheel() -> None:
    """pyproject lists the packages by name: a new subpackage must be listed, or the installed
    ``ahop`` command fails to import it."""
    tomllib = pytest.importorskip("tomllib")
    listed = set(
        tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"][
            "packages"
        ]
    )
    found = {
        module_name(init.parent / "x.py", PACKAGE)[: -len(".x")]
        for init in PACKAGE.rglob("__init__.py")
    }
    assert found and found <= listed, sorted(found - listed)
