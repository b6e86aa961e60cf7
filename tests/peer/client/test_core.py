"""ChannelCore: the client side of a connection, bytes in and frames out, no I/O."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import torch

from peer.client.core import TRANSITIONS, Built, ChannelCore, LinkEvent, LinkState
from peer.client.tracker import AUTO_BARRIER_EVERY
from peer.errors import ClientClosed, NodeUnavailable
from peer.security.proof import welcome_mac
from peer.security.trust import NotAMember
from protocol.codec import Frame, decode_message, encode_message
from protocol.errors import BadRequest, MessageTooLarge, NotFound, OpFailed, Unauthenticated
from protocol.ids import NodeId, ObjectId, RequestId
from protocol.messages import (
    AckReply,
    ErrorReply,
    HelloReply,
    HelloRequest,
    ListReply,
    ListRequest,
    PutRequest,
    SyncReply,
    SyncRequest,
)

PEER = "wss://bob.example:8765"
FINGERPRINT = "sha256:" + "ab" * 32
NETWORK = secrets.token_bytes(32)
LIMIT = 1 << 20


def wire(message: Any) -> bytes:
    return encode_message(message).to_bytes()


def read(frame: Frame) -> Any:
    return decode_message(frame.to_bytes())


def greeted(core: ChannelCore[str], credentials: dict[str, Any] | None = None) -> HelloRequest:
    hello = read(core.hello("client", ("client",), credentials or {"scheme": "anonymous"}))
    assert isinstance(hello, HelloRequest)
    return hello


def opened(limit: int = LIMIT) -> ChannelCore[str]:
    """A core whose hello the peer accepted."""
    core: ChannelCore[str] = ChannelCore(PEER, LIMIT)
    hello = greeted(core)
    core.welcome(wire(hello.reply(NodeId("bob"), "user:alice", ("node",), limit)), FINGERPRINT, None)
    return core


def put(value: float = 1.0) -> Any:
    return lambda rid: PutRequest(rid, ObjectId(7), torch.tensor([value]))


def test_hello_is_request_one_and_carries_the_credentials() -> None:
    """The first frame is a hello with id 1, the protocol version, roles and the given credentials."""
    core: ChannelCore[str] = ChannelCore(PEER, LIMIT)
    hello = greeted(core, {"scheme": "anonymous", "secret": b"s" * 32})
    assert hello.id == 1 and hello.client == "client" and hello.roles == ("client",)
    assert dict(hello.credentials) == {"scheme": "anonymous", "secret": b"s" * 32}
    assert core.state is LinkState.GREETING


def test_welcome_opens_and_lowers_the_limit_to_the_peers() -> None:
    """A hello reply opens the channel with the node's id, our principal and the smaller limit."""
    core = opened(limit=4096)
    assert core.state is LinkState.OPEN
    assert (core.node_id, core.principal, core.peer_fingerprint) == ("bob", "user:alice", FINGERPRINT)
    assert core.max_message_bytes == 4096 and core.limit == LIMIT


def test_refused_hello_raises_its_class_and_allows_a_new_hello() -> None:
    """An error answering the hello is raised as its class naming hello and the peer; the next hello may follow."""
    core: ChannelCore[str] = ChannelCore(PEER, LIMIT)
    hello = greeted(core)
    with pytest.raises(Unauthenticated, match=f"^hello on {PEER}: no such user$"):
        core.welcome(wire(ErrorReply(hello.id, "UNAUTHENTICATED", "no such user")), FINGERPRINT, None)
    assert core.state is LinkState.IDLE
    assert greeted(core).id == 2


def test_hello_failed_refuses_only_a_greeting_channel() -> None:
    """A failed hello returns a greeting channel to IDLE and clears its credentials; in any other state it does nothing."""
    core: ChannelCore[str] = ChannelCore(PEER, LIMIT)
    core.hello_failed()
    assert core.state is LinkState.IDLE
    greeted(core, {"scheme": "anonymous", "secret": b"s" * 32})
    core.hello_failed()
    assert core.state is LinkState.IDLE and core._credentials == {}
    core = opened()
    core.hello_failed()
    assert core.state is LinkState.OPEN
    core.close()
    core.hello_failed()
    assert core.state is LinkState.CLOSED


