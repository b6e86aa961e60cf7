"""Bytes leave a node only for proven members, and errors say nothing of data the asker may not read.

Issue 11, classes 1 and 2, over real node processes (TLS, tokens):

- an ordinary user (no network token) splits a victim's private tensor
  naming a party ``alice`` that is really its own server (``Impostor``):
  alice recognises itself by certificate, not by name, and refuses;
- with alice really among the parties, the other party is the impostor:
  alice sends it nothing, because it never proved network membership on
  that link (no welcome, or a welcome under another network's key);
- an ordinary transfer of the attacker's own object to the impostor: nothing
  is delivered;
- encoding failures of a private tensor (a value out of the ring's range,
  non-finite values) come back withheld, identical whatever the values.

Each impostor records every frame kind it receives; the tests check no
payload ever arrived.  Before the fix, alice delivered both shares to the
impostor, the transfer landed, and errors echoed the value and the count.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from peer.security.tokens import network_key
from protocol.ids import NodeId, ObjectId, RequestId
from node.mpc.encoding import FixedPointEncoder
from node.mpc.material import stream_of
from node.mpc.prg import expand_seed
from node.server.mpc.specs import step_wire_specs
from protocol.codec import encode_message_bytes
from protocol.messages import AckReply, DeliverRequest, ErrorReply, ExpectRequest, PutRequest, TransferRequest
from protocol.mpc import (
    DealerRef,
    MpcMaterialRequest,
    MpcOpenRequest,
    MpcSplitReply,
    MpcSplitRequest,
    MpcStepRequest,
    PartyAddress,
    SplitTarget,
    StepOp,
    TruncationScheme,
)
from tests.security.attack_wire import Raw, admit_user, as_user, new_id, node_hello
from tests.security.impostor import Impostor
from tests.support import NETWORK_KEY, NodeProcess

ANOTHER_NETWORK = network_key("tsn1.another-network-entirely-0123456789")


@pytest.fixture()
def impostor(tmp_path: Path) -> Iterator[Impostor]:
    fake = Impostor(tmp_path / "impostor", "mallory")
    yield fake
    fake.close()


def _target(node: str, url: str, fingerprint: str, object_id: int | None = None) -> SplitTarget:
    return SplitTarget(NodeId(node), url, fingerprint, ObjectId(object_id or new_id()), secrets.token_bytes(32))


async def _victim_private(alice: NodeProcess, value: torch.Tensor) -> int:
    """A victim user's ``private=True`` tensor on alice; its object id."""
    victim = await Raw.open(alice)
    object_id = new_id()
    replies = await victim.exchange([PutRequest(RequestId(2), ObjectId(object_id), value, private=True)])
    await victim.close()
    assert replies == [], replies
    return object_id


async def _expect(proc: NodeProcess, token: str, target: SplitTarget, source: NodeProcess) -> None:
    """The attacker reserves ``target``'s id on ``proc`` for a delivery from ``source``."""
    raw = await Raw.open(proc, as_user(token, proc))
    reply = await raw.request(ExpectRequest(
        RequestId(2), target.object_id, NodeId(source.node_id), source.fingerprint, target.ticket
    ))
    await raw.close()
    assert isinstance(reply, AckReply), reply


def _split(alice: NodeProcess, token: str, object_id: int, parties: tuple[SplitTarget, ...]) -> Any:
    async def run() -> Any:
        attacker = await Raw.open(alice, as_user(token, alice))
        reply = await attacker.request(MpcSplitRequest(RequestId(3), ObjectId(object_id), 16, parties))
        await attacker.close()
        return reply

    return asyncio.run(run())


def test_a_party_named_like_the_data_node_is_not_the_data_node(alice: NodeProcess, tmp_path: Path) -> None:
    """Both "parties" are the attacker's servers, one of them called alice: PERMISSION_DENIED, nothing sent."""
    fakes = [Impostor(tmp_path / "f1", "alice"), Impostor(tmp_path / "f2", "mallory", welcome_key=NETWORK_KEY)]
    try:
        object_id = asyncio.run(_victim_private(alice, torch.arange(8.0)))
        token = admit_user(alice)
        parties = (_target("alice", fakes[0].url, fakes[0].fingerprint), _target("mallory", fakes[1].url, fakes[1].fingerprint))
        reply = _split(alice, token, object_id, parties)
        assert isinstance(reply, ErrorReply) and reply.code == "PERMISSION_DENIED", reply
        assert "own certificate" in reply.message
        for fake in fakes:
            assert fake.kinds == [], fake.kinds  # not even dialed
    finally:
        for fake in fakes:
            fake.close()


