"""GatewaySession: frames in, outcomes out, with real node proofs and the real codec."""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import msgpack
import pytest
import torch

from gateway.flood import RateLimiter
from gateway.registry import Registry
from gateway.session import GATEWAY_ID, GatewaySession
from peer.server.auth import CredentialAuthenticator
from peer.server.conversation import SessionState
from node.server.session import CLOSE_POLICY, CLOSE_PROTOCOL, Outcome
from peer.security.identity import Identity, ensure_identity
from peer.security.proof import node_credentials
from tests.support import NETWORK_KEY
from protocol.codec import decode_message, encode_message_bytes
from protocol.ids import NodeId, ObjectId, RequestId
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import (
    AckReply, CommandRequest, DeregisterRequest, ErrorReply, GetRequest, HeartbeatRequest, HelloReply,
    HelloRequest, ListRequest, Message, NodesReply, NodesRequest, PutRequest, RegisterReply,
    RegisterRequest, SyncRequest,
)
from protocol.records import MAX_DATASETS, DatasetSummary, NodeRecord, NodeStatus, Role

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Keys:
    """Identities made once per module: the gateway's, alice's, and mallory's."""

    def __init__(self, root: Path) -> None:
        self.gateway = ensure_identity(root / "gateway", "gateway")
        self.alice = ensure_identity(root / "alice", "alice")
        self.mallory = ensure_identity(root / "mallory", "mallory")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(tmp_path_factory.mktemp("keys"))


class Harness:
    """One registry and clock shared by any number of sessions, like one gateway."""

    def __init__(self, keys: Keys, source_limit: int = 120, connection_limit: int = 20) -> None:
        self.keys = keys
        self.clock = Clock()
        self.registry = Registry()
        self.authenticator = CredentialAuthenticator(
            keys.gateway.fingerprint, network=NETWORK_KEY, anonymous=True
        )
        self.source_limiter = RateLimiter(source_limit)
        self.connection_limit = connection_limit

    def session(self, source: str = "10.0.0.1") -> GatewaySession:
        return GatewaySession(
            self.registry, self.authenticator, self.clock,
            source_limiter=self.source_limiter, connection_limit=self.connection_limit,
            peer=f"{source}:40000", source=source,
        )

    def node(self, identity: Identity, node_id: str, source: str = "10.0.0.1") -> GatewaySession:
        session = self.session(source)
        credentials = node_credentials(
            identity, node_id, self.keys.gateway.fingerprint, network=NETWORK_KEY
        )
        assert isinstance(send(session, hello(credentials)).reply, HelloReply)
        return session

    def anonymous(self) -> GatewaySession:
        session = self.session()
        assert isinstance(send(session, hello(ANONYMOUS)).reply, HelloReply)
        return session


ANONYMOUS = {"scheme": "anonymous", "secret": b"s" * 32}


def hello(credentials: dict[str, Any], rid: int = 1) -> HelloRequest:
    return HelloRequest(RequestId(rid), PROTOCOL_VERSION, "tests", (), credentials)


def record(identity: Identity, node_id: str, **changes: Any) -> NodeRecord:
    base = NodeRecord(NodeId(node_id), "wss://10.0.0.1:8765", identity.fingerprint, (Role.DATA_OWNER,))
    return replace(base, **changes)


def register(identity: Identity, node_id: str, rid: int = 2, **changes: Any) -> RegisterRequest:
    return RegisterRequest(RequestId(rid), record(identity, node_id, **changes))


def feed(session: GatewaySession, frame: bytes) -> Outcome:
    """Feed one frame; the reply goes through the codec like on the wire."""
    outcome = session.receive(frame)
    if outcome.reply is None:
        return outcome
    reply = decode_message(encode_message_bytes(outcome.reply))
    return Outcome(reply, outcome.close_code, outcome.close_reason)  # type: ignore[arg-type]


def send(session: GatewaySession, message: Message) -> Outcome:
    return feed(session, encode_message_bytes(message))


def error_of(outcome: Outcome) -> ErrorReply:
    assert isinstance(outcome.reply, ErrorReply), outcome
    return outcome.reply


@pytest.fixture
def gw(keys: Keys) -> Harness:
    return Harness(keys)


@pytest.fixture
def alice_registered(gw: Harness) -> Iterator[tuple[Harness, NodeStatus]]:
    """alice registered; yields the harness and her status, checked untouched afterwards."""
    session = gw.node(gw.keys.alice, "alice")
    assert isinstance(send(session, register(gw.keys.alice, "alice")).reply, RegisterReply)
    (status,) = gw.registry.nodes(None, gw.clock())
    yield gw, status
    assert gw.registry.get(NodeId("alice"), gw.clock()) == status
    assert isinstance(send(gw.anonymous(), NodesRequest(RequestId(9))).reply, NodesReply)


