"""Four real in-process nodes over TLS for secret-sharing tests: bob, alice, dave (parties), charlie (provider).

Each NodeServer has the network token, so their node-to-node links are
real pinned TLS links; each deals the runtime's default providers.  The
client is the real synchronous client, run on a worker thread
(:func:`client`) so it never blocks the loop the servers run on.  Test
modules import :class:`Cluster`, :func:`client` and the ``cluster``
fixture.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator, Callable, TypeVar

import pytest
import torch

import node
from node.server.runtime import NodeServer
from node.server.users import UserDirectory
from node.settings import NodeSettings
from peer.security.tokens import parse_user_token
from protocol.ids import NodeId
from tests.support import NETWORK_TOKEN, USER_TOKEN

__all__ = ["NAMES", "Cluster", "cluster", "client"]

T = TypeVar("T")
NAMES = ("bob", "alice", "dave", "charlie")


class Cluster:
    """The four servers and, once connected, one client handle per node."""

    def __init__(self, tmp_path: Path) -> None:
        def settings(name: str) -> NodeSettings:
            state = tmp_path / name
            UserDirectory(state).add(parse_user_token(USER_TOKEN))
            return NodeSettings(node_id=NodeId(name), state_dir=state, port=0, network_token=NETWORK_TOKEN)

        self.servers = {name: NodeServer(settings(name)) for name in NAMES}
        self.handles: dict[str, node.RemoteNode] = {}

    def connect(self) -> None:
        for name, server in self.servers.items():
            assert server.identity is not None
            self.handles[name] = node.connect(server.url, cafile=server.identity.cert_path, token=USER_TOKEN)

    def parties(self, n: int) -> tuple[node.RemoteNode, ...]:
        """The first ``n`` of bob, alice, dave."""
        return tuple(self.handles[name] for name in NAMES[:n])

    @property
    def provider(self) -> node.RemoteNode:
        return self.handles["charlie"]

    def share(self, value: torch.Tensor, n: int, **options: Any) -> node.SharedTensor:
        """``value`` shared between the first ``n`` parties, charlie dealing."""
        return node.share(value, *self.parties(n), crypto_provider=self.provider, **options)

    def close_clients(self) -> None:
        for handle in self.handles.values():
            handle.close()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    made = Cluster(tmp_path)
    for server in made.servers.values():
        await server.start()
    await asyncio.to_thread(made.connect)
    yield made
    await asyncio.to_thread(made.close_clients)
    for server in made.servers.values():
        await server.close()


async def client(fn: Callable[[], T]) -> T:
    """Run the synchronous client off the loop the servers run on."""
    return await asyncio.to_thread(fn)
