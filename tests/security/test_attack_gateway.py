"""Hijacking a registration at the gateway: taking over a node id that another certificate holds.

Node alice (a real process) registers at a real gateway.  The attacker has
its own key pair; it can prove that key and even claim the id "alice" in its
hello, but the gateway binds an id to the certificate that registered it, so
clients that look alice up keep pinning alice's real fingerprint.

The binding is durable (issue 11, item 5): the attacker, a network member,
also waits for alice to deregister or for the gateway to restart and then
claims "alice"; it is refused, alice takes her id back with her own key,
and only the gateway's operator can hand the id to another key.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from websockets.asyncio.client import connect

import node
from peer.security.identity import Identity, ensure_identity
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
from tests.support import ROOT, GatewayProcess, NodeProcess, node_env, start_gateway, start_node


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
    """heartbeat / deregister of 'alice' from another certificate -> PERMISSION_DENIED, entry untouched."""
    replies = asyncio.run(_as(gateway, identities("mallory"), "alice", [HeartbeatRequest, DeregisterRequest]))
    assert [r.code for r in replies] == ["PERMISSION_DENIED", "PERMISSION_DENIED"]


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


# -- squatting an id while its node is away ------------------------------------------


class Site:
    """A gateway of its own (it is restarted) and node alice registered there, as real processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.alice_state = root / "state" / "alice"
        """alice's own key lives here."""
        self.gateway = start_gateway(root)
        self.alice: NodeProcess | None = None

    def start_alice(self, state_dir: Path | None = None) -> NodeProcess:
        """alice (her own key, unless another state dir is given) pointed at the current gateway."""
        assert self.alice is None
        args = ("--gateway", self.gateway.url, "--gateway-cafile", str(self.gateway.cafile))
        self.alice = start_node(self.root, "alice", *args, state_dir=state_dir or self.alice_state)
        return self.alice

    def restart_gateway(self) -> None:
        assert self.gateway.stop() == 0, self.gateway.stderr()
        self.gateway = start_gateway(self.root, state_dir=self.gateway.state_dir)

    def stop_alice(self) -> NodeProcess:
        """alice shuts down cleanly, so she deregisters: her entry is gone."""
        alice, self.alice = self.alice, None
        assert alice is not None and alice.stop() == 0, alice and alice.stderr()
        assert asyncio.run(_status(self.gateway, "alice")) is None
        return alice

    def stop(self) -> None:
        for proc in (self.alice, self.gateway):
            if proc is not None:
                assert proc.stop() == 0, proc.stderr()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    site = Site(tmp_path_factory.mktemp("squat"))
    yield site
    site.stop()


def _online(gateway: GatewayProcess, proc: NodeProcess, within: float = 30) -> NodeStatus:
    """Wait until the gateway lists ``proc`` online under its id with its own fingerprint."""

    async def wait() -> NodeStatus:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            status = await _status(gateway, proc.node_id)
            if status is not None and status.online and status.record.fingerprint == proc.fingerprint:
                return status
            await asyncio.sleep(0.1)
        raise AssertionError(f"{proc.node_id} never registered: {proc.stderr()[-2000:]}")

    return asyncio.run(wait())


def _squat(gateway: GatewayProcess, squatter: Identity, bound: str) -> None:
    """The squatter claims 'alice' (register, heartbeat, deregister): each refused, naming the id, not the key."""
    replies = asyncio.run(_as(gateway, squatter, "alice", [
        lambda rid: RegisterRequest(rid, _record("alice", squatter.fingerprint)),
        HeartbeatRequest,
        DeregisterRequest,
    ]))
    assert [getattr(r, "code", r) for r in replies] == ["PERMISSION_DENIED"] * 3
    for reply in replies:
        assert "'alice'" in reply.message and "operator can rebind" in reply.message
        assert bound[7:].lower() not in reply.message.lower() and bound[7:15] not in str(reply.details)
    status = asyncio.run(_status(gateway, "alice"))
    assert status is None or status.record.fingerprint == bound


def _reach_alice(gateway: GatewayProcess) -> str:
    """A client looks alice up through the gateway and connects: the fingerprint it pinned."""
    grid = node.Gateway(gateway.url, cafile=gateway.cafile)
    try:
        remote = grid.connect("alice")
        try:
            return str(remote.fingerprint)
        finally:
            remote.close()
    finally:
        grid.close()


def test_squatting_the_id_of_a_deregistered_node_or_after_a_gateway_restart(
    site: Site, identities: Callable[[str], Identity]
) -> None:
    """While alice is away (deregistered, then the gateway restarted), mallory claiming 'alice' is refused; alice takes her id back."""
    mallory = identities("mallory")
    _online(site.gateway, site.start_alice())
    alice = site.stop_alice()
    _squat(site.gateway, mallory, alice.fingerprint)
    site.restart_gateway()
    _squat(site.gateway, mallory, alice.fingerprint)
    back = site.start_alice()  # the real alice, same key
    assert back.fingerprint == alice.fingerprint
    _online(site.gateway, back)
    assert _reach_alice(site.gateway) == alice.fingerprint


def test_only_the_operator_gives_an_id_to_another_key(site: Site) -> None:
    """alice with a new key is refused until the operator rebinds 'alice' (CLI, gateway running); then her old key is refused."""
    _online(site.gateway, site.alice or site.start_alice())  # her id is bound to her first key
    old = stolen_identity(site.stop_alice())
    new_state = site.root / "state" / "alice-new-key"
    ensure_identity(new_state, "alice")
    renewed = site.start_alice(new_state)
    assert renewed.fingerprint != old.fingerprint

    async def refused() -> None:
        deadline = time.monotonic() + 30
        while "bound to another certificate" not in renewed.stderr():
            assert time.monotonic() < deadline, f"the new key was never refused: {renewed.stderr()[-2000:]}"
            await asyncio.sleep(0.1)

    asyncio.run(refused())  # the node retries on its own; the gateway keeps refusing
    assert asyncio.run(_status(site.gateway, "alice")) is None

    operator = subprocess.run(
        [sys.executable, "-m", "gateway", "bindings", "rebind", "alice",
         "--fingerprint", renewed.fingerprint, "--state-dir", str(site.gateway.state_dir)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=node_env(site.root / "home"),
    )
    assert operator.returncode == 0, operator.stderr
    _online(site.gateway, renewed)
    assert _reach_alice(site.gateway) == renewed.fingerprint
    _squat(site.gateway, old, renewed.fingerprint)