def test_anonymous_hello_is_answered_by_the_gateway(gw: Harness) -> None:
    """An anonymous client gets a hello reply naming the gateway and its anon principal."""
    reply = send(gw.session(), hello(ANONYMOUS)).reply
    assert isinstance(reply, HelloReply)
    assert reply.node_id == GATEWAY_ID and reply.principal.startswith("anon-")


def test_node_hello_attributes_the_node(gw: Harness) -> None:
    """A valid node proof makes the principal node:<id>@<key>, carrying the proven id."""
    session = gw.node(gw.keys.alice, "alice")
    assert session.caller is not None and session.caller.principal.startswith("node:alice@")
    assert session.caller.node_id == "alice"


def test_proof_for_another_server_is_refused_and_closes(gw: Harness) -> None:
    """A node proof bound to another server's fingerprint is UNAUTHENTICATED, close 1008."""
    credentials = node_credentials(gw.keys.alice, "alice", gw.keys.mallory.fingerprint)
    outcome = send(gw.session(), hello(credentials))
    assert error_of(outcome).code == "UNAUTHENTICATED" and outcome.close_code == CLOSE_POLICY


def test_request_before_hello_is_unauthenticated_and_closes(gw: Harness) -> None:
    """Anything before hello gets UNAUTHENTICATED and closes with 1008."""
    outcome = send(gw.session(), NodesRequest(RequestId(3)))
    assert error_of(outcome).code == "UNAUTHENTICATED" and outcome.close_code == CLOSE_POLICY


def test_second_hello_is_bad_request(gw: Harness) -> None:
    """A second hello on an open connection is BAD_REQUEST, then close 1008 (as on a node)."""
    outcome = send(gw.anonymous(), hello(ANONYMOUS, rid=5))
    assert error_of(outcome).code == "BAD_REQUEST" and outcome.close_code == CLOSE_POLICY


def test_register_heartbeat_deregister(gw: Harness) -> None:
    """A proven node registers (heartbeat interval back), heartbeats (ack) and deregisters (ack)."""
    session = gw.node(gw.keys.alice, "alice")
    reply = send(session, register(gw.keys.alice, "alice")).reply
    assert reply == RegisterReply(RequestId(2), 2.0)
    assert session.registered == "alice"
    gw.clock.now += 1.5
    assert send(session, HeartbeatRequest(RequestId(3))).reply == AckReply(RequestId(3))
    assert gw.registry.nodes(None, gw.clock())[0].last_seen == T0 + 1.5
    assert send(session, DeregisterRequest(RequestId(4))).reply == AckReply(RequestId(4))
    assert len(gw.registry) == 0 and session.registered is None


def test_anonymous_caller_cannot_register(gw: Harness) -> None:
    """register from a caller without a node proof is PERMISSION_DENIED."""
    outcome = send(gw.anonymous(), register(gw.keys.alice, "alice"))
    assert error_of(outcome).code == "PERMISSION_DENIED" and len(gw.registry) == 0


def test_heartbeat_before_register_is_not_found(gw: Harness) -> None:
    """A node that never registered gets NOT_FOUND for heartbeat and deregister."""
    session = gw.node(gw.keys.alice, "alice")
    assert error_of(send(session, HeartbeatRequest(RequestId(3)))).code == "NOT_FOUND"
    assert error_of(send(session, DeregisterRequest(RequestId(4)))).code == "NOT_FOUND"


def test_nodes_lists_and_searches_by_tag(gw: Harness) -> None:
    """nodes returns every entry, or only those carrying the tag (node or dataset)."""
    alice = gw.node(gw.keys.alice, "alice")
    send(alice, register(gw.keys.alice, "alice", tags=("#hospital",)))
    cancer = DatasetSummary("wdbc", ("#breast_cancer",), "Wisconsin", (569, 30), 569)
    mallory = gw.node(gw.keys.mallory, "mallory")
    send(mallory, register(gw.keys.mallory, "mallory", datasets=(cancer,)))
    client = gw.anonymous()
    everyone = send(client, NodesRequest(RequestId(7))).reply
    assert isinstance(everyone, NodesReply)
    assert [s.record.node_id for s in everyone.nodes] == ["alice", "mallory"]
    tagged = send(client, NodesRequest(RequestId(8), "#breast_cancer")).reply
    assert isinstance(tagged, NodesReply)
    assert [s.record.node_id for s in tagged.nodes] == ["mallory"]
    assert tagged.nodes[0].record.datasets == (cancer,)


