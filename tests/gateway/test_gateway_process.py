"""A real gateway process over wss: registration, heartbeats, search, drops, HTTPS views."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from typing import Callable

import pytest

from gateway.bindings import BINDINGS_FILE, BindingFile
from peer.security.identity import Identity, ensure_identity
from protocol.messages import (
    AckReply, DeregisterRequest, ErrorReply, HeartbeatRequest, NodesReply, NodesRequest,
    RegisterReply, RegisterRequest,
)
from protocol.codec import encode_message_bytes
from protocol.ids import NodeId
from protocol.records import DatasetSummary, NodeStatus, Role
from tests.gateway.gateway_wire import Wire, https_get, record_for
from tests.support import GatewayProcess


@pytest.fixture(scope="module")
def ids(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Identity]:
    """Node identities made on demand, one per name, reused across the module."""
    root = tmp_path_factory.mktemp("identities")
    made: dict[str, Identity] = {}

    def get(name: str) -> Identity:
        if name not in made:
            made[name] = ensure_identity(root / name, name)
        return made[name]

    return get


async def registered(gateway: GatewayProcess, identity: Identity, node_id: str, **kw: object) -> Wire:
    wire = await Wire.open(gateway, identity, node_id)
    reply = await wire.request(RegisterRequest(wire.rid(), record_for(identity, node_id, **kw)))
    assert isinstance(reply, RegisterReply), reply
    return wire


async def status_of(gateway: GatewayProcess, node_id: str) -> NodeStatus | None:
    client = await Wire.open(gateway)
    try:
        reply = await client.request(NodesRequest(client.rid()))
    finally:
        await client.close()
    assert isinstance(reply, NodesReply)
    return next((s for s in reply.nodes if s.record.node_id == node_id), None)


async def wait_for_offline(gateway: GatewayProcess, node_id: str, within: float) -> float:
    """Seconds until the gateway lists ``node_id`` offline; fails after ``within``."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        status = await status_of(gateway, node_id)
        assert status is not None
        if not status.online:
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"{node_id} still online after {within} s")


async def test_register_heartbeat_and_list(shared_gateway: GatewayProcess, ids: Callable[[str], Identity]) -> None:
    """A node registers (told the 2 s interval), heartbeats, and clients see it online."""
    wire = await Wire.open(shared_gateway, ids("p-alice"), "p-alice")
    reply = await wire.request(RegisterRequest(wire.rid(), record_for(ids("p-alice"), "p-alice")))
    assert isinstance(reply, RegisterReply) and reply.heartbeat_interval == 2.0
    first = await status_of(shared_gateway, "p-alice")
    assert first is not None and first.online and first.record.fingerprint == ids("p-alice").fingerprint
    await asyncio.sleep(0.05)
    assert isinstance(await wire.request(HeartbeatRequest(wire.rid())), AckReply)
    later = await status_of(shared_gateway, "p-alice")
    assert later is not None and later.last_seen > first.last_seen
    await wire.close()


async def test_search_by_node_and_dataset_tag(shared_gateway: GatewayProcess, ids: Callable[[str], Identity]) -> None:
    """nodes(tag) finds nodes by their own tags and by their datasets' tags."""
    cancer = DatasetSummary("wdbc", ("#p_breast_cancer",), "569 patients", (569, 30), 569)
    a = await registered(shared_gateway, ids("p-bob"), "p-bob", roles=(Role.DATA_OWNER,), datasets=(cancer,))
    b = await registered(shared_gateway, ids("p-carol"), "p-carol", tags=("#p_breast_cancer",))
    c = await registered(shared_gateway, ids("p-dave"), "p-dave", tags=("#p_other",))
    client = await Wire.open(shared_gateway)
    reply = await client.request(NodesRequest(client.rid(), "#p_breast_cancer"))
    assert isinstance(reply, NodesReply)
    assert [s.record.node_id for s in reply.nodes] == ["p-bob", "p-carol"]
    assert reply.nodes[0].record.datasets == (cancer,)
    for wire in (a, b, c, client):
        await wire.close()


async def test_dropped_connection_marks_offline_at_once(shared_gateway: GatewayProcess, ids: Callable[[str], Identity]) -> None:
    """Closing the node's connection marks it offline well before the 6 s heartbeat window."""
    wire = await registered(shared_gateway, ids("p-erin"), "p-erin")
    await wire.close()
    assert await wait_for_offline(shared_gateway, "p-erin", within=3.0) < 3.0


