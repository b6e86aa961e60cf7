"""The ``node`` package: public names imported on first use, the client API only when asked for."""

from __future__ import annotations

import subprocess
import sys

import pytest

import node
from tests.support import ROOT


def loaded_after(statement: str) -> set[str]:
    """Module names a fresh interpreter holds after running ``statement``."""
    code = f"{statement}\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_every_public_name_resolves_and_is_listed() -> None:
    """Each name in node.__all__ imports, and dir(node) shows it."""
    for name in node.__all__:
        assert getattr(node, name) is not None, name
    assert set(node.__all__) <= set(dir(node))


def test_an_unknown_name_is_an_attribute_error() -> None:
    """A name outside the table is AttributeError (so hasattr and getattr defaults work)."""
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        node.Nope  # noqa: B018
    assert not hasattr(node, "tracker")


def test_import_node_loads_nothing_until_a_name_is_used() -> None:
    """`import node` alone loads neither torch nor the client API."""
    loaded = loaded_after("import node")
    assert "torch" not in loaded and not {m for m in loaded if m.startswith("node.client")}


def test_the_node_process_does_not_load_the_client_api() -> None:
    """`python -m node` (its __main__) imports no module of node.client."""
    assert not {m for m in loaded_after("import node.__main__") if m.startswith("node.client")}


def test_connect_loads_the_client_without_federated_jobs() -> None:
    """node.connect brings the synchronous client only: not federated jobs, the gateway or asyncio client."""
    loaded = loaded_after("import node\nnode.connect")
    assert "node.client.remote" in loaded
    assert not {"node.client.aio", "node.client.grid", "node.client.fl.jobs"} & loaded