@pytest.mark.parametrize(
    "message",
    [
        SyncRequest(RequestId(11)),
        ListRequest(RequestId(11)),
        GetRequest(RequestId(11), ObjectId(1)),
        AckReply(RequestId(11)),
    ],
    ids=lambda m: m.KIND.value,
)
def test_other_kinds_are_not_served(gw: Harness, message: Message) -> None:
    """Node kinds and replies get BAD_REQUEST 'not served by the gateway', and it keeps serving."""
    session = gw.anonymous()
    error = error_of(send(session, message))
    assert (error.id, error.code) == (11, "BAD_REQUEST")
    assert f"{message.KIND.value} is not served by the gateway" in error.message
    assert isinstance(send(session, NodesRequest(RequestId(12))).reply, NodesReply)


@pytest.mark.parametrize(
    "message",
    [
        PutRequest(RequestId(11), ObjectId(1), torch.zeros(2)),
        CommandRequest(RequestId(11), "to", None, (torch.float64,), {}, (ObjectId(2),)),
    ],
    ids=["tensor", "dtype"],
)
def test_tensor_and_dtype_values_are_refused_by_the_decoder(gw: Harness, message: Message) -> None:
    """The gateway decodes without tensors: a tensor or dtype value is BAD_REQUEST with the frame's id."""
    session = gw.anonymous()
    outcome = send(session, message)
    error = error_of(outcome)
    assert (error.id, error.code, outcome.close_code) == (11, "BAD_REQUEST", None)
    assert "values are not accepted here" in error.message
    assert isinstance(send(session, NodesRequest(RequestId(12))).reply, NodesReply)


def test_a_tensor_before_hello_is_refused_and_the_hello_gate_stays(gw: Harness) -> None:
    """A tensor frame before the hello is a decoder error: BAD_REQUEST, the connection still awaits its hello."""
    session = gw.session()
    outcome = send(session, PutRequest(RequestId(4), ObjectId(1), torch.zeros(2)))
    assert error_of(outcome).code == "BAD_REQUEST" and outcome.close_code is None
    assert session.state is SessionState.AWAITING_HELLO


def test_garbage_is_bad_message_and_the_session_goes_on(gw: Harness) -> None:
    """Bytes that are not a message get BAD_MESSAGE without closing."""
    session = gw.anonymous()
    outcome = feed(session, b"\x00\x01garbage")
    assert error_of(outcome).code == "BAD_MESSAGE" and outcome.close_code is None
    assert isinstance(send(session, NodesRequest(RequestId(2))).reply, NodesReply)


def test_version_mismatch_closes_with_1002(gw: Harness) -> None:
    """A frame in another protocol version is VERSION_MISMATCH and closes with 1002."""
    packed = msgpack.packb({"v": PROTOCOL_VERSION + 1, "kind": "nodes", "id": 4}, use_bin_type=True)
    frame = struct.pack("<I", len(packed)) + packed
    outcome = feed(gw.anonymous(), frame)
    assert error_of(outcome).code == "VERSION_MISMATCH" and outcome.close_code == CLOSE_PROTOCOL


def test_unexpected_error_is_internal_without_detail(keys: Keys) -> None:
    """A bug inside a handler is logged and answered INTERNAL, with no detail, and serving goes on."""

    class Broken(Registry):
        def nodes(self, tag: str | None, now: float) -> tuple[NodeStatus, ...]:
            raise RuntimeError("secret detail")

    gw = Harness(keys)
    gw.registry = Broken()
    session = gw.anonymous()
    error = error_of(send(session, NodesRequest(RequestId(6))))
    assert (error.code, error.message) == ("INTERNAL", "internal error")
    assert error_of(send(session, NodesRequest(RequestId(7)))).code == "INTERNAL"


# Bad input: each is refused with its typed error, and alice's entry is untouched
# (checked by the alice_registered fixture at teardown).


def test_malformed_url_is_bad_message(alice_registered: tuple[Harness, NodeStatus]) -> None:
    """A record whose URL is not wss://host:port is BAD_MESSAGE, correlated to the request."""
    gw, _ = alice_registered
    session = gw.node(gw.keys.mallory, "mallory")
    for url in ("http://10.0.0.1:80", "wss://host", "wss://h:1/path", "wss://h:99999", "x" * 600):
        error = error_of(send(session, register(gw.keys.mallory, "mallory", rid=21, url=url)))
        assert (error.id, error.code) == (21, "BAD_MESSAGE"), url
    assert "mallory" not in gw.registry


def test_oversized_dataset_list_is_bad_message(alice_registered: tuple[Harness, NodeStatus]) -> None:
    """More than MAX_DATASETS datasets is BAD_MESSAGE."""
    gw, _ = alice_registered
    datasets = tuple(DatasetSummary(f"d{i}") for i in range(MAX_DATASETS + 1))
    session = gw.node(gw.keys.mallory, "mallory")
    error = error_of(send(session, register(gw.keys.mallory, "mallory", datasets=datasets)))
    assert error.code == "BAD_MESSAGE" and "mallory" not in gw.registry


