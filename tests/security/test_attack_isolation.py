"""Reaching another principal's objects: every path answers NOT_FOUND and changes nothing.

The victim is a legitimate client (``node.connect``) with an object on node
alice; the attacker is another client on its own raw connection who has
learnt the victim's object id (ids are random 64-bit numbers, so in practice
it would have to be leaked).  Existence is never confirmed: a hidden object
is reported exactly like a missing one.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, Callable, Iterator

import pytest
import torch

from peer.security.identity import Identity
from protocol.messages import (
    AckReply,
    CommandRequest,
    DeleteRequest,
    DescribeRequest,
    ErrorReply,
    ExpectRequest,
    GetReply,
    GetRequest,
    ListReply,
    ListRequest,
    PutChunkRequest,
    PutRequest,
    ReadRequest,
    TransferRequest,
)
from protocol.values import PointerRef
from tests.security.attack_wire import Raw, codes, errors, new_id, node_hello
from tests.security.conftest import Bystander, bystander_fixture, stolen_identity
from tests.support import NodeProcess

victim = bystander_fixture("alice")


@pytest.fixture
def stolen(victim: Bystander) -> Iterator[tuple[NodeProcess, int]]:
    """The node and the victim's object id; the victim's data is checked intact afterwards."""
    yield victim.proc, victim.kept.object_id
    victim.check()


def _as_attacker(proc: NodeProcess, frames: list[Any]) -> list[Any]:
    async def run() -> list[Any]:
        raw = await Raw.open(proc)
        try:
            return await raw.exchange(frames)
        finally:
            await raw.close()

    return asyncio.run(run())


def test_get_describe_read_of_another_principals_object(stolen: tuple[NodeProcess, int]) -> None:
    """get, get(delete=True), describe (alone and mixed with an own id) and read of the victim's id -> NOT_FOUND."""
    proc, oid = stolen
    own = new_id()
    replies = _as_attacker(proc, [
        PutRequest(2, own, torch.ones(1)),
        GetRequest(3, oid),
        GetRequest(4, oid, delete=True),
        GetRequest(5, oid, max_inline=1),
        DescribeRequest(6, (oid,)),
        DescribeRequest(7, (own, oid)),
        ReadRequest(8, oid, 0, 8),
    ])
    assert [(e.id, e.code) for e in errors(replies)] == [
        (3, "NOT_FOUND"), (4, "NOT_FOUND"), (5, "NOT_FOUND"), (6, "NOT_FOUND"), (7, "NOT_FOUND"), (8, "NOT_FOUND"),
    ]


def test_not_found_does_not_reveal_existence(stolen: tuple[NodeProcess, int]) -> None:
    """Probing whether a victim's id exists via get -> NOT_FOUND identical to that of an unused id."""
    proc, oid = stolen
    unused = new_id()
    replies = _as_attacker(proc, [GetRequest(3, oid), GetRequest(4, unused)])
    hidden, missing = errors(replies)
    assert (hidden.code, hidden.details.keys()) == (missing.code, missing.details.keys())
    assert hidden.message.replace(f"{oid:#x}", "ID") == missing.message.replace(f"{unused:#x}", "ID")


@pytest.mark.parametrize(
    "how",
    ["target", "argument", "nested in a list", "keyword", "getitem index", "masked_fill mask"],
)
def test_command_pointer_to_another_principals_object(stolen: tuple[NodeProcess, int], how: str) -> None:
    """A command naming the victim's object as target, arg, list item, kwarg or index -> NOT_FOUND, no result."""
    proc, oid = stolen
    own, result = new_id(), new_id()
    mine, theirs = PointerRef(proc.node_id, own), PointerRef(proc.node_id, oid)
    command = {
        "target": CommandRequest(3, "neg", theirs, (), {}, (result,)),
        "argument": CommandRequest(3, "add", mine, (theirs,), {}, (result,)),
        "nested in a list": CommandRequest(3, "cat", None, ([mine, theirs],), {}, (result,)),
        "keyword": CommandRequest(3, "add", mine, (), {"other": theirs}, (result,)),
        "getitem index": CommandRequest(3, "getitem", mine, ([theirs],), {}, (result,)),
        "masked_fill mask": CommandRequest(3, "masked_fill", mine, (theirs, 0.0), {}, (result,)),
    }[how]
    replies = _as_attacker(proc, [PutRequest(2, own, torch.ones(6)), command, GetRequest(4, result)])
    assert [(e.id, e.code) for e in errors(replies)] == [(3, "NOT_FOUND"), (4, "NOT_FOUND")]


def test_pointer_naming_another_node_is_bad_request(stolen: tuple[NodeProcess, int]) -> None:
    """A pointer naming a different node id (to confuse resolution) -> BAD_REQUEST."""
    proc, oid = stolen
    replies = _as_attacker(proc, [CommandRequest(3, "neg", PointerRef("bob", oid), (), {}, (new_id(),))])
    assert codes(replies) == ["BAD_REQUEST"]