def test_a_hello_answered_by_anything_else_is_refused() -> None:
    """A peer answering the hello with another kind is NodeUnavailable, not a welcome."""
    core: ChannelCore[str] = ChannelCore(PEER, LIMIT)
    hello = greeted(core)
    with pytest.raises(NodeUnavailable, match="answered hello with sync_reply"):
        core.welcome(wire(SyncReply(hello.id)), FINGERPRINT, None)
    assert core.state is LinkState.IDLE


def member_hello(core: ChannelCore[str]) -> HelloRequest:
    return greeted(core, {"scheme": "node", "nonce": secrets.token_bytes(16)})


@pytest.mark.parametrize(
    "membership",
    [
        lambda nonce: None,
        lambda nonce: b"\0" * 32,
        lambda nonce: welcome_mac(secrets.token_bytes(32), "bob", FINGERPRINT, nonce),  # another network
        lambda nonce: welcome_mac(NETWORK, "bob", FINGERPRINT, secrets.token_bytes(16)),  # another hello
        lambda nonce: welcome_mac(NETWORK, "mallory", FINGERPRINT, nonce),  # another node
        lambda nonce: welcome_mac(NETWORK, "bob", "sha256:" + "cd" * 32, nonce),  # another certificate
    ],
    ids=["none", "garbage", "other-network", "replayed", "other-node", "other-certificate"],
)
def test_a_peer_that_does_not_prove_membership_is_not_welcomed(membership: Any) -> None:
    """With a network, the reply must carry the MAC over this hello's nonce, node and certificate."""
    core: ChannelCore[str] = ChannelCore(PEER, LIMIT)
    hello = member_hello(core)
    reply = hello.reply(NodeId("bob"), "node:alice", ("node",), LIMIT, membership(hello.credentials["nonce"]))
    with pytest.raises(NotAMember, match=PEER):
        core.welcome(wire(reply), FINGERPRINT, NETWORK)
    assert core.state is LinkState.IDLE and core.node_id == "", "nothing of the peer is adopted"


def test_a_member_is_welcomed_and_only_over_tls() -> None:
    """The right MAC opens the channel; the same reply without a verified certificate does not."""
    core: ChannelCore[str] = ChannelCore(PEER, LIMIT)
    hello = member_hello(core)
    proof = welcome_mac(NETWORK, "bob", FINGERPRINT, hello.credentials["nonce"])  # type: ignore[arg-type]
    reply = wire(hello.reply(NodeId("bob"), "node:alice", ("node",), LIMIT, proof))
    plain: ChannelCore[str] = ChannelCore(PEER, LIMIT)
    member_hello(plain)
    with pytest.raises(NotAMember):
        plain.welcome(reply, None, NETWORK)
    core.welcome(reply, FINGERPRINT, NETWORK)
    assert core.state is LinkState.OPEN


def test_the_core_issues_every_request_id() -> None:
    """Builders receive ids 2, 3, 4, ... after the hello; callers never choose one."""
    core = opened()
    seen: list[int] = []

    def build(rid: RequestId) -> ListRequest:
        seen.append(rid)
        return ListRequest(rid)

    core.post(build, "a")
    core.call(build, "waiter")
    (frame,) = core.post(build, "c")
    assert seen == [2, 3, 4] and read(frame).id == 4 and core.issued == 4


def test_a_calls_reply_comes_back_with_its_waiter() -> None:
    """A reply is handed back with the waiter registered for its id; unknown ids are dropped."""
    core = opened()
    request_id, frame = core.call(ListRequest, "mine")
    assert isinstance(read(frame), ListRequest)
    assert core.receive(wire(ListReply(RequestId(99), ()))) is None
    assert core.receive(wire(ListReply(request_id, ()))) == ("mine", ListReply(request_id, ()))
    assert core.receive(wire(ListReply(request_id, ()))) is None, "answered once"


def test_a_posted_failure_is_raised_first_at_the_next_synchronisation_point() -> None:
    """An error answering a post is raised by the next settle, naming the post, before the call's own outcome."""
    core = opened()
    core.post(put(), "send(tensor[1])")
    core.receive(wire(ErrorReply(RequestId(2), "OP_FAILED", "shapes")))
    request_id, _ = core.call(SyncRequest, "waiter")
    answer = core.receive(wire(SyncReply(request_id)))
    assert answer is not None
    with pytest.raises(OpFailed, match="^send\\(tensor\\[1\\]\\) on bob: shapes$"):  # by id, not URL
        core.settle(answer[1], SyncReply, "sync")
    assert core.settle(answer[1], SyncReply, "sync") == SyncReply(request_id)


