"""protocol/ is pure: it imports only pure stdlib modules, msgpack and torch.

Scans the AST of every module, so an import hidden in a function body is
caught as well as one at the top.  Torch is imported by ``tensors.py`` alone;
everyone else names it only for the type checker.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "protocol"
MODULES = sorted(PROTOCOL.glob("*.py"))

ALLOWED = frozenset(
    {
        # pure standard library
        "__future__", "abc", "collections", "ctypes", "dataclasses", "enum", "functools", "hashlib",
        "itertools", "math", "numbers", "operator", "re", "struct", "sys", "types", "typing",
        "warnings",
        # third party
        "msgpack", "torch",
        # ourselves
        "protocol",
    }
)
"""Top-level modules protocol/ may import (``ctypes`` only views tensor memory)."""

FORBIDDEN = frozenset(
    {
        "node", "gateway", "asyncio", "websockets", "ssl", "socket", "os", "io", "pathlib",
        "shutil", "tempfile", "glob", "subprocess", "threading", "multiprocessing",
        "concurrent", "selectors", "signal", "pickle", "marshal", "shelve", "importlib",
        "urllib", "http", "logging", "builtins", "numpy",
    }
)
"""Never allowed, whatever ALLOWED grows into."""

FORBIDDEN_CALLS = frozenset({"open", "__import__", "eval", "exec", "compile"})


def _imports(path: Path) -> list[tuple[int, str, int]]:
    """(line, top-level module, relative level) for every import in ``path``."""
    found: list[tuple[int, str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name.split(".")[0], 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            top = node.module.split(".")[0] if node.module and node.level == 0 else "protocol"
            found.append((node.lineno, top, node.level))
    return found


def test_protocol_has_modules() -> None:
    """The scan sees the package's modules (guards against a wrong path)."""
    names = {path.name for path in MODULES}
    assert {"__init__.py", "codec.py", "errors.py", "messages.py", "tensors.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_protocol_imports_only_allowed_modules(path: Path) -> None:
    """Every import in protocol/ is a pure stdlib module, msgpack, torch or protocol itself."""
    bad = [(line, top) for line, top, _ in _imports(path) if top not in ALLOWED or top in FORBIDDEN]
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_relative_imports_stay_inside_protocol(path: Path) -> None:
    """Relative imports never climb out of the package (level 1 only)."""
    assert all(level <= 1 for _, _, level in _imports(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_protocol_calls_no_file_or_eval_builtins(path: Path) -> None:
    """protocol/ never calls open, __import__, eval, exec or compile."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    calls = [
        (node.lineno, node.func.id)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        and node.func.id in FORBIDDEN_CALLS
    ]
    assert not calls, f"{path.name} calls {calls}"


def test_allowlist_and_denylist_do_not_overlap() -> None:
    """The allowlist never contains a forbidden module."""
    assert not ALLOWED & FORBIDDEN


def test_importing_protocol_loads_none_of_our_other_rooms() -> None:
    """Importing protocol does not import node, gateway or websockets."""
    code = (
        "import sys, protocol, protocol.ops, protocol.codec;"
        "print(','.join(m for m in ('node', 'gateway', 'websockets') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
        check=True,
    )
    assert result.stdout.strip() == ""


def _runtime_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level module) of every import outside an ``if TYPE_CHECKING:`` block."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.extend((child.lineno, alias.name.split(".")[0]) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append((child.lineno, child.module.split(".")[0]))
            visit(child)

    visit(tree)
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_only_tensors_imports_torch(path: Path) -> None:
    """torch is imported at run time by protocol/tensors.py only; other modules name it for mypy alone."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    torch_lines = [line for line, top in _runtime_imports(tree) if top == "torch"]
    if path.name == "tensors.py":
        assert torch_lines
    else:
        assert not torch_lines, f"{path.name} imports torch at lines {torch_lines}"
