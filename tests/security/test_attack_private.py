"""Reading a data owner's private dataset as another principal: every path is refused.

The data owner stores a private tensor on node alice (``put`` with
``private``); the attacker, another principal on its own connection, sees it
(it is meant for computation) and tries to get its values out: by ``get``
and streamed ``read``, through results computed from it (``x + 0``,
``x * 1``, ``x.sum()``, ``x[idx]``), through error messages that echo
values, through shapes that depend on values, by copying or moving it to a
node it controls, by releasing it to itself, and by deleting it.  Then the
owner's release lets exactly the named principal read, and a derived
result still needs every guardian's release.

Connections are made by :func:`connection`: each one is a principal of its
own (and :func:`same_principal_on` one principal on two nodes), so the
module adapts to how the test fixtures authenticate clients.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
import torch

from protocol.messages import (
    AckReply, CommandRequest, DeleteRequest, DescribeReply, DescribeRequest, ErrorReply,
    ExpectRequest, GetReply, GetRequest, HelloReply, ListReply, ListRequest, PutRequest,
    ReadRequest, ReleaseRequest, TransferRequest,
)
from protocol.values import PointerRef
from tests.security.attack_wire import Raw, admit_user, as_user, errors, new_id
from tests.support import NodeProcess

SECRET = torch.tensor([[36.6, 120.0], [39.1, 95.0], [37.2, 7.0]])
LABELS = torch.tensor([3, 1, 7])


async def connection(proc: NodeProcess) -> Raw:
    """A connection of a fresh principal of its own."""
    return await Raw.open(proc)


async def same_principal_on(*procs: NodeProcess) -> list[Raw]:
    """One principal connected to each of ``procs`` (for its own transfers)."""
    token = admit_user(*procs)
    return [await Raw.open(proc, as_user(token, proc)) for proc in procs]


def principal_of(raw: Raw) -> str:
    assert isinstance(raw.greeting, HelloReply), raw.greeting
    return raw.greeting.principal


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _owner_with_data(proc: NodeProcess) -> tuple[Raw, int, int]:
    """The data owner's connection, with the private SECRET and LABELS stored."""
    owner = await connection(proc)
    data, labels = new_id(), new_id()
    replies = await owner.exchange([PutRequest(2, data, SECRET, True), PutRequest(3, labels, LABELS, True)])
    assert errors(replies) == []
    return owner, data, labels


def test_get_read_and_describe_of_a_private_dataset(alice: NodeProcess) -> None:
    """get, get(max_inline), read -> PERMISSION_DENIED naming the owner; describe and list show it, not its values."""

    async def run() -> tuple[str, list[Any]]:
        owner, data, _ = await _owner_with_data(alice)
        attacker = await connection(alice)
        replies = await attacker.exchange([
            GetRequest(3, data), GetRequest(4, data, max_inline=1), ReadRequest(5, data, 0, 8),
            DescribeRequest(6, (data,)), ListRequest(7),
        ])
        for raw in (owner, attacker):
            await raw.close()
        return principal_of(owner), replies

    owner, replies = _run(run())
    refused = errors(replies)
    assert [(e.id, e.code) for e in refused] == [(3, "PERMISSION_DENIED"), (4, "PERMISSION_DENIED"), (5, "PERMISSION_DENIED")]
    assert all(owner in e.message for e in refused)
    assert not any(isinstance(r, GetReply) for r in replies)
    described = [r for r in replies if isinstance(r, DescribeReply)][0].objects[0]
    assert (described.owner, described.readable, described.private, described.shape) == (owner, False, True, (3, 2))
    listed = [r for r in replies if isinstance(r, ListReply)][0].objects
    assert [i.object_id for i in listed if i.owner == owner] != []


