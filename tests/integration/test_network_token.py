"""The network token keeps outsiders out of the registry; user tokens let people into a node."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import pytest
import torch

import node
from peer.security.tokens import new_network_token
from tests.support import GatewayProcess, NodeProcess, admit, start_gateway, start_node


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, NodeProcess, NodeProcess]]:
    """A gateway, a member node and a node holding another network's token, all started."""
    tmp = tmp_path_factory.mktemp("network-token")
    gateway = start_gateway(tmp, "--heartbeat-seconds", "0.5")
    other = tmp / "other-network-token"
    other.write_text(new_network_token() + "\n")
    trust = ("--gateway", gateway.url, "--gateway-cafile", str(gateway.cafile))
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(start_node, tmp, "member", *trust),
            pool.submit(start_node, tmp, "outsider", *trust, "--network-token-file", str(other)),
        ]
    started: list[NodeProcess] = [f.result() for f in futures if f.exception() is None]
    try:
        for future in futures:
            future.result()  # re-raise a failed start, after the others are in `started`
        yield gateway, started[0], started[1]
    finally:
        for process in started:
            process.stop()
        gateway.stop()


def test_only_the_member_registers(network: tuple[GatewayProcess, NodeProcess, NodeProcess]) -> None:
    """The node with the gateway's token is listed; the one with another token never is, and logs why."""
    gateway, member, outsider = network
    with node.Gateway(gateway.url, cafile=gateway.cafile) as grid:
        deadline = time.monotonic() + 15
        while True:
            ids = {entry.id for entry in grid.nodes()}
            assert "outsider" not in ids, "a node with another network token registered"
            refused = "did not prove membership" in outsider.stderr()
            if "member" in ids and refused:
                break
            assert time.monotonic() < deadline, (ids, outsider.stderr())
            time.sleep(0.1)
        time.sleep(1.0)  # a few retries later, still refused
        assert {entry.id for entry in grid.nodes()} == {"member"}
    assert outsider.process.poll() is None and member.process.poll() is None
    assert "Traceback" not in outsider.stderr()


def test_refused_node_keeps_serving(network: tuple[GatewayProcess, NodeProcess, NodeProcess]) -> None:
    """A node the gateway refused still serves its own users directly."""
    _, _, outsider = network
    with node.connect(outsider.url, cafile=outsider.cafile) as remote:
        assert torch.equal((remote.send(torch.ones(2)) + 1).get(), torch.full((2,), 2.0))


def test_admitted_user_connects_with_a_token(
    network: tuple[GatewayProcess, NodeProcess, NodeProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """node.connect(url, token=...) for a user admitted while the node runs works, as that user."""
    _, member, _ = network
    monkeypatch.delenv("TESSERA_TOKEN", raising=False)
    token = admit(member.state_dir, "dana")
    with node.connect(member.url, cafile=member.cafile, token=token) as remote:
        assert remote.principal == "user:dana"
        assert torch.equal(remote.send(torch.arange(3)).get(), torch.arange(3))


def test_no_token_is_unauthenticated(
    network: tuple[GatewayProcess, NodeProcess, NodeProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without token= or TESSERA_TOKEN the client is anonymous, which the node refuses."""
    _, member, _ = network
    monkeypatch.delenv("TESSERA_TOKEN", raising=False)
    with pytest.raises(node.Unauthenticated, match="TESSERA_TOKEN"):
        node.connect(member.url, cafile=member.cafile, token=None)
    assert member.process.poll() is None