@pytest.mark.parametrize("welcome", [None, ANOTHER_NETWORK], ids=["no-welcome", "another-network"])
def test_a_share_never_reaches_a_party_that_did_not_prove_membership(
    alice: NodeProcess, tmp_path: Path, welcome: bytes | None
) -> None:
    """alice really is a party; the other party is a non-member: its share is never sent."""
    fake = Impostor(tmp_path / "fake", "mallory", welcome_key=welcome)
    try:
        object_id = asyncio.run(_victim_private(alice, torch.arange(8.0)))
        token = admit_user(alice)
        home = _target("alice", alice.url, alice.fingerprint)
        asyncio.run(_expect(alice, token, home, alice))
        reply = _split(alice, token, object_id, (home, _target("mallory", fake.url, fake.fingerprint)))
        assert isinstance(reply, ErrorReply) and reply.code == "PEER_UNAVAILABLE", reply
        assert "membership" in reply.message
        assert fake.payloads == [], fake.kinds
        assert "hello" in fake.kinds  # it was dialed, and dropped at the handshake
    finally:
        fake.close()


def test_an_ordinary_transfer_never_reaches_a_non_member(alice: NodeProcess, impostor: Impostor) -> None:
    """The attacker's own readable object, sent to its own server: refused, nothing delivered."""
    token = admit_user(alice)

    async def run() -> Any:
        attacker = await Raw.open(alice, as_user(token, alice))
        source = new_id()
        stored = await attacker.exchange([PutRequest(RequestId(2), ObjectId(source), torch.arange(4.0))])
        assert stored == []
        reply = await attacker.request(TransferRequest(
            RequestId(3), ObjectId(source), NodeId(impostor.node_id), impostor.url, impostor.fingerprint,
            ObjectId(new_id()), secrets.token_bytes(32), False,
        ))
        await attacker.close()
        return reply

    reply = asyncio.run(run())
    assert isinstance(reply, ErrorReply) and reply.code == "PEER_UNAVAILABLE", reply
    assert impostor.payloads == [], impostor.kinds


def test_a_member_still_receives(alice: NodeProcess, bob: NodeProcess) -> None:
    """Control: between two members the same transfer lands (the rule refuses only non-members)."""
    token = admit_user(alice, bob)
    dest, ticket = new_id(), secrets.token_bytes(32)

    async def run() -> Any:
        at_bob = await Raw.open(bob, as_user(token, bob))
        reserved = await at_bob.request(ExpectRequest(RequestId(2), ObjectId(dest), NodeId("alice"), alice.fingerprint, ticket))
        assert isinstance(reserved, AckReply), reserved
        at_alice = await Raw.open(alice, as_user(token, alice))
        source = new_id()
        assert await at_alice.exchange([PutRequest(RequestId(3), ObjectId(source), torch.arange(4.0))]) == []
        reply = await at_alice.request(TransferRequest(
            RequestId(4), ObjectId(source), NodeId("bob"), bob.url, bob.fingerprint, ObjectId(dest), ticket, False,
        ))
        for raw in (at_alice, at_bob):
            await raw.close()
        return reply

    assert isinstance(asyncio.run(run()), AckReply)


