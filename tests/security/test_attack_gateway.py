"""Hijacking a registration at the gateway: taking over a node id that another certificate holds.

Node alice (a real process) registers at a real gateway.  The attacker has
its own key pair; it can prove that key and even claim the id "alice" in its
hello, but the gateway binds an id to the certificate that registered it, so
clients that look alice up keep pinning alice's real fingerprint.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Iterator

import pytest
from websockets.asyncio.client import connect

import node
from node.transport.identity import Identity
from protocol.codec import decode_message
from protocol.messages import (
    AckReply,
    DeregisterRequest,
    ErrorReply,
    HeartbeatRequest,
    NodesReply,
    NodesRequest,
    RegisterRequest,
)
from protocol.records import NodeRecord, NodeStatus, Role
from tests.gateway.gateway_wire import Wire, tls_context
from tests.security.attack_wire import node_hello
from tests.security.conftest import stolen_identity
from tests.support import GatewayProcess, NodeProcess


async def _status(gateway: GatewayProcess, node_id: str) -> NodeStatus | None:
    client = await Wire.open(gateway)
    try:
        reply = await client.request(NodesRequest(client.rid()))
    finally:
        await client.close()
    assert isinstance(reply, NodesReply)
    return next((s for s in reply.nodes if s.record.node_id == node_id), None)


@pytest.fixture(scope="module")
def registered(security_gateway: GatewayProcess, alice: NodeProcess) -> Iterator[tuple[GatewayProcess, NodeStatus]]:
    """The gateway once alice's own registration is online.

    At the end it must be unchanged, and a client that looks alice up through
    the gateway must reach the real alice.
    """

    async def wait() -> NodeStatus:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            status = await _status(security_gateway, "alice")
            if status is not None and status.online:
                return status
            await asyncio.sleep(0.1)
        raise AssertionError(f"alice never registered: {alice.stderr()[-2000:]}")

    before = asyncio.run(wait())
    assert before.record.fingerprint == alice.fingerprint
    yield security_gateway, before
    after = asyncio.run(_status(security_gateway, "alice"))
    assert after is not None and after.online and after.record == before.record
    grid = node.Gateway(security_gateway.url, cafile=security_gateway.cafile)
    try:
        remote = grid.connect("alice")  # pins the fingerprint the gateway recorded
        try:
            assert remote.id == "alice" and remote.fingerprint == alice.fingerprint
        finally:
            remote.close()
    finally:
        grid.close()


@pytest.fixture
def gateway(registered: tuple[GatewayProcess, NodeStatus]) -> Iterator[GatewayProcess]:
    """After each attack, alice's entry is intact (record, fingerprint, online)."""
    gateway, before = registered
    yield gateway
    after = asyncio.run(_status(gateway, "alice"))
    assert after is not None and after.online and after.record == before.record


def _record(node_id: str, fingerprint: str) -> NodeRecord:
    return NodeRecord(node_id, "wss://127.0.0.1:6666", fingerprint, (Role.COMPUTE,))


async def _as(gateway: GatewayProcess, identity: Identity | None, claimed_id: str, requests: list[Any]) -> list[Any]:
    wire = await Wire.open(gateway, identity, claimed_id)
    try:
        return [await wire.request(build(wire.rid())) for build in requests]
    finally:
        await wire.close()


def test_claiming_a_registered_id_with_another_certificate(
    gateway: GatewayProcess, alice: NodeProcess, identities: Callable[[str], Identity]
) -> None:
    """Register 'alice' from another certificate (own or alice's fingerprint in the record) -> PERMISSION_DENIED."""
    mallory = identities("mallory")
    replies = asyncio.run(_as(gateway, mallory, "alice", [
        lambda rid: RegisterRequest(rid, _record("alice", mallory.fingerprint)),
        lambda rid: RegisterRequest(rid, _record("alice", alice.fingerprint)),
    ]))
    assert [r.code for r in replies] == ["PERMISSION_DENIED", "PERMISSION_DENIED"]
    assert "another certificate" in replies[0].message


def test_refreshing_or_removing_a_registered_id_with_another_certificate(
    gateway: GatewayProcess, identities: Callable[[str], Identity]
) -> None:
    """heartbeat / deregister of 'alice' from another certificate -> NOT_FOUND, entry untouched."""
    replies = asyncio.run(_as(gateway, identities("mallory"), "alice", [HeartbeatRequest, DeregisterRequest]))
    assert [r.code for r in replies] == ["NOT_FOUND", "NOT_FOUND"]


def test_anonymous_registration_is_refused(gateway: GatewayProcess, alice: NodeProcess) -> None:
    """register / heartbeat / deregister without a node proof -> PERMISSION_DENIED."""
    replies = asyncio.run(_as(gateway, None, "", [
        lambda rid: RegisterRequest(rid, _record("alice", alice.fingerprint)),
        HeartbeatRequest,
        DeregisterRequest,
    ]))
    assert [r.code for r in replies] == ["PERMISSION_DENIED"] * 3


def test_proof_for_a_node_is_refused_by_the_gateway(
    gateway: GatewayProcess, alice: NodeProcess, bob: NodeProcess
) -> None:
    """alice's genuine proof made for node bob, presented to the gateway to deregister alice -> UNAUTHENTICATED."""

    async def run() -> Any:
        async with connect(gateway.url, ssl=tls_context(gateway), compression=None) as ws:
            await ws.send(node_hello(stolen_identity(alice), "alice", bob.fingerprint))
            return decode_message(await ws.recv())

    reply = asyncio.run(run())
    assert isinstance(reply, ErrorReply) and reply.code == "UNAUTHENTICATED"


def test_a_new_id_is_not_a_takeover(gateway: GatewayProcess, identities: Callable[[str], Identity]) -> None:
    """Control: the attacker may register its own new id, which does not disturb alice's entry."""
    mallory = identities("mallory")
    replies = asyncio.run(_as(gateway, mallory, "mallory", [
        lambda rid: RegisterRequest(rid, _record("mallory", mallory.fingerprint)),
        DeregisterRequest,
    ]))
    assert not isinstance(replies[0], ErrorReply) and isinstance(replies[1], AckReply)
