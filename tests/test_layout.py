"""The package layout keeps its promises (issue 14, DESIGN.md "Layout").

- ``monoport.wire`` is pure protocol code: importing any of its modules on
  its own, in a fresh interpreter, loads no I/O module (socket, ssl, select,
  gevent), so its parsers stay testable byte by byte and usable anywhere.
- No monoport module reaches into another monoport module's private names
  (``from .x import _y`` or ``x._y``): what is shared is public.
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