def test_record_for_another_node_is_denied(alice_registered: tuple[Harness, NodeStatus]) -> None:
    """A proven node registering a record with alice's id is PERMISSION_DENIED."""
    gw, _ = alice_registered
    session = gw.node(gw.keys.mallory, "mallory")
    outcome = send(session, register(gw.keys.mallory, "alice", url="wss://6.6.6.6:1"))
    assert error_of(outcome).code == "PERMISSION_DENIED"


def test_record_with_stolen_fingerprint_is_denied(alice_registered: tuple[Harness, NodeStatus]) -> None:
    """A record carrying a fingerprint other than the caller's own is PERMISSION_DENIED."""
    gw, _ = alice_registered
    session = gw.node(gw.keys.mallory, "mallory")
    outcome = send(session, register(gw.keys.alice, "mallory"))
    assert error_of(outcome).code == "PERMISSION_DENIED" and "mallory" not in gw.registry


def test_duplicate_id_with_other_certificate_is_denied(
    alice_registered: tuple[Harness, NodeStatus],
) -> None:
    """Another certificate proving the name 'alice' cannot take over, refresh or remove alice's entry."""
    gw, _ = alice_registered
    session = gw.node(gw.keys.mallory, "alice")
    error = error_of(send(session, register(gw.keys.mallory, "alice", url="wss://6.6.6.6:1")))
    assert error.code == "PERMISSION_DENIED"
    assert error.message.startswith("node id 'alice' is bound to another certificate")
    assert "operator can rebind" in error.message and gw.keys.alice.fingerprint[7:] not in error.message
    for request in (HeartbeatRequest(RequestId(3)), DeregisterRequest(RequestId(4))):
        assert error_of(send(session, request)).message == error.message


def test_deregistered_id_stays_bound(gw: Harness) -> None:
    """After alice deregisters, mallory proving the name 'alice' is still refused; alice registers again."""
    alice = gw.node(gw.keys.alice, "alice")
    assert isinstance(send(alice, register(gw.keys.alice, "alice")).reply, RegisterReply)
    assert isinstance(send(alice, DeregisterRequest(RequestId(3))).reply, AckReply)
    mallory = gw.node(gw.keys.mallory, "alice")
    assert error_of(send(mallory, register(gw.keys.mallory, "alice"))).code == "PERMISSION_DENIED"
    assert "alice" not in gw.registry and mallory.registered is None
    again = gw.node(gw.keys.alice, "alice")
    assert isinstance(send(again, register(gw.keys.alice, "alice")).reply, RegisterReply)


def test_registration_flood_on_one_connection_is_quota_exceeded(
    alice_registered: tuple[Harness, NodeStatus],
) -> None:
    """Past the per-connection limit, register is QUOTA_EXCEEDED; heartbeats still pass."""
    gw, _ = alice_registered
    session = gw.node(gw.keys.mallory, "mallory", source="10.6.6.6")
    codes = [
        type(send(session, register(gw.keys.mallory, "mallory", rid=100 + i)).reply).__name__
        for i in range(gw.connection_limit + 5)
    ]
    assert codes == ["RegisterReply"] * gw.connection_limit + ["ErrorReply"] * 5
    assert error_of(send(session, register(gw.keys.mallory, "mallory"))).code == "QUOTA_EXCEEDED"
    assert isinstance(send(session, HeartbeatRequest(RequestId(5))).reply, AckReply)


def test_registration_budget_refills_after_the_window(keys: Keys) -> None:
    """A connection refused for flooding may register again once the window has passed."""
    gw = Harness(keys, connection_limit=2)
    session = gw.node(keys.mallory, "mallory")
    for rid in (1, 2):
        send(session, register(keys.mallory, "mallory", rid=rid))
    assert error_of(send(session, register(keys.mallory, "mallory"))).code == "QUOTA_EXCEEDED"
    gw.clock.now += 30
    assert isinstance(send(session, register(keys.mallory, "mallory")).reply, RegisterReply)


def test_registration_flood_across_connections_is_quota_exceeded(keys: Keys) -> None:
    """Past the per-source limit, fresh connections from that address are refused; others are not."""
    gw = Harness(keys, source_limit=5)
    replies = []
    for _ in range(8):
        session = gw.node(keys.mallory, "mallory", source="10.6.6.6")
        replies.append(send(session, register(keys.mallory, "mallory")).reply)
    assert [type(r).__name__ for r in replies] == ["RegisterReply"] * 5 + ["ErrorReply"] * 3
    assert all(error_of(Outcome(r)).code == "QUOTA_EXCEEDED" for r in replies[5:])
    alice = gw.node(keys.alice, "alice", source="10.0.0.1")
    assert isinstance(send(alice, register(keys.alice, "alice")).reply, RegisterReply)
