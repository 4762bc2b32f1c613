"""The package layout keeps its promises (issue 14, DESIGN.md "Layout").

- ``monoport.wire`` is pure protocol code: importing any of its modules on
  its own, in a fresh interpreter, loads no I/O module (socket, ssl, select,
  gevent), so its parsers stay testable byte by byte and usable anywhere.
- No monoport module reaches into another monoport module's private names
  (``from .x import _y`` or ``x._y``): what is shared is public.
- No import circle between monoport modules, counting the imports made
  inside functions (a function-level import hides a circle, it does not cut
  it), beyond the ones listed in :data:`KNOWN_CIRCLES` with their reason.
  Imports under ``if TYPE_CHECKING:`` are not counted: they name a type for
  the checker and never run (how the typed services name what they hold).
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import monoport
import monoport.wire

PACKAGE = Path(monoport.__file__).parent
#: modules a pure module must not bring in, directly or through another import
IO_MODULES = ("socket", "_socket", "ssl", "_ssl", "select", "selectors", "gevent")
#: circles left on purpose, each with why; a new circle, or one of these cut, fails the test
KNOWN_CIRCLES: list[set[str]] = []
WIRE_MODULES = sorted(m.name for m in pkgutil.iter_modules(monoport.wire.__path__))


def test_the_wire_package_holds_the_pure_parsers():
    assert {"sniff", "proxyproto", "httphead", "rawframing", "eiopackets", "clienthello",
            "trust", "responses", "needmore"} <= set(WIRE_MODULES)


@pytest.mark.parametrize("name", WIRE_MODULES)
def test_wire_module_imports_no_io_module(name):
    probe = (
        "import sys\n"
        f"import monoport.wire.{name}\n"
        f"print(','.join(m for m in {IO_MODULES!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                            cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"monoport.wire.{name} loads {result.stdout.strip()}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(current: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute name ``from <level dots><module> import ...`` means inside ``current``."""
    if not level:
        return module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_reaches() -> list[str]:
    """Every use, in monoport, of another monoport module's private name."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        current = _module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        modules: dict[str, str] = {}  # local name -> monoport module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = _resolve(current, path.name == "__init__.py", node.level, node.module)
                if not source.startswith("monoport"):
                    continue
                for alias in node.names:
                    if source != current and _private(alias.name):
                        found.append(f"{current}: from {source} import {alias.name}")
                    modules[alias.asname or alias.name] = f"{source}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("monoport") and alias.asname:
                        modules[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in modules and _private(node.attr)
                    and modules[node.value.id] != current):
                found.append(f"{current}: {modules[node.value.id]}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    assert private_reaches() == []


def import_graph() -> dict[str, set[str]]:
    """monoport module -> the monoport modules it imports, anywhere in its code."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for current, path in paths.items():
        targets = set()
        tree = ast.parse(path.read_text(), str(path))
        typing_only = {id(inner) for node in ast.walk(tree) if _is_type_checking_block(node)
                       for stmt in node.body for inner in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom):
                source = _resolve(current, path.name == "__init__.py", node.level, node.module)
                for alias in node.names:  # ``from . import x`` imports the module x
                    targets.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in paths else source)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[current] = {t for t in targets if t in paths and t != current}
    return graph


def _is_type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def test_imports_for_the_type_checker_only_are_not_counted(tmp_path):
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\nfrom .c import C\n"
    tree = ast.parse(source)
    blocks = [node for node in ast.walk(tree) if _is_type_checking_block(node)]
    assert len(blocks) == 1 and isinstance(blocks[0].body[0], ast.ImportFrom)


def import_circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_import_circles_finds_a_circle_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_circles(graph) == [{"a", "b", "c"}]


def test_no_import_circle_between_monoport_modules_beyond_the_known_ones():
    circles = import_circles(import_graph())
    assert sorted(map(sorted, circles)) == sorted(map(sorted, KNOWN_CIRCLES))
