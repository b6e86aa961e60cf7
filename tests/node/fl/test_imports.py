"""Layering: the federated-learning core imports no networking and no node runtime."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FL = Path(__file__).resolve().parents[3] / "node" / "fl"
FORBIDDEN = ("asyncio", "websockets", "node.server", "node.client", "peer", "tqdm", "pickle")


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            prefix = {0: "", 1: "node.fl.", 2: "node."}.get(node.level, "?")
            names.append(prefix + (node.module or ""))
    return names


@pytest.mark.parametrize("path", sorted(FL.glob("*.py")), ids=lambda p: p.name)
def test_module_imports_nothing_forbidden(path: Path) -> None:
    """No node/fl module imports asyncio, websockets, pickle, tqdm, the peer layer or the node's server/client."""
    bad = [n for n in _imports(path) if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == []


def test_the_rule_sees_the_modules() -> None:
    """The import check actually finds the package's modules."""
    assert {p.name for p in FL.glob("*.py")} >= {"spec.py", "local.py", "aggregate.py", "datasets.py"}
