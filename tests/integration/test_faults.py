"""Faults: the gateway dies and returns, a node dies, a client loses its connection."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Callable

import pytest
import torch

import node
from tests.support import GatewayProcess, NodeProcess


def eventually(check: Callable[[], bool], deadline: float, what: str) -> float:
    """Poll ``check`` until true; returns the seconds it took, fails after ``deadline``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > deadline:
            pytest.fail(f"{what} did not happen within {deadline:.0f}s")
        time.sleep(0.1)
    return time.monotonic() - start


def online(grid: node.Gateway, node_id: str) -> bool:
    return any(n.id == node_id and n.online for n in grid.nodes())


def registered_node(spawn_node, gateway: GatewayProcess, node_id: str) -> NodeProcess:  # type: ignore[no-untyped-def]
    return spawn_node(node_id, "--gateway", gateway.url, "--gateway-cafile", str(gateway.cafile))


def test_gateway_restart(spawn_gateway, spawn_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Nodes keep serving while the gateway is down and re-register soon after it returns."""
    gateway: GatewayProcess = spawn_gateway()
    alice = registered_node(spawn_node, gateway, "alice")
    grid = node.Gateway(gateway.url, cafile=gateway.cafile)
    eventually(lambda: online(grid, "alice"), 15, "alice registering")
    remote = grid.connect("alice")
    x = remote.send(torch.tensor([1.0, 2.0]))
    remote.sync()
    grid.close()

    gateway.stop(signal.SIGKILL)
    assert torch.equal((x + 1).get(), torch.tensor([2.0, 3.0])), "alice stopped serving"

    again: GatewayProcess = spawn_gateway("--port", str(gateway.port), state_dir=gateway.state_dir)
    assert again.fingerprint == gateway.fingerprint
    grid = node.Gateway(again.url, cafile=again.cafile)
    took = eventually(lambda: online(grid, "alice"), 10, "alice re-registering")
    print(f"alice re-registered {took:.1f}s after the gateway returned")
    assert torch.equal(x.get(), torch.tensor([1.0, 2.0]))
    grid.close()
    remote.close()
    assert alice.process.poll() is None


def test_killed_node_goes_offline(spawn_gateway, spawn_node) -> None:  # type: ignore[no-untyped-def]
    """A node killed with SIGKILL is shown offline within the heartbeat window."""
    gateway: GatewayProcess = spawn_gateway("--heartbeat-seconds", "1")
    bob = registered_node(spawn_node, gateway, "bob")
    with node.Gateway(gateway.url, cafile=gateway.cafile) as grid:
        eventually(lambda: online(grid, "bob"), 15, "bob registering")
        bob.stop(signal.SIGKILL)
        eventually(lambda: not online(grid, "bob"), 5, "bob marked offline")
        entry = grid.node("bob")
        assert not entry.online
        with pytest.raises(node.NodeUnavailable, match="offline"):
            grid.connect("bob")


def test_clean_shutdown_deregisters(spawn_gateway, spawn_node) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM makes the node deregister: it disappears from the gateway's list."""
    gateway: GatewayProcess = spawn_gateway()
    carol = registered_node(spawn_node, gateway, "carol")
    with node.Gateway(gateway.url, cafile=gateway.cafile) as grid:
        eventually(lambda: online(grid, "carol"), 15, "carol registering")
        assert carol.stop() == 0
        eventually(lambda: all(n.id != "carol" for n in grid.nodes()), 5, "carol deregistering")


@pytest.mark.timeout(30)  # a hang is the failure this test exists to catch
def test_pointer_to_dead_node_raises_node_unavailable(spawn_node) -> None:  # type: ignore[no-untyped-def]
    """get() on a pointer whose node died raises NodeUnavailable instead of hanging."""
    dave: NodeProcess = spawn_node("dave")
    remote = node.connect(dave.url, cafile=dave.cafile)
    x = remote.send(torch.ones(2))
    remote.sync()
    dave.stop(signal.SIGKILL)
    with pytest.raises(node.NodeUnavailable):
        x.get()
