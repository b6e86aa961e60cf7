"""Reservations and deliveries: only the named node, certificate and ticket fill a slot."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from protocol.errors import AlreadyExists, NotFound, PermissionDenied, QuotaExceeded
from protocol.ids import NodeId, ObjectId, RequestId
from protocol.messages import DeliverRequest, ExpectRequest, TransferRequest
from node.server.policy import Policy
from peer.server.auth import Caller
from node.server.store import MemoryStore
from node.server.reservations import MAX_PENDING_PER_PRINCIPAL, RESERVATION_TTL
from node.server.transfers import TransferService

ALICE_FP = "sha256:" + "a" * 64
MALLORY_FP = "sha256:" + "b" * 64
TICKET = bytes(range(32))
CLIENT = Caller("anon-client")
ALICE = Caller("node:alice", NodeId("alice"), ALICE_FP)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def service(clock: Clock | None = None) -> tuple[TransferService, MemoryStore]:
    store = MemoryStore()

    def no_credentials(fingerprint: str | None) -> dict[str, Any]:
        raise AssertionError("no link is dialed in these tests")

    return TransferService(NodeId("bob"), store, no_credentials, 1 << 20, clock or Clock()), store


def expect(svc: TransferService, object_id: int = 7) -> None:
    svc.expect(CLIENT, ExpectRequest(RequestId(1), ObjectId(object_id), NodeId("alice"), ALICE_FP, TICKET))


def deliver(svc: TransferService, caller: Caller, ticket: bytes = TICKET, object_id: int = 7) -> None:
    data = torch.ones(3).view(torch.uint8)
    svc.deliver(
        caller,
        DeliverRequest(RequestId(2), ObjectId(object_id), ticket, "float32", (3,), 0, data, True),
    )


def test_named_node_fills_the_reservation_for_the_client() -> None:
    """Alice with the right certificate and ticket delivers; the object belongs to the client."""
    svc, store = service()
    expect(svc)
    deliver(svc, ALICE)
    assert torch.equal(store.get("anon-client", ObjectId(7)).value, torch.ones(3))
    with pytest.raises(NotFound):
        store.get("node:alice", ObjectId(7))


def test_another_node_cannot_fill_it() -> None:
    """A different node id is refused and the reservation stays open for alice."""
    svc, store = service()
    expect(svc)
    with pytest.raises(PermissionDenied):
        deliver(svc, Caller("node:mallory", NodeId("mallory"), MALLORY_FP))
    deliver(svc, ALICE)
    assert store.exists(ObjectId(7))


def test_alice_id_with_another_certificate_is_refused() -> None:
    """Claiming alice's id with another certificate (impersonation) is refused."""
    svc, _ = service()
    expect(svc)
    with pytest.raises(PermissionDenied):
        deliver(svc, Caller("node:alice", NodeId("alice"), MALLORY_FP))


def test_wrong_ticket_is_refused() -> None:
    """The right node with the wrong ticket is refused."""
    svc, _ = service()
    expect(svc)
    with pytest.raises(PermissionDenied):
        deliver(svc, ALICE, ticket=bytes(32))


def test_clients_cannot_deliver() -> None:
    """An anonymous client (no node proof) may not deliver."""
    svc, _ = service()
    expect(svc)
    with pytest.raises(PermissionDenied):
        deliver(svc, CLIENT)


def test_a_reservation_is_single_use_and_expires() -> None:
    """A second delivery finds nothing; an expired reservation cannot be filled."""
    clock = Clock()
    svc, _ = service(clock)
    expect(svc)
    deliver(svc, ALICE)
    with pytest.raises(NotFound):
        deliver(svc, ALICE)
    expect(svc, 8)
    clock.now += RESERVATION_TTL + 1
    with pytest.raises(NotFound):
        deliver(svc, ALICE, object_id=8)


def test_reserving_a_taken_id_is_refused() -> None:
    """An id already stored or already reserved cannot be reserved again."""
    svc, store = service()
    store.put("someone", ObjectId(9), torch.zeros(1))
    with pytest.raises(AlreadyExists):
        expect(svc, 9)
    expect(svc, 10)
    with pytest.raises(AlreadyExists):
        expect(svc, 10)


def test_reservations_per_principal_are_bounded() -> None:
    """A client cannot hold more than MAX_PENDING_PER_PRINCIPAL open reservations."""
    svc, _ = service()
    for object_id in range(1, MAX_PENDING_PER_PRINCIPAL + 1):
        expect(svc, object_id)
    with pytest.raises(QuotaExceeded):
        expect(svc, MAX_PENDING_PER_PRINCIPAL + 1)


def _deliver_with_policy(svc: TransferService, restrictions: Any, shared: bool) -> None:
    data = torch.ones(3).view(torch.uint8)
    svc.deliver(
        ALICE,
        DeliverRequest(RequestId(2), ObjectId(7), TICKET, "float32", (3,), 0, data, True, restrictions, shared),
    )


def test_delivered_policy_keeps_restrictions_with_the_mover_substituted() -> None:
    """A delivered private dataset stays shared and restricted; "@mover" becomes the expecting client."""
    svc, store = service()
    expect(svc)
    _deliver_with_policy(svc, (("@mover", ("@mover",)), ("user:hospital", ("@mover", "user:hospital"))), True)
    policy = store.get("anon-client", ObjectId(7)).policy
    assert policy.shared and policy.guardians == {"anon-client", "user:hospital"}
    assert policy.readers() == {"anon-client"}
    assert store.get("user:someone", ObjectId(7)).owner == "anon-client", "shared: visible to all"
    with pytest.raises(PermissionDenied):
        store.read("user:hospital", ObjectId(7))


def test_delivered_policy_without_the_mover_still_makes_the_client_a_guardian() -> None:
    """Whatever restrictions a source sends, the expecting client guards its copy."""
    svc, store = service()
    expect(svc)
    _deliver_with_policy(svc, (("user:hospital", ("user:hospital",)),), False)
    policy = store.get("anon-client", ObjectId(7)).policy
    assert "anon-client" in policy.guardians and policy.readers() == frozenset()


def test_source_refuses_to_transfer_what_the_client_may_not_read() -> None:
    """check_transfer of another principal's private dataset is PERMISSION_DENIED before any dial."""
    svc, store = service()
    store.put("user:hospital", ObjectId(3), torch.ones(2), Policy.private("user:hospital"))
    for move in (False, True):
        request = TransferRequest(
            RequestId(4), ObjectId(3), NodeId("mallory"), "wss://10.0.0.9:1", MALLORY_FP,
            ObjectId(5), TICKET, move,
        )
        with pytest.raises(PermissionDenied):
            svc.check_transfer("anon-client", request)