def test_settle_raises_the_calls_error_then_checks_its_kind() -> None:
    """A call's own error is raised naming its description; a reply of the wrong kind is BadRequest."""
    core = opened()
    with pytest.raises(NotFound, match="^get\\(<0x7>\\) on bob: gone$"):
        core.settle(ErrorReply(RequestId(5), "NOT_FOUND", "gone"), SyncReply, "get(<0x7>)")
    assert core.url == PEER  # the URL dialed is kept
    with pytest.raises(BadRequest, match="unexpected ack reply"):
        core.settle(AckReply(RequestId(5)), SyncReply, "sync")


def test_a_sync_reply_confirms_every_post_before_it() -> None:
    """Posts stay outstanding until a barrier's reply; later errors for them name no command."""
    core = opened()
    for _ in range(3):
        core.post(put(), "p")
    assert core.outstanding == 3
    request_id, _ = core.call(SyncRequest, "w")
    core.receive(wire(SyncReply(request_id)))
    assert core.outstanding == 0


def test_a_barrier_is_posted_by_itself_every_so_many_posts() -> None:
    """The AUTO_BARRIER_EVERY-th unconfirmed post comes with a sync request behind it."""
    core = opened()
    counts = [len(core.post(put(), "p")) for _ in range(AUTO_BARRIER_EVERY)]
    assert counts[:-1] == [1] * (AUTO_BARRIER_EVERY - 1) and counts[-1] == 2
    assert len(core.post(put(), "p")) == 1  # the barrier is not repeated after every later post
    frames = [core.post(put(), "p") for _ in range(AUTO_BARRIER_EVERY - 1)]
    assert isinstance(read(frames[-1][-1]), SyncRequest)


def test_a_lost_connection_fails_everything_in_flight_and_routes_nothing_more() -> None:
    """lost() hands back every waiter, turns unconfirmed posts into failures, and drops late frames."""
    core = opened()
    core.post(put(), "send(tensor[1])")
    first, _ = core.call(ListRequest, "a")
    core.call(ListRequest, "b")
    waiters = core.lost(NodeUnavailable("connection reset", {}))
    assert sorted(waiters) == ["a", "b"] and core.state is LinkState.IDLE
    assert core.receive(wire(ListReply(first, ()))) is None
    failure = core.take_failure()
    assert isinstance(failure, NodeUnavailable) and failure.command == "send(tensor[1])"
    assert greeted(core).id == 5, "the next connection starts from a new hello; ids go on"


def test_a_closed_core_refuses_requests_but_takes_replies_in_flight() -> None:
    """After close, posts, calls and hellos raise ClientClosed; replies already due are still routed."""
    core = opened()
    request_id, _ = core.call(ListRequest, "due")
    core.close()
    for attempt in (lambda: core.post(put(), "p"), lambda: core.call(ListRequest, "w"),
                    lambda: core.hello("c", (), {})):
        with pytest.raises(ClientClosed):
            attempt()
    assert core.receive(wire(ListReply(request_id, ()))) == ("due", ListReply(request_id, ()))


def test_an_oversized_request_is_refused_before_it_is_pending() -> None:
    """A frame above the negotiated limit is MessageTooLarge and no waiter is kept for it."""
    core = opened(limit=1024)
    with pytest.raises(MessageTooLarge):
        core.call(put_big, "w")
    assert core.lost(NodeUnavailable("x", {})) == []


def put_big(rid: RequestId) -> PutRequest:
    return PutRequest(rid, ObjectId(1), torch.zeros(4096, dtype=torch.uint8))


def test_undecodable_frames_and_requests_are_dropped() -> None:
    """Garbage and requests sent to a client are logged and dropped, never raised."""
    core = opened()
    assert core.receive(b"\xc1garbage") is None
    assert core.receive(wire(SyncRequest(RequestId(3)))) is None


def test_nothing_leaves_the_closed_state() -> None:
    """The transition table has no way out of CLOSED, and a driver bug is an error, not a silent move."""
    assert all(TRANSITIONS[(LinkState.CLOSED, e)] is LinkState.CLOSED
               for e in LinkEvent if (LinkState.CLOSED, e) in TRANSITIONS)
    core = opened()
    with pytest.raises(RuntimeError, match="hello while open"):
        core.hello("c", (), {})


def test_built_remembers_what_it_built() -> None:
    """Built names a request by its kind once the core has built it."""
    built = Built(ListRequest)
    assert built.kind == "request"
    opened().call(built, "w")
    assert built.kind == "list"
