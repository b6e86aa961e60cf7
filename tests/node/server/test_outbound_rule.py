"""The outbound rule's pure parts: the welcome, self by certificate, no network no sending, trusted providers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import torch

from peer.server.auth import Caller
from node.server.mpc.mailbox import Mailbox
from node.server.mpc.party import PartyRunner
from node.server.policy import Policy
from node.server.store import MemoryStore
from node.server.transfers import TransferService
from peer.security.proof import check_welcome, welcome_mac
from peer.security.tokens import network_key
from peer.security.trust import NotAMember
from protocol.errors import BadRequest, PermissionDenied
from protocol.ids import NodeId, ObjectId, RequestId
from protocol.mpc import DealerRef, MpcStepRequest, PartyAddress, StepOp, TruncationScheme

OWN_FP = "sha256:" + "a" * 64
OTHER_FP = "sha256:" + "b" * 64
PROVIDER_FP = "sha256:" + "c" * 64
NETWORK = network_key("tsn1.the-network-of-these-tests-0123")
NONCE = bytes(range(16))


def no_credentials(fingerprint: str | None) -> dict[str, Any]:
    raise AssertionError("nothing is dialed here")


def transfers(network: bytes | None = NETWORK) -> TransferService:
    return TransferService(NodeId("alice"), MemoryStore(), no_credentials, 1 << 20, network=network, fingerprint=OWN_FP)


def test_the_welcome_binds_network_server_and_nonce() -> None:
    good = welcome_mac(NETWORK, "bob", OTHER_FP, NONCE)
    check_welcome(NETWORK, "bob", OTHER_FP, {"nonce": NONCE}, good, peer="wss://bob")
    wrong = [
        (NETWORK, "bob", OTHER_FP, {"nonce": bytes(16)}, good),  # another hello's welcome
        (NETWORK, "bob", OWN_FP, {"nonce": NONCE}, good),  # another certificate
        (NETWORK, "carol", OTHER_FP, {"nonce": NONCE}, good),  # another id
        (network_key("tsn1.some-other-network-456789"), "bob", OTHER_FP, {"nonce": NONCE}, good),
        (NETWORK, "bob", OTHER_FP, {"nonce": NONCE}, None),  # no welcome at all
        (NETWORK, "bob", None, {"nonce": NONCE}, good),  # no TLS
    ]
    for network, node, fingerprint, credentials, welcome in wrong:
        with pytest.raises(NotAMember, match="^wss://bob: "):
            check_welcome(network, node, fingerprint, credentials, welcome, peer="wss://bob")


def test_this_node_is_recognised_by_certificate_only() -> None:
    svc = transfers()
    assert svc.is_self(OWN_FP)
    assert not svc.is_self(OTHER_FP)


def test_a_node_in_no_network_sends_nothing() -> None:
    svc = transfers(network=None)
    with pytest.raises(PermissionDenied, match="no network"):
        asyncio.run(svc.link("wss://127.0.0.1:1", OTHER_FP))


def _runner(store: MemoryStore, trusted: frozenset[str] = frozenset()) -> PartyRunner:
    return PartyRunner(NodeId("alice"), store, Mailbox(), transfers(), trusted)


def _step(party_fp: str, dealer_fp: str) -> MpcStepRequest:
    parties = (PartyAddress(NodeId("alice"), "wss://a:1", party_fp), PartyAddress(NodeId("bob"), "wss://b:1", OTHER_FP))
    return MpcStepRequest(
        RequestId(1), bytes(16), 0, parties, DealerRef(NodeId("charlie"), dealer_fp), StepOp.MUL,
        ObjectId(1), ObjectId(1), None, 0, TruncationScheme.LOCAL, ObjectId(2), 5.0,
    )


def _store(policy: Policy) -> MemoryStore:
    store = MemoryStore()
    store.put("user:victim", ObjectId(1), torch.zeros(3, dtype=torch.int64), policy)
    return store


def test_a_party_named_alice_with_another_certificate_is_not_this_node() -> None:
    runner = _runner(_store(Policy.own("user:victim")))
    with pytest.raises(BadRequest, match="not this node"):
        runner.plan(Caller("user:victim"), _step(OTHER_FP, PROVIDER_FP))


def test_restricted_shares_need_a_provider_the_operator_trusts() -> None:
    """Another principal's private share: an untrusted provider is refused; trusted or self is fine."""
    curious = Caller("user:curious")
    runner = _runner(_store(Policy.private("user:victim")))
    with pytest.raises(PermissionDenied, match="trust"):
        runner.plan(curious, _step(OWN_FP, PROVIDER_FP))
    _runner(_store(Policy.private("user:victim")), frozenset({PROVIDER_FP})).plan(curious, _step(OWN_FP, PROVIDER_FP))
    runner.plan(curious, _step(OWN_FP, OWN_FP))  # this node as its own provider


def test_the_client_chooses_the_provider_for_data_it_may_read() -> None:
    runner = _runner(_store(Policy.private("user:victim")))
    runner.plan(Caller("user:victim"), _step(OWN_FP, PROVIDER_FP))