@pytest.mark.parametrize(
    "first, second",
    [
        (torch.tensor([1.0, 7.25e19, 3.0]), torch.tensor([1.0, -3.5e25, 3.0])),
        (torch.tensor([float("nan"), 1.0, 2.0, 3.0]), torch.tensor([float("nan"), float("inf"), float("nan"), -float("inf")])),
    ],
    ids=["out-of-range", "non-finite"],
)
def test_encoding_failures_of_private_data_are_withheld(
    alice: NodeProcess, bob: NodeProcess, first: torch.Tensor, second: torch.Tensor
) -> None:
    """Two private tensors failing differently answer identically: no value, no count."""
    token = admit_user(alice, bob)
    answers = []
    for value in (first, second):
        object_id = asyncio.run(_victim_private(alice, value))
        home = _target("alice", alice.url, alice.fingerprint)
        other = _target("bob", bob.url, bob.fingerprint)
        asyncio.run(_expect(alice, token, home, alice))
        asyncio.run(_expect(bob, token, other, alice))
        answers.append(_split(alice, token, object_id, (home, other)))
    for reply in answers:
        assert isinstance(reply, ErrorReply) and reply.code == "OP_FAILED", reply
        assert "details withheld" in reply.message and reply.details == {"kind": "mpc_split"}
        assert not any(ch.isdigit() for ch in reply.message), reply.message
    assert (answers[0].message, answers[0].details) == (answers[1].message, answers[1].details)


def test_a_network_member_as_party_and_provider_cannot_open_a_private_share(
    alice: NodeProcess, tmp_path: Path
) -> None:
    """A hostile member plays party 1 *and* crypto provider of a product on a victim's private tensor.

    It holds share x1 (a legitimate member may hold one), deals party 0 a
    seed it knows, and would receive alice's opening eps0 = x0 - a0: then
    x = eps0 + a0 + x1.  alice refuses the step, because its operator does
    not trust that provider with shares of data the client may not read;
    the member receives no opening.  (Against the code before this rule the
    test fails, naming the values the member recovered: the victim's tensor.)
    """
    secret = torch.tensor([3.25, -1.5, 42.0, 0.125])
    member = Impostor(tmp_path / "member", "mallory", welcome_key=NETWORK_KEY)
    try:
        object_id = asyncio.run(_victim_private(alice, secret))
        token = admit_user(alice)
        home = _target("alice", alice.url, alice.fingerprint)
        asyncio.run(_expect(alice, token, home, alice))
        split = _split(alice, token, object_id, (home, _target("mallory", member.url, member.fingerprint)))
        assert isinstance(split, MpcSplitReply), split  # splitting with a member is allowed
        x1 = next(m for m in member.messages if isinstance(m, DeliverRequest))
        assert x1.last and tuple(x1.shape) == (4,)
        reply, seed = asyncio.run(_product_with_own_provider(alice, token, home.object_id, member))
        openings = [m for m in member.messages if isinstance(m, MpcOpenRequest) and m.values]
        if openings:  # the attack worked: show what the member now knows
            share = torch.frombuffer(bytearray(x1.data.numpy().tobytes()), dtype=torch.int64)
            home_share = openings[0].values[0] + expand_seed(seed, (4,), stream_of(0, 0))
            recovered = FixedPointEncoder(16).decode(home_share + share)
            pytest.fail(f"alice sent its masked share to the hostile member, who recovered {recovered.tolist()}")
        assert isinstance(reply, ErrorReply) and reply.code == "PERMISSION_DENIED", reply
        assert "trusts" in reply.message
    finally:
        member.close()


async def _product_with_own_provider(
    alice: NodeProcess, token: str, share_id: int, member: Impostor
) -> tuple[Any, bytes]:
    """Ask alice for x * x as party 0 with ``member`` as party 1 and as the dealer; deal it a known seed."""
    session = secrets.token_bytes(16)
    parties = (
        PartyAddress(NodeId("alice"), alice.url, alice.fingerprint),
        PartyAddress(NodeId("mallory"), member.url, member.fingerprint),
    )
    step = MpcStepRequest(
        RequestId(5), session, 0, parties, DealerRef(NodeId("mallory"), member.fingerprint), StepOp.MUL,
        ObjectId(share_id), ObjectId(share_id), None, 0, TruncationScheme.LOCAL, ObjectId(new_id()), 10.0,
    )
    seed = secrets.token_bytes(16)
    dealer = await Raw.open(alice, node_hello(member.identity, "mallory", alice.fingerprint))
    specs = step_wire_specs(step, (4,), (4,))
    await dealer.ws.send(encode_message_bytes(MpcMaterialRequest(RequestId(2), session, 0, 2, specs, seed)))
    attacker = await Raw.open(alice, as_user(token, alice))
    reply = await attacker.request(step)
    await attacker.close()
    await dealer.close()
    return reply, seed
