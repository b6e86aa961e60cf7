"""The crypto provider's side of mpc_deal: material comes from the injected providers, in two phases.

Three real nodes in this process (TLS, network token, real links between
them): charlie deals with the providers it was built with, alice and bob
are the parties, and their mailboxes show what reached them and in which
order.  A client asks charlie for the deal over its own TLS connection.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import AsyncIterator, Mapping, Sequence

import pytest
import torch

import node
from node.mpc import MaterialKind, Providers
from node.mpc.material import MaterialSpec
from node.mpc.prg import Seed
from node.server.mpc.mailbox import Slot
from node.server.runtime import NodeServer
from node.server.users import UserDirectory
from node.settings import NodeSettings
from peer.security.tokens import parse_user_token
from protocol.errors import BadRequest
from protocol.ids import NodeId
from protocol.mpc import BilinearKind, MpcDealRequest, MpcMaterialRequest, PartyAddress, WireTriple
from tests.support import NETWORK_TOKEN, USER_TOKEN

SPECS = (WireTriple(BilinearKind.MUL, (3,), (3,)),)


class EveryPartyProvider:
    """A provider of the Beaver kind whose dependent phase sends every party a tensor (as FSS keys will)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.seeds_dealt: tuple[Seed, ...] = ()

    @property
    def kind(self) -> MaterialKind:
        return MaterialKind.BEAVER

    def seeds(self, n_parties: int) -> tuple[Seed, ...]:
        self.calls.append("seeds")
        self.seeds_dealt = tuple(Seed(bytes([i + 1]) * 16) for i in range(n_parties))
        return self.seeds_dealt

    def dependent(
        self, specs: Sequence[MaterialSpec], seeds: Sequence[Seed]
    ) -> Mapping[int, tuple[torch.Tensor, ...]]:
        self.calls.append("dependent")
        assert tuple(seeds) == self.seeds_dealt
        return {i: (torch.full((3,), i, dtype=torch.int64),) for i in range(len(seeds))}

    def cost(self, specs: Sequence[MaterialSpec]) -> int:
        return 6


class Network:
    """alice and bob (parties) and charlie (the crypto provider), started in this process."""

    def __init__(self, tmp_path: Path, providers: Providers) -> None:
        def settings(name: str) -> NodeSettings:
            state = tmp_path / name
            UserDirectory(state).add(parse_user_token(USER_TOKEN))
            return NodeSettings(node_id=NodeId(name), state_dir=state, port=0, network_token=NETWORK_TOKEN)

        self.alice, self.bob = NodeServer(settings("alice")), NodeServer(settings("bob"))
        self.charlie = NodeServer(settings("charlie"), providers=providers)

    @property
    def servers(self) -> tuple[NodeServer, ...]:
        return self.alice, self.bob, self.charlie

    def parties(self) -> tuple[PartyAddress, ...]:
        out = []
        for server in (self.bob, self.alice):
            assert server.identity is not None
            out.append(PartyAddress(server.settings.node_id, server.url, server.identity.fingerprint))
        return tuple(out)

    def deal(self, session: bytes) -> None:
        """What a client does: post mpc_deal to charlie, then sync (which raises the deal's error)."""
        assert self.charlie.identity is not None
        client = node.connect(self.charlie.url, cafile=self.charlie.identity.cert_path, token=USER_TOKEN)
        try:
            parties = self.parties()
            client.post(lambda rid: MpcDealRequest(rid, session, parties, SPECS), "mpc_deal")
            client.sync()
        finally:
            client.close()


@pytest.fixture
async def network_of(tmp_path: Path) -> AsyncIterator[list[Network]]:
    made: list[Network] = []
    yield made
    for network in made:
        for server in network.servers:
            await server.close()


async def started(made: list[Network], tmp_path: Path, providers: Providers) -> Network:
    network = Network(tmp_path, providers)
    made.append(network)
    for server in network.servers:
        await server.start()
    return network


async def letter(party: NodeServer, dealer: NodeServer, session: bytes, slot: Slot) -> MpcMaterialRequest:
    """The material letter ``party`` got from ``dealer`` in ``slot`` (waits up to 10 s)."""
    assert party.mpc is not None and dealer.identity is not None
    sender = (dealer.settings.node_id, dealer.identity.fingerprint)
    got = await party.mpc.mailbox.take((session, slot, 0), sender, time.monotonic() + 10, "material")
    assert isinstance(got, MpcMaterialRequest)
    return got


async def test_a_deal_of_a_kind_this_node_does_not_deal_is_refused_before_sending(
    tmp_path: Path, network_of: list[Network]
) -> None:
    """No provider for the specs' kind: BAD_REQUEST naming the kind, and nothing reaches the parties."""
    network = await started(network_of, tmp_path, Providers())
    with pytest.raises(BadRequest, match="no beaver material"):
        await asyncio.to_thread(network.deal, bytes(16))
    await asyncio.sleep(0.2)
    for party in (network.alice, network.bob):
        assert party.mpc is not None and party.mpc.mailbox.buffered == 0


async def test_the_injected_provider_deals_seeds_first_then_its_dependent_tensors(
    tmp_path: Path, network_of: list[Network]
) -> None:
    """Every party gets its seed, then the tensors the provider's second phase gives it, over real links."""
    provider = EveryPartyProvider()
    network = await started(network_of, tmp_path, Providers(provider))
    session = bytes(range(16))
    await asyncio.to_thread(network.deal, session)
    assert provider.calls == ["seeds", "dependent"]
    for index, party in enumerate((network.bob, network.alice)):
        assert party.mpc is not None
        party.mpc.mailbox.begin(session, "user:tester", {})
        try:
            seed = await letter(party, network.charlie, session, Slot.SEED)
            explicit = await letter(party, network.charlie, session, Slot.EXPLICIT)
        finally:
            party.mpc.mailbox.end(session)
        assert (seed.party, seed.n_parties, seed.seed, seed.explicit) == (index, 2, bytes([index + 1]) * 16, ())
        assert (explicit.party, explicit.seed) == (index, None)
        assert [t.tolist() for t in explicit.explicit] == [[index] * 3]
        assert seed.specs == explicit.specs == SPECS
