"""Filling another client's transfer reservation: only the named node, with its certificate and ticket.

A victim client reserves an object id on bob (``expect``) for a delivery
from node alice.  Attackers then try to ``deliver`` their own bytes into it:
a node that was not named, a node claiming alice's id with its own key, an
another user, and alice's key without the ticket.  Each is
``PERMISSION_DENIED``, the reservation survives, and the victim's real
transfer from alice then lands the victim's data, not the attacker's.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from typing import Any, Callable

import pytest
import torch

from peer.security.identity import Identity
from protocol.messages import (
    AckReply,
    DeliverRequest,
    ErrorReply,
    ExpectRequest,
    GetReply,
    GetRequest,
    PutRequest,
    TransferRequest,
)
from tests.security.attack_wire import Raw, admit_user, as_user, codes, new_id, node_hello
from tests.security.conftest import stolen_identity
from tests.support import NodeProcess

EVIL = torch.full((4,), 666.0)


def _chunk(request_id: int, object_id: int, ticket: bytes) -> DeliverRequest:
    data = torch.frombuffer(bytearray(EVIL.numpy().tobytes()), dtype=torch.uint8)
    return DeliverRequest(request_id, object_id, ticket, "float32", (4,), 0, data, True)


def test_deliver_into_another_clients_reservation(
    alice: NodeProcess, bob: NodeProcess, identities: Callable[[str], Identity]
) -> None:
    """deliver from an unnamed node, an impostor of the named one, a user, or without the ticket -> PERMISSION_DENIED."""
    victim = admit_user(alice, bob)
    dest, ticket, source_id = new_id(), secrets.token_bytes(32), new_id()
    mallory = identities("mallory")
    attackers = {
        "unnamed node": node_hello(mallory, "mallory", bob.fingerprint),
        "impostor claiming alice": node_hello(mallory, "alice", bob.fingerprint),
        "another user": as_user(admit_user(bob), bob),
        "the victim's own principal": as_user(victim, bob),
    }

    async def run() -> tuple[dict[str, Any], Any, Any, Any, Any]:
        victim_at_bob = await Raw.open(bob, as_user(victim, bob))
        reserved = await victim_at_bob.request(ExpectRequest(2, dest, alice.node_id, alice.fingerprint, ticket))
        assert isinstance(reserved, AckReply), reserved
        answers: dict[str, Any] = {}
        for name, greeting in attackers.items():
            attacker = await Raw.open(bob, greeting)
            answers[name] = await attacker.request(_chunk(3, dest, ticket))
            await attacker.close()
        # alice's real key, but the ticket is the victim's secret.
        guesser = await Raw.open(bob, node_hello(stolen_identity(alice), "alice", bob.fingerprint))
        answers["named node, wrong ticket"] = await guesser.request(_chunk(3, dest, secrets.token_bytes(32)))
        await guesser.close()
        # Still reserved: the attacker cannot read or pre-empt it...
        thief = await Raw.open(bob)
        peek = await thief.request(GetRequest(4, dest))
        await thief.close()
        # ...and the victim's real transfer from alice completes.
        victim_at_alice = await Raw.open(alice, as_user(victim, alice))
        stored = await victim_at_alice.exchange([PutRequest(5, source_id, torch.arange(4.0))])
        assert codes(stored) == []
        sent = await victim_at_alice.request(TransferRequest(
            6, source_id, bob.node_id, bob.url, bob.fingerprint, dest, ticket, False,
        ))
        landed = await victim_at_bob.request(GetRequest(7, dest))
        for raw in (victim_at_alice, victim_at_bob):
            await raw.close()
        return answers, peek, sent, landed, reserved

    answers, peek, sent, landed, _ = asyncio.run(run())
    for name, answer in answers.items():
        assert isinstance(answer, ErrorReply) and answer.code == "PERMISSION_DENIED", (name, answer)
    assert "expected from 'alice'" in answers["impostor claiming alice"].message
    assert isinstance(peek, ErrorReply) and peek.code == "NOT_FOUND"
    assert isinstance(sent, AckReply), sent
    assert isinstance(landed, GetReply) and torch.equal(landed.value, torch.arange(4.0))


def test_reservation_cannot_be_reused_after_delivery(alice: NodeProcess, bob: NodeProcess) -> None:
    """A second deliver with a spent ticket (replaying the named node's delivery) -> NOT_FOUND, data unchanged."""
    victim, dest, ticket, source_id = admit_user(alice, bob), new_id(), secrets.token_bytes(32), new_id()

    async def run() -> tuple[Any, Any]:
        victim_at_bob = await Raw.open(bob, as_user(victim, bob))
        await victim_at_bob.request(ExpectRequest(2, dest, alice.node_id, alice.fingerprint, ticket))
        victim_at_alice = await Raw.open(alice, as_user(victim, alice))
        await victim_at_alice.exchange([PutRequest(3, source_id, torch.arange(4.0))])
        sent = await victim_at_alice.request(TransferRequest(
            4, source_id, bob.node_id, bob.url, bob.fingerprint, dest, ticket, False,
        ))
        assert isinstance(sent, AckReply), sent
        replayer = await Raw.open(bob, node_hello(stolen_identity(alice), "alice", bob.fingerprint))
        again = await replayer.request(_chunk(5, dest, ticket))
        landed = await victim_at_bob.request(GetRequest(6, dest))
        for raw in (replayer, victim_at_alice, victim_at_bob):
            await raw.close()
        return again, landed

    again, landed = asyncio.run(run())
    assert isinstance(again, ErrorReply) and again.code == "NOT_FOUND"
    assert isinstance(landed, GetReply) and torch.equal(landed.value, torch.arange(4.0))


def test_transfer_is_not_a_port_scanner(alice: NodeProcess, bob: NodeProcess) -> None:
    """transfer to a closed port vs. to a TLS service with another certificate -> one indistinguishable PEER_UNAVAILABLE."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    targets = {"closed": f"wss://127.0.0.1:{closed_port}", "tls service": bob.url}
    pin = "sha256:" + "1" * 64

    async def run() -> dict[str, Any]:
        attacker = await Raw.open(alice)
        own = new_id()
        await attacker.exchange([PutRequest(2, own, torch.ones(1))])
        answers = {}
        for name, url in targets.items():
            answers[name] = await attacker.request(TransferRequest(
                3, own, "victim", url, pin, new_id(), secrets.token_bytes(32), False,
            ))
        await attacker.close()
        return answers

    answers = asyncio.run(run())
    assert all(isinstance(a, ErrorReply) and a.code == "PEER_UNAVAILABLE" for a in answers.values()), answers
    seen = {name: a.message.replace(targets[name], "URL") for name, a in answers.items()}
    assert bob.fingerprint not in seen["tls service"], "the node disclosed the scanned service's certificate"
    assert seen["closed"] == seen["tls service"], seen
