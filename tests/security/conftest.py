"""Processes shared by the attack modules: a gateway, node alice registered there, node bob.

Started once per session (node startup costs about 1.5 s each) and checked
for a clean exit at teardown: an attack that crashed a node fails the run.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import pytest
import torch

import node
from peer.security.identity import Identity, ensure_identity
from tests.support import GatewayProcess, NodeProcess, start_gateway, start_node


@pytest.fixture(scope="session")
def security_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    proc = start_gateway(tmp_path_factory.mktemp("sec-gateway"))
    yield proc
    assert proc.stop() == 0, proc.stderr()


@pytest.fixture(scope="session")
def alice_bob(
    tmp_path_factory: pytest.TempPathFactory, security_gateway: GatewayProcess
) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    """Two nodes with their own keys; alice registers at the security gateway."""
    root = tmp_path_factory.mktemp("sec-nodes")
    gateway_args = ("--gateway", security_gateway.url, "--gateway-cafile", str(security_gateway.cafile))
    with ThreadPoolExecutor(2) as pool:
        alice_future = pool.submit(start_node, root, "alice", *gateway_args)
        bob_future = pool.submit(start_node, root, "bob")
        alice, bob = alice_future.result(), bob_future.result()
    yield alice, bob
    for proc in (alice, bob):
        assert proc.stop() == 0, proc.stderr()


@pytest.fixture(scope="session")
def alice(alice_bob: tuple[NodeProcess, NodeProcess]) -> NodeProcess:
    return alice_bob[0]


@pytest.fixture(scope="session")
def bob(alice_bob: tuple[NodeProcess, NodeProcess]) -> NodeProcess:
    return alice_bob[1]


@pytest.fixture(scope="session")
def identities(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Identity]:
    """Attacker key pairs and self-signed certificates, made on demand, one per name."""
    root = tmp_path_factory.mktemp("sec-identities")
    made: dict[str, Identity] = {}

    def get(name: str) -> Identity:
        if name not in made:
            made[name] = ensure_identity(root / name, name)
        return made[name]

    return get


def stolen_identity(proc: NodeProcess) -> Identity:
    """The real key and certificate of a running node, read from its state directory.

    Stands for a proof an attacker captured: only the node itself can sign
    with this key, so tests use it to make the proofs a capture would yield.
    """
    return ensure_identity(proc.state_dir, proc.node_id)


class Bystander:
    """A legitimate client with an object on a node, checked after every attack."""

    def __init__(self, proc: NodeProcess) -> None:
        self.proc = proc
        self.remote = node.connect(proc.url, cafile=proc.cafile, client_name="bystander")
        self.kept = self.remote.send(torch.arange(6.0))
        self.remote.sync()

    def check(self) -> None:
        """The bystander's object is intact and the node still computes for it."""
        assert torch.equal(self.kept.get(), torch.arange(6.0)), "a stored object was lost or changed"
        assert torch.equal((self.kept * 2).get(), torch.arange(6.0) * 2), "the node stopped computing"

    def close(self) -> None:
        """Last check: a brand-new client can still connect, store and compute."""
        self.remote.close()
        with node.connect(self.proc.url, cafile=self.proc.cafile) as fresh:
            assert torch.equal((fresh.send(torch.ones(3)) + 1).get(), torch.full((3,), 2.0))


def bystander_fixture(proc_fixture: str) -> Callable[..., Iterator[Bystander]]:
    """A module-scoped bystander on the node fixture ``proc_fixture``."""

    @pytest.fixture(scope="module")
    def fixture(request: pytest.FixtureRequest) -> Iterator[Bystander]:
        bystander = Bystander(request.getfixturevalue(proc_fixture))
        yield bystander
        bystander.close()

    return fixture