@pytest.mark.parametrize(
    "op, args",
    [("add", (0,)), ("mul", (1,)), ("sum", ()), ("getitem", (torch.tensor([0, 2]),)), ("to", (torch.float64,))],
    ids=["x+0", "x*1", "sum", "x[idx]", "to"],
)
def test_results_computed_from_a_private_dataset(alice: NodeProcess, op: str, args: tuple[Any, ...]) -> None:
    """The attacker may compute on the dataset, but get and read of the result are PERMISSION_DENIED."""

    async def run() -> list[Any]:
        owner, data, _ = await _owner_with_data(alice)
        attacker = await connection(alice)
        result = new_id()
        replies = await attacker.exchange([
            CommandRequest(3, op, PointerRef(alice.node_id, data), args, {}, (result,)),
            GetRequest(4, result), ReadRequest(5, result, 0, 4), DescribeRequest(6, (result,)),
        ])
        for raw in (owner, attacker):
            await raw.close()
        return replies

    replies = _run(run())
    assert [(e.id, e.code) for e in errors(replies)] == [(4, "PERMISSION_DENIED"), (5, "PERMISSION_DENIED")]
    assert not any(isinstance(r, GetReply) for r in replies)


@pytest.mark.parametrize(
    "op, target, args",
    [("getitem", "own", ("labels",)), ("index_select", None, ("own", 0, "labels")),
     ("one_hot", None, ("labels",)), ("argwhere", "data", ()), ("floor_divide", None, (torch.tensor([9]), "labels")),
     ("cross_entropy", None, ("own", "labels")), ("repeat", "own", ("scalar", 1)), ("narrow", "own", (0, "scalar", 1))],
    ids=["index", "index_select", "one_hot", "argwhere", "int-divisor", "cross_entropy", "repeat-by-value", "narrow-by-value"],
)
def test_shape_and_failure_tricks_reveal_nothing(alice: NodeProcess, op: str, target: Any, args: tuple[Any, ...]) -> None:
    """Ops whose shape or success would depend on private values are refused; no message holds a value."""

    async def run() -> list[Any]:
        owner, data, labels = await _owner_with_data(alice)
        scalar = new_id()
        await owner.exchange([PutRequest(4, scalar, torch.tensor(5), True)])
        attacker = await connection(alice)
        own, result = new_id(), new_id()
        names = {"data": data, "labels": labels, "scalar": scalar, "own": own}

        def wire(value: Any) -> Any:
            return PointerRef(alice.node_id, names[value]) if isinstance(value, str) else value

        replies = await attacker.exchange([
            PutRequest(2, own, torch.ones(3, 2)),
            CommandRequest(3, op, wire(target) if target else None, tuple(wire(a) for a in args), {}, (result,)),
            DescribeRequest(4, (result,)),
        ])
        for raw in (owner, attacker):
            await raw.close()
        return replies

    replies = _run(run())
    refused = errors(replies)
    assert [e.id for e in refused] == [3, 4], "the command fails and stores nothing"
    assert refused[0].code in ("PERMISSION_DENIED", "OP_FAILED")
    for value in ("7", "5", "36.6", "120"):
        assert value not in refused[0].message


def test_out_of_bounds_index_computed_from_private_data_is_redacted(alice: NodeProcess) -> None:
    """x[i] with a readable but out-of-range index fails with no torch message echoing it."""

    async def run() -> list[Any]:
        owner, data, _ = await _owner_with_data(alice)
        attacker = await connection(alice)
        replies = await attacker.exchange([
            CommandRequest(3, "getitem", PointerRef(alice.node_id, data), (torch.tensor([31337]),), {}, (new_id(),)),
        ])
        for raw in (owner, attacker):
            await raw.close()
        return replies

    (error,) = errors(_run(run()))
    assert error.code == "OP_FAILED" and "31337" not in error.message and "details withheld" in error.message