async def test_newer_connection_keeps_the_node_online(shared_gateway: GatewayProcess, ids: Callable[[str], Identity]) -> None:
    """If the node re-registered on a new connection, the old one dropping changes nothing."""
    old = await registered(shared_gateway, ids("p-frank"), "p-frank")
    new = await registered(shared_gateway, ids("p-frank"), "p-frank")
    await old.close()
    await asyncio.sleep(0.3)
    status = await status_of(shared_gateway, "p-frank")
    assert status is not None and status.online
    await new.close()
    await wait_for_offline(shared_gateway, "p-frank", within=3.0)


async def test_deregister_removes_the_node(shared_gateway: GatewayProcess, ids: Callable[[str], Identity]) -> None:
    """deregister is acknowledged and the node disappears from the list."""
    wire = await registered(shared_gateway, ids("p-grace"), "p-grace")
    assert isinstance(await wire.request(DeregisterRequest(wire.rid())), AckReply)
    assert await status_of(shared_gateway, "p-grace") is None
    await wire.close()


async def test_binding_is_on_disk_before_the_register_reply(shared_gateway: GatewayProcess, ids: Callable[[str], Identity]) -> None:
    """When register_reply arrives, the gateway's 0600 bindings.json already binds the id to the node's certificate."""
    wire = await registered(shared_gateway, ids("p-ivan"), "p-ivan")
    table = BindingFile(shared_gateway.state_dir).load()
    assert table[NodeId("p-ivan")].fingerprint == ids("p-ivan").fingerprint
    assert stat.S_IMODE(os.stat(shared_gateway.state_dir / BINDINGS_FILE).st_mode) == 0o600
    await wire.close()


async def test_bad_registration_is_refused_and_serving_goes_on(shared_gateway: GatewayProcess, ids: Callable[[str], Identity]) -> None:
    """A malformed URL and an id claimed by another certificate are refused; the owner is untouched."""
    owner = await registered(shared_gateway, ids("p-heidi"), "p-heidi")
    before = await status_of(shared_gateway, "p-heidi")
    thief = await Wire.open(shared_gateway, ids("p-ivan"), "p-heidi")
    bad_url = record_for(ids("p-ivan"), "p-heidi", url="wss://6.6.6.6:1")
    reply = await thief.request(RegisterRequest(thief.rid(), bad_url))
    assert isinstance(reply, ErrorReply) and reply.code == "PERMISSION_DENIED"
    frame = encode_message_bytes(RegisterRequest(thief.rid(), record_for(ids("p-ivan"), "p-heidi", url="http://x:1")))
    await thief.ws.send(frame)
    reply = await thief.receive()
    assert isinstance(reply, ErrorReply) and reply.code == "BAD_MESSAGE"
    await thief.ws.send(b"\xff" * 3)
    reply = await thief.receive()
    assert isinstance(reply, ErrorReply) and reply.code == "BAD_MESSAGE"
    await thief.close()
    assert await status_of(shared_gateway, "p-heidi") == before
    await owner.close()


async def test_https_views_list_the_nodes(shared_gateway: GatewayProcess, ids: Callable[[str], Identity]) -> None:
    """GET /nodes.json and / over verified HTTPS list a registered node; other paths are 404."""
    wire = await registered(shared_gateway, ids("p-judy"), "p-judy", tags=("#p_json",))
    status, content_type, body = await asyncio.to_thread(https_get, shared_gateway, "/nodes.json")
    assert (status, content_type) == (200, "application/json")
    judy = next(n for n in json.loads(body)["nodes"] if n["node_id"] == "p-judy")
    assert judy["online"] is True and judy["tags"] == ["#p_json"]
    assert judy["fingerprint"] == ids("p-judy").fingerprint
    status, content_type, body = await asyncio.to_thread(https_get, shared_gateway, "/?x=1")
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    assert b'data-node-id="p-judy"' in body
    status, _, _ = await asyncio.to_thread(https_get, shared_gateway, "/favicon.ico")
    assert status == 404
    await wire.close()


async def test_silent_node_is_swept_offline(spawn_gateway: Callable[..., GatewayProcess], ids: Callable[[str], Identity]) -> None:
    """With 0.2 s heartbeats, a node that stays connected but silent is swept offline in ~0.6 s."""
    gateway = spawn_gateway("--heartbeat-seconds", "0.2")
    wire = await registered(gateway, ids("p-ken"), "p-ken")
    await wait_for_offline(gateway, "p-ken", within=5.0)
    deadline = time.monotonic() + 5
    while "p-ken missed its heartbeats; marked offline" not in gateway.stderr():
        assert time.monotonic() < deadline, gateway.stderr()
        await asyncio.sleep(0.1)
    await wire.close()
    assert gateway.stop() == 0
