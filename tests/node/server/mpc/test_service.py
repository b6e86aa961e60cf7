"""The crypto provider's side of mpc_deal: material comes from the injected providers, in two phases."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Mapping, Sequence

import torch

from node.mpc import MaterialKind, Providers
from node.mpc.material import MaterialSpec
from node.mpc.prg import Seed
from node.server.executor import Executor
from node.server.mpc.service import MpcService
from node.server.session import AsyncWork, Outcome, Session
from node.server.store import MemoryStore
from node.server.transfers import TransferService
from peer.security.tokens import network_key
from peer.server.auth import AnonymousAuthenticator
from protocol.codec import decode_message, encode_message_bytes
from protocol.errors import TesseraError
from protocol.ids import NodeId, RequestId
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import ErrorReply, HelloReply, HelloRequest, Message
from protocol.mpc import BilinearKind, MpcDealRequest, MpcMaterialRequest, PartyAddress, WireTriple

NODE = NodeId("charlie")
NETWORK = network_key("tsn1.the-network-of-these-tests-0123")
PARTIES = (
    PartyAddress(NodeId("bob"), "wss://b:1", "sha256:" + "b" * 64),
    PartyAddress(NodeId("alice"), "wss://a:1", "sha256:" + "a" * 64),
)
DEAL = MpcDealRequest(
    RequestId(7), bytes(16), PARTIES, (WireTriple(BilinearKind.MUL, (3,), (3,)),)
)


class Letters:
    """Stands in for pooled node-to-node links: records what is posted to whom, in order."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, MpcMaterialRequest]] = []

    def link(self, url: str) -> Any:
        letters = self

        class Link:
            """The two things the service asks of a pooled link: post a letter, wait until it is out."""

            last = 0

            def take_failure(self) -> TesseraError | None:
                return None

            def post(self, build: Callable[[RequestId], MpcMaterialRequest], what: str) -> None:
                self.last += 1
                letters.posted.append((url, build(RequestId(self.last))))

            async def drained(self) -> None:
                return None

        return Link()


class RecordingTransfers(TransferService):
    def __init__(self, letters: Letters) -> None:
        super().__init__(NODE, MemoryStore(), lambda fp: {}, 1 << 20, network=NETWORK,
                         fingerprint="sha256:" + "c" * 64)
        self.letters = letters

    def pooled(self, url: str, fingerprint: str) -> Any:
        return self.letters.link(url)


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
        self.seeds_dealt = tuple(Seed(bytes([i]) * 16) for i in range(n_parties))
        return self.seeds_dealt

    def dependent(
        self, specs: Sequence[MaterialSpec], seeds: Sequence[Seed]
    ) -> Mapping[int, tuple[torch.Tensor, ...]]:
        self.calls.append("dependent")
        assert tuple(seeds) == self.seeds_dealt
        return {i: (torch.full((3,), i, dtype=torch.int64),) for i in range(len(seeds))}

    def cost(self, specs: Sequence[MaterialSpec]) -> int:
        return 6


def session_with(providers: Providers, letters: Letters) -> Session:
    store = MemoryStore()
    transfers = RecordingTransfers(letters)
    service = MpcService(NODE, store, transfers, providers)
    session = Session(NODE, ("node",), Executor(NODE, store), store, AnonymousAuthenticator(), 1 << 26,
                      transfers=transfers, services=(service,))
    hello = HelloRequest(RequestId(1), PROTOCOL_VERSION, "tests", ("client",),
                         {"scheme": "anonymous", "secret": b"s" * 32})
    assert isinstance(session.receive(encode_message_bytes(hello)).reply, HelloReply)
    return session


def answer(session: Session, message: Message) -> Any:
    step = session.receive(encode_message_bytes(message))
    if isinstance(step, AsyncWork):
        step = asyncio.run(step.run())
    assert isinstance(step, Outcome)
    return None if step.reply is None else decode_message(encode_message_bytes(step.reply))


def test_a_deal_of_a_kind_this_node_does_not_deal_is_refused_before_sending() -> None:
    """No provider for the specs' kind: BAD_REQUEST naming the kind, and nothing posted."""
    letters = Letters()
    reply = answer(session_with(Providers(), letters), DEAL)
    assert isinstance(reply, ErrorReply) and reply.id == DEAL.id
    assert reply.code == "BAD_REQUEST" and "no beaver material" in reply.message
    assert letters.posted == []


def test_the_injected_provider_deals_seeds_first_then_its_dependent_tensors() -> None:
    """Every party gets its seed before the provider computes; dependent tensors go where it says."""
    letters, provider = Letters(), EveryPartyProvider()
    reply = answer(session_with(Providers(provider), letters), DEAL)
    assert reply is None
    assert provider.calls == ["seeds", "dependent"]
    seeds = [(url, m.party, m.seed) for url, m in letters.posted[:2]]
    assert seeds == [("wss://b:1", 0, bytes([0]) * 16), ("wss://a:1", 1, bytes([1]) * 16)]
    rest = letters.posted[2:]
    assert [(url, m.party, m.seed) for url, m in rest] == [("wss://b:1", 0, None), ("wss://a:1", 1, None)]
    assert [m.explicit[0].tolist() for _, m in rest] == [[0, 0, 0], [1, 1, 1]]
    assert all(m.specs == DEAL.specs and m.n_parties == 2 for _, m in letters.posted)
