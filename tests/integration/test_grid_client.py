"""node.Gateway from a client's side: listing, searching by tag, connecting by id."""

from __future__ import annotations

import datetime
import time

import pytest
import torch

import node
from tests.support import GatewayProcess, start_gateway, start_node


@pytest.fixture(scope="module")
def grid_with_nodes(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("grid")
    gateway: GatewayProcess = start_gateway(tmp)
    trust = ("--gateway", gateway.url, "--gateway-cafile", str(gateway.cafile))
    alice = start_node(tmp, "alice", *trust, "--role", "data_owner", "--tag", "#Hospital")
    bob = start_node(tmp, "bob", *trust, "--role", "crypto_provider")
    grid = node.Gateway(gateway.url, cafile=gateway.cafile)
    try:
        deadline = time.monotonic() + 15
        while {n.id for n in grid.nodes() if n.online} != {"alice", "bob"}:
            assert time.monotonic() < deadline, "nodes did not register"
            time.sleep(0.1)
        yield grid, alice, bob
    finally:
        grid.close()
        for process in (alice, bob, gateway):
            process.stop()


def test_nodes_lists_what_each_node_registered(grid_with_nodes) -> None:  # type: ignore[no-untyped-def]
    """nodes() gives id, URL, fingerprint, roles, tags, last seen and online state."""
    grid, alice, bob = grid_with_nodes
    entries = {n.id: n for n in grid.nodes()}
    assert entries["alice"].url == alice.url and entries["alice"].fingerprint == alice.fingerprint
    assert entries["alice"].roles == ("data_owner",) and entries["alice"].tags == ("#hospital",)
    assert entries["bob"].roles == ("crypto_provider",)
    age = datetime.datetime.now(datetime.timezone.utc) - entries["bob"].last_seen
    assert age < datetime.timedelta(seconds=30) and entries["bob"].online


def test_search_by_tag(grid_with_nodes) -> None:  # type: ignore[no-untyped-def]
    """search('#hospital') (any case, with or without '#') finds alice only."""
    grid, _, _ = grid_with_nodes
    assert [m.node.id for m in grid.search("#hospital")] == ["alice"]
    assert [m.node.id for m in grid.search("HOSPITAL")] == ["alice"]
    assert grid.search("#bank") == []
    with pytest.raises(ValueError):
        grid.search("not a tag!")


def test_connect_by_id_pins_the_registered_certificate(grid_with_nodes) -> None:  # type: ignore[no-untyped-def]
    """connect('alice') reaches alice with the fingerprint she proved; unknown ids raise."""
    grid, alice, _ = grid_with_nodes
    remote = grid.connect("alice")
    assert remote.fingerprint == alice.fingerprint
    assert torch.equal((remote.send(torch.ones(2)) * 2).get(), torch.full((2,), 2.0))
    remote.close()
    with pytest.raises(node.NodeUnavailable, match="no node 'zed'"):
        grid.connect("zed")