def test_list_shows_only_own_objects(stolen: tuple[NodeProcess, int]) -> None:
    """Enumerating the node with list from another principal -> its own objects, plus private datasets (never the victim's)."""
    proc, oid = stolen
    own = new_id()
    replies = _as_attacker(proc, [PutRequest(2, own, torch.ones(1)), ListRequest(3)])
    (listing,) = [r for r in replies if isinstance(r, ListReply)]
    assert [info.object_id for info in listing.objects if not info.private] == [own]
    assert oid not in {info.object_id for info in listing.objects}
    assert all(not info.readable for info in listing.objects if info.private)


def test_delete_of_another_principals_object_is_ignored(stolen: tuple[NodeProcess, int]) -> None:
    """Deleting the victim's id -> silently ignored like an unknown id (no error, no leak); the object survives."""
    proc, oid = stolen
    assert codes(_as_attacker(proc, [DeleteRequest(3, (oid,)), DeleteRequest(4, (new_id(), oid))])) == []


def test_overwriting_another_principals_object_is_refused(stolen: tuple[NodeProcess, int]) -> None:
    """Reusing the victim's id for put, a command result, put_chunk or expect -> ALREADY_EXISTS/BAD_REQUEST, value kept."""
    proc, oid = stolen
    own = new_id()
    replies = _as_attacker(proc, [
        PutRequest(2, own, torch.full((6,), 666.0)),
        PutRequest(3, oid, torch.full((6,), 666.0)),
        CommandRequest(4, "neg", PointerRef(proc.node_id, own), (), {}, (oid,)),
        PutChunkRequest(5, oid, "float32", (6,), 0, torch.zeros(24, dtype=torch.uint8), True),
        ExpectRequest(6, oid, "bob", "sha256:" + "0" * 64, secrets.token_bytes(32)),
    ])
    assert [(e.id, e.code) for e in errors(replies)] == [
        (3, "ALREADY_EXISTS"), (4, "ALREADY_EXISTS"), (5, "BAD_REQUEST"), (6, "ALREADY_EXISTS"),
    ]


@pytest.mark.parametrize("move", [False, True], ids=["copy", "move"])
def test_transfer_of_another_principals_object(stolen: tuple[NodeProcess, int], bob: NodeProcess, move: bool) -> None:
    """copy/move of the victim's object (its id in transfer) to a node the attacker prepared -> NOT_FOUND."""
    proc, oid = stolen
    dest, ticket = new_id(), secrets.token_bytes(32)

    async def run() -> tuple[Any, Any, Any]:
        at_bob = await Raw.open(bob)
        at_alice = await Raw.open(proc)
        expected = await at_bob.request(ExpectRequest(2, dest, proc.node_id, proc.fingerprint, ticket))
        assert isinstance(expected, AckReply), expected
        answer = await at_alice.request(
            TransferRequest(3, oid, bob.node_id, bob.url, bob.fingerprint, dest, ticket, move)
        )
        landed = await at_bob.request(GetRequest(4, dest))
        for raw in (at_alice, at_bob):
            await raw.close()
        return expected, answer, landed

    _, answer, landed = asyncio.run(run())
    assert isinstance(answer, ErrorReply) and answer.code == "NOT_FOUND"
    assert isinstance(landed, ErrorReply) and landed.code == "NOT_FOUND"


def test_node_principal_cannot_be_taken_over_with_another_key(
    alice: NodeProcess, bob: NodeProcess, identities: Callable[[str], Identity]
) -> None:
    """Another key claiming node id 'alice' reads what node alice (its real key) stored on bob -> NOT_FOUND."""
    share = new_id()

    async def run() -> tuple[Any, Any, list[Any], Any]:
        real = await Raw.open(bob, node_hello(stolen_identity(alice), "alice", bob.fingerprint))
        stored = await real.exchange([PutRequest(2, share, torch.tensor([1234.0]))])
        impostor = await Raw.open(bob, node_hello(identities("mallory"), "alice", bob.fingerprint))
        stolen_value = await impostor.request(GetRequest(3, share))
        for raw in (real, impostor):
            await raw.close()
        return real.greeting, impostor.greeting, stored, stolen_value

    real_hello, impostor_hello, stored, stolen_value = asyncio.run(run())
    assert codes(stored) == []
    assert real_hello.principal.startswith("node:alice@")
    assert impostor_hello.principal != real_hello.principal
    assert not isinstance(stolen_value, GetReply), (
        f"{impostor_hello.principal} with another key read node alice's object: {stolen_value.value}"
    )
    assert isinstance(stolen_value, ErrorReply) and stolen_value.code == "NOT_FOUND"
