"""protocol/'s surface: every module declares __all__, the package re-exports a small set explicitly."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import protocol

PROTOCOL = Path(protocol.__file__).resolve().parent
MODULES = sorted(p.stem for p in PROTOCOL.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", MODULES)
def test_every_module_declares_all_and_defines_it(name: str) -> None:
    """Each module has an __all__ whose names all exist in it."""
    module = importlib.import_module(f"protocol.{name}")
    assert isinstance(getattr(module, "__all__", None), list), f"protocol.{name} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"protocol.{name}.__all__ names {missing}"


def test_the_package_imports_its_names_explicitly() -> None:
    """protocol/__init__.py has no star import, and its __all__ is exactly what it imports."""
    tree = ast.parse((PROTOCOL / "__init__.py").read_text(encoding="utf-8"))
    imported = [alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names if node.module != "__future__"]
    assert "*" not in imported
    assert sorted(protocol.__all__) == sorted(imported)


def test_the_package_surface_stays_small() -> None:
    """The re-exported surface is the codec entry points, ids, limits, unions and error roots only."""
    assert len(protocol.__all__) <= 24
    for name in ("decode_message", "encode_message", "Frame", "RequestId", "PROTOCOL_VERSION",
                 "TesseraError", "LocalProtocolError", "RemoteProtocolError"):
        assert name in protocol.__all__


@pytest.mark.parametrize("name", MODULES)
def test_the_package_docstring_lists_every_module(name: str) -> None:
    """protocol's docstring names each module, as public or internal."""
    assert protocol.__doc__ is not None and f"``{name}``" in protocol.__doc__