@pytest.mark.parametrize("move", [False, True], ids=["copy", "move"])
def test_copy_or_move_to_a_node_the_attacker_controls(alice: NodeProcess, bob: NodeProcess, move: bool) -> None:
    """transfer of the private dataset -> PERMISSION_DENIED before anything is sent; nothing lands at bob."""

    async def run() -> tuple[Any, Any, Any]:
        owner, data, _ = await _owner_with_data(alice)
        at_alice, at_bob = await same_principal_on(alice, bob)
        dest, ticket = new_id(), secrets.token_bytes(32)
        expected = await at_bob.request(ExpectRequest(2, dest, alice.node_id, alice.fingerprint, ticket))
        answer = await at_alice.request(
            TransferRequest(3, data, bob.node_id, bob.url, bob.fingerprint, dest, ticket, move)
        )
        landed = await at_bob.request(GetRequest(4, dest))
        still = await owner.request(GetRequest(5, data))
        for raw in (owner, at_alice, at_bob):
            await raw.close()
        return expected, answer, (landed, still)

    expected, answer, (landed, still) = _run(run())
    assert isinstance(expected, AckReply)
    assert isinstance(answer, ErrorReply) and answer.code == "PERMISSION_DENIED"
    assert isinstance(landed, ErrorReply) and landed.code == "NOT_FOUND"
    assert isinstance(still, GetReply) and torch.equal(still.value, SECRET)


def test_owners_copy_keeps_the_restriction_on_the_other_node(alice: NodeProcess, bob: NodeProcess) -> None:
    """The owner copies its private dataset to bob: still private there, another principal's get refused."""

    async def run() -> tuple[Any, Any, Any]:
        at_alice, at_bob = await same_principal_on(alice, bob)
        data, dest, ticket = new_id(), new_id(), secrets.token_bytes(32)
        await at_alice.exchange([PutRequest(2, data, SECRET, True)])
        await at_bob.request(ExpectRequest(3, dest, alice.node_id, alice.fingerprint, ticket))
        answer = await at_alice.request(
            TransferRequest(4, data, bob.node_id, bob.url, bob.fingerprint, dest, ticket, False)
        )
        attacker = await connection(bob)
        stolen = await attacker.exchange([GetRequest(5, dest), DescribeRequest(6, (dest,))])
        mine = await at_bob.request(GetRequest(7, dest))
        for raw in (at_alice, at_bob, attacker):
            await raw.close()
        return answer, stolen, mine

    answer, stolen, mine = _run(run())
    assert isinstance(answer, AckReply), answer
    assert [e.code for e in errors(stolen)] == ["PERMISSION_DENIED"]
    info = [r for r in stolen if isinstance(r, DescribeReply)][0].objects[0]
    assert info.private and not info.readable
    assert isinstance(mine, GetReply) and torch.equal(mine.value, SECRET)


def test_release_delete_and_derived_results(alice: NodeProcess) -> None:
    """Self-release and delete are refused; the owner's release opens exactly one reader; a derived
    result still needs the attacker's own release before a third principal reads it."""

    async def run() -> dict[str, Any]:
        owner, data, _ = await _owner_with_data(alice)
        attacker, third = await connection(alice), await connection(alice)
        me, them = principal_of(attacker), principal_of(third)
        result = new_id()
        out: dict[str, Any] = {}
        out["self"] = await attacker.exchange([ReleaseRequest(3, data, me), DeleteRequest(4, (data,))])
        out["derived"] = await attacker.exchange([
            CommandRequest(5, "sum", PointerRef(alice.node_id, data), (), {}, (result,)),
        ])
        await owner.request(ReleaseRequest(6, data, me))
        out["released"] = await attacker.request(GetRequest(7, data))
        out["third"] = await third.request(GetRequest(8, data))
        await owner.request(ReleaseRequest(9, result, them))
        out["third_derived"] = await third.request(GetRequest(10, result))
        await attacker.request(ReleaseRequest(11, result, them))
        out["both_released"] = await third.request(GetRequest(12, result))
        for raw in (owner, attacker, third):
            await raw.close()
        return out

    out = _run(run())
    assert [(e.id, e.code) for e in errors(out["self"])] == [(3, "PERMISSION_DENIED"), (4, "PERMISSION_DENIED")]
    assert errors(out["derived"]) == []
    assert isinstance(out["released"], GetReply) and torch.equal(out["released"].value, SECRET)
    assert isinstance(out["third"], ErrorReply) and out["third"].code == "PERMISSION_DENIED"
    assert isinstance(out["third_derived"], ErrorReply) and out["third_derived"].code == "NOT_FOUND"
    assert isinstance(out["both_released"], GetReply)
    assert torch.allclose(out["both_released"].value, SECRET.sum())
