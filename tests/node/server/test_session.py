"""Session: frames in, outcomes out, driven synchronously with the real codec, store and executor."""

from __future__ import annotations

import logging
import struct
import msgpack
import pytest
import torch

from peer.server.auth import AnonymousAuthenticator
from node.server.executor import Executor
from node.server.offload import INLINE_ELEMENTS
from node.server.session import CLOSE_POLICY, CLOSE_PROTOCOL, Outcome, Session, SessionState, Work
from node.server.store import MemoryStore, StoredObject
from protocol.codec import ExtCode, decode_message, encode_message_bytes
from protocol.ids import NodeId, ObjectId, RequestId
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import (
    CommandRequest, DeleteRequest, DescribeReply, DescribeRequest, ErrorReply, GetReply,
    GetRequest, HelloReply, HelloRequest, ListReply, ListRequest, Message, ObjectInfo,
    PutRequest, SyncReply, SyncRequest,
)
from protocol.values import PointerRef, Value

NODE = NodeId("alice")
SECRET = b"s" * 32
OTHER_SECRET = b"o" * 32
MAX_BYTES = 1 << 26


def anonymous(secret: object = SECRET) -> dict[str, Value]:
    return {"scheme": "anonymous", "secret": secret}  # type: ignore[dict-item]


def hello(rid: int = 1, credentials: dict[str, Value] | None = None) -> HelloRequest:
    creds = anonymous() if credentials is None else credentials
    return HelloRequest(RequestId(rid), PROTOCOL_VERSION, "tests", ("client",), creds)


def new_session(store: MemoryStore | None = None) -> Session:
    store = MemoryStore() if store is None else store
    executor = Executor(NODE, store)
    return Session(NODE, ("node",), executor, store, AnonymousAuthenticator(), MAX_BYTES)


def opened(store: MemoryStore | None = None, secret: bytes = SECRET) -> Session:
    session = new_session(store)
    assert isinstance(send(session, hello(credentials=anonymous(secret))).reply, HelloReply)
    return session


def feed(session: Session, frame: bytes) -> Outcome:
    """Feed one frame; the outcome's reply is passed through the codec like on the wire."""
    step = session.receive(frame)
    assert isinstance(step, Outcome), step
    if step.reply is None:
        return step
    reply = decode_message(encode_message_bytes(step.reply))
    return Outcome(reply, step.close_code, step.close_reason)  # type: ignore[arg-type]


def send(session: Session, message: Message) -> Outcome:
    return feed(session, encode_message_bytes(message))


def error_of(outcome: Outcome) -> ErrorReply:
    assert isinstance(outcome.reply, ErrorReply), outcome
    return outcome.reply


def raw_frame(body: object, payload: bytes = b"") -> bytes:
    """A frame built by hand, bypassing the encoder's checks."""
    packed = msgpack.packb(body, use_bin_type=True)
    head = struct.pack("<I", len(packed)) + packed
    return head + bytes(-len(head) % 8) + payload


def ref(object_id: int, node: str = NODE) -> PointerRef:
    return PointerRef(NodeId(node), ObjectId(object_id))


def put(session: Session, object_id: int, value: torch.Tensor, rid: int = 10) -> Outcome:
    return send(session, PutRequest(RequestId(rid), ObjectId(object_id), value))


def value(session: Session, object_id: int, delete: bool = False, rid: int = 20) -> torch.Tensor:
    """The stored value, via a get that must succeed and answer under its own id."""
    reply = send(session, GetRequest(RequestId(rid), ObjectId(object_id), delete)).reply
    assert isinstance(reply, GetReply) and reply.id == rid, reply
    return reply.value


def fails(session: Session, message: Message | bytes) -> ErrorReply:
    """Send a message (or a raw frame) that must be answered with an error."""
    frame = message if isinstance(message, bytes) else encode_message_bytes(message)
    return error_of(feed(session, frame))


def command(
    op: str, target: PointerRef | None, args: tuple[Value, ...], results: tuple[int, ...],
    kwargs: dict[str, Value] | None = None, rid: int = 30,
) -> CommandRequest:
    ids = tuple(ObjectId(r) for r in results)
    return CommandRequest(RequestId(rid), op, target, args, kwargs or {}, ids)



def test_hello_opens_the_session() -> None:
    """A valid hello is answered with the node id, the principal, roles and limits."""
    session = new_session()
    outcome = send(session, hello(rid=7))
    assert isinstance(outcome.reply, HelloReply) and outcome.close_code is None
    assert outcome.reply.principal.startswith("anon-") and session.state is SessionState.OPEN
    assert outcome.reply == HelloReply(RequestId(7), NODE, outcome.reply.principal, ("node",), MAX_BYTES)


BEFORE_HELLO = [PutRequest(RequestId(5), ObjectId(1), torch.ones(2)), SyncRequest(RequestId(5)),
                GetRequest(RequestId(5), ObjectId(1)), ListRequest(RequestId(5)), SyncReply(RequestId(5))]


@pytest.mark.parametrize("first", BEFORE_HELLO, ids=lambda m: m.KIND.value)
def test_anything_before_hello_is_unauthenticated_and_closes(first: Message) -> None:
    """A first message other than hello gets UNAUTHENTICATED with its id and close 1008."""
    session = new_session()
    outcome = send(session, first)
    assert error_of(outcome).code == "UNAUTHENTICATED" and error_of(outcome).id == 5
    assert outcome.close_code == CLOSE_POLICY and session.state is SessionState.CLOSED
    assert send(session, hello()) == Outcome(), "a closed session ignores later frames"


@pytest.mark.parametrize(
    "credentials",
    [{"scheme": "token", "secret": SECRET}, anonymous(b"short"), anonymous("s" * 32),
     {"scheme": "anonymous"}, {}],
    ids=["wrong-scheme", "short-secret", "str-secret", "missing-secret", "missing-all"],
)
def test_refused_credentials_close_the_session(credentials: dict[str, Value]) -> None:
    """A hello with refused credentials gets UNAUTHENTICATED with its id and close 1008."""
    session = new_session()
    outcome = send(session, hello(rid=3, credentials=credentials))
    assert error_of(outcome).code == "UNAUTHENTICATED" and error_of(outcome).id == 3
    assert outcome.close_code == CLOSE_POLICY and session.state is SessionState.CLOSED
    assert send(session, SyncRequest(RequestId(4))) == Outcome()


def test_second_hello_is_bad_request() -> None:
    """A second hello on an open session is BAD_REQUEST, then close 1008 (PROTOCOL.md 7)."""
    session = opened()
    outcome = send(session, hello(rid=2))
    assert error_of(outcome).code == "BAD_REQUEST" and error_of(outcome).id == 2
    assert outcome.close_code == CLOSE_POLICY


@pytest.mark.parametrize("handshaken", [False, True], ids=["before-hello", "after-hello"])
def test_version_mismatch_closes_with_1002(handshaken: bool) -> None:
    """A frame in another protocol version gets VERSION_MISMATCH with its id and close 1002."""
    session = opened() if handshaken else new_session()
    frame = raw_frame({"v": PROTOCOL_VERSION + 1, "kind": "sync", "id": 9})
    outcome = feed(session, frame)
    assert error_of(outcome).code == "VERSION_MISMATCH" and error_of(outcome).id == 9
    assert outcome.close_code == CLOSE_PROTOCOL and session.state is SessionState.CLOSED


def test_unknown_kind_in_another_version_is_unknown_kind() -> None:
    """The kind is checked before the version: a v=2 frame of an unknown kind is UNKNOWN_KIND, open."""
    session = opened()
    outcome = feed(session, raw_frame({"v": PROTOCOL_VERSION + 1, "kind": "frobnicate", "id": 9}))
    assert (error_of(outcome).code, error_of(outcome).id) == ("UNKNOWN_KIND", 9)
    assert outcome.close_code is None and session.state is SessionState.OPEN



def test_put_has_no_reply_and_get_returns_the_value() -> None:
    """put is answered with nothing; get returns the stored value under the request's id."""
    session = opened()
    tensor = torch.tensor([[1.5, -2.0], [3.0, 4.25]])
    assert put(session, 1, tensor) == Outcome()
    assert torch.equal(value(session, 1, rid=21), tensor)


def test_command_has_no_reply_and_stores_its_result() -> None:
    """A successful command is answered with nothing and its result is stored."""
    session = opened()
    put(session, 1, torch.tensor([1.0, 2.0]))
    put(session, 2, torch.tensor([10.0, 20.0]), rid=11)
    assert send(session, command("add", ref(1), (ref(2),), (3,))) == Outcome()
    assert torch.equal(value(session, 3), torch.tensor([11.0, 22.0]))


def test_delete_has_no_reply_and_frees() -> None:
    """delete is answered with nothing, frees the object and ignores unknown ids."""
    store = MemoryStore()
    session = opened(store)
    put(session, 1, torch.ones(3))
    assert send(session, DeleteRequest(RequestId(12), (ObjectId(1), ObjectId(99)))) == Outcome()
    assert len(store) == 0
    assert fails(session, GetRequest(RequestId(13), ObjectId(1))).code == "NOT_FOUND"


def test_get_with_delete_returns_then_frees() -> None:
    """get(delete=True) returns the value and frees the object."""
    store = MemoryStore()
    session = opened(store)
    put(session, 1, torch.arange(4))
    assert torch.equal(value(session, 1, delete=True), torch.arange(4))
    assert len(store) == 0 and store.bytes_stored == 0


@pytest.mark.parametrize("rid", [0, 1, 2**64 - 1])
def test_sync_replies_with_the_same_id(rid: int) -> None:
    """sync is answered by a sync_reply carrying the request's id."""
    outcome = send(opened(), SyncRequest(RequestId(rid)))
    assert outcome == Outcome(SyncReply(RequestId(rid)))


def test_list_shows_only_the_principals_objects() -> None:
    """list returns this principal's objects with dtype, shape and owner, not another's."""
    store = MemoryStore()
    mine, theirs = opened(store), opened(store, OTHER_SECRET)
    put(mine, 1, torch.zeros(2, 3))
    put(theirs, 2, torch.zeros(4, dtype=torch.int32))
    put(mine, 3, torch.tensor(True))
    me = mine.principal
    assert me is not None
    infos = (ObjectInfo(ObjectId(1), "float32", (2, 3), me), ObjectInfo(ObjectId(3), "bool", (), me))
    assert send(mine, ListRequest(RequestId(40))).reply == ListReply(RequestId(40), infos)


def test_describe_gives_dtype_and_shape_or_not_found() -> None:
    """describe returns dtype and shape of each named object in order; an unknown id is NOT_FOUND."""
    session = opened()
    put(session, 1, torch.zeros(5, dtype=torch.float64))
    put(session, 2, torch.zeros(2, 0, 3, dtype=torch.int8), rid=11)
    me = session.principal
    assert me is not None
    infos = (ObjectInfo(ObjectId(2), "int8", (2, 0, 3), me), ObjectInfo(ObjectId(1), "float64", (5,), me))
    reply = send(session, DescribeRequest(RequestId(41), (ObjectId(2), ObjectId(1)))).reply
    assert reply == DescribeReply(RequestId(41), infos)
    error = fails(session, DescribeRequest(RequestId(42), (ObjectId(1), ObjectId(7))))
    assert error.code == "NOT_FOUND" and error.id == 42 and error.details["object_id"] == 7


REPLIES = [SyncReply(RequestId(8)), GetReply(RequestId(8), torch.ones(1)), ListReply(RequestId(8), ()),
           ErrorReply(RequestId(8), "INTERNAL", "boom"), HelloReply(RequestId(8), NODE, "a", (), 1)]


@pytest.mark.parametrize("reply", REPLIES, ids=lambda m: m.KIND.value)
def test_reply_kind_sent_as_request_is_bad_request(reply: Message) -> None:
    """A reply kind sent to the node is BAD_REQUEST with its id; the session stays open."""
    session = opened()
    error = fails(session, reply)
    assert error.code == "BAD_REQUEST" and error.id == 8 and "reply" in error.message
    assert session.state is SessionState.OPEN


TENSOR_COMPLEX = msgpack.ExtType(ExtCode.TENSOR, msgpack.packb(["complex64", [1], 0, 8]))

MALFORMED = [
    pytest.param(b"", "BAD_MESSAGE", 0, id="empty"),
    pytest.param(b"\x01\x00", "BAD_MESSAGE", 0, id="short-header"),
    pytest.param(struct.pack("<I", 1000) + b"\x80", "BAD_MESSAGE", 0, id="body-overruns"),
    pytest.param(struct.pack("<I", 2) + b"\xc1\xc1", "BAD_MESSAGE", 0, id="not-msgpack"),
    pytest.param(raw_frame([1, 2, 3]), "BAD_MESSAGE", 0, id="body-not-map"),
    pytest.param(raw_frame({"v": 1, "id": 4}), "BAD_MESSAGE", 4, id="no-kind"),
    pytest.param(raw_frame({"v": 1, "kind": "sync", "id": -1}), "BAD_MESSAGE", 0, id="bad-id"),
    pytest.param(raw_frame({"kind": "sync", "id": 4}), "BAD_MESSAGE", 4, id="no-version"),
    pytest.param(raw_frame({"v": 1, "kind": "teleport", "id": 4}), "UNKNOWN_KIND", 4, id="kind"),
    pytest.param(raw_frame({"v": 1, "kind": "put", "id": 4, "object_id": 1}), "BAD_MESSAGE", 4,
                 id="missing-field"),
    pytest.param(raw_frame({"v": 1, "kind": "put", "id": 4, "object_id": 1,
                            "value": TENSOR_COMPLEX}, bytes(8)), "BAD_TENSOR", 4, id="dtype"),
]


@pytest.mark.parametrize(("frame", "code", "rid"), MALFORMED)
def test_malformed_frame_is_answered_and_the_session_keeps_working(
    frame: bytes, code: str, rid: int
) -> None:
    """A frame that does not decode gets its code with the frame's id (or 0); the session stays open."""
    session = opened()
    outcome = feed(session, frame)
    assert (error_of(outcome).code, error_of(outcome).id) == (code, rid)
    assert outcome.close_code is None and session.state is SessionState.OPEN
    assert send(session, SyncRequest(RequestId(50))) == Outcome(SyncReply(RequestId(50)))


def test_malformed_frame_before_hello_keeps_awaiting_hello() -> None:
    """A frame that does not decode before the handshake leaves the session awaiting hello."""
    session = new_session()
    assert error_of(feed(session, b"garbage!")).id == 0
    assert session.state is SessionState.AWAITING_HELLO
    assert isinstance(send(session, hello()).reply, HelloReply)


def test_bytes_kwarg_key_is_a_bad_message() -> None:
    """A command whose kwargs map has a bin key is BAD_MESSAGE with its id, not INTERNAL."""
    session = opened()
    put(session, 1, torch.ones(2))
    target = msgpack.ExtType(ExtCode.POINTER, msgpack.packb([NODE, 1]))
    frame = raw_frame({"v": 1, "kind": "command", "id": 4, "op": "add", "target": target,
                       "args": [1.0], "kwargs": {b"alpha": 2}, "results": [2]})
    error = fails(session, frame)
    assert (error.code, error.id) == ("BAD_MESSAGE", 4) and session.state is SessionState.OPEN



def test_heavy_command_comes_back_as_work_and_small_ones_run_inline() -> None:
    """Inputs of INLINE_ELEMENTS elements make a Work whose run() stores the result; fewer run inline."""
    store = MemoryStore()
    session = opened(store)
    big = torch.arange(INLINE_ELEMENTS, dtype=torch.float32)
    put(session, 1, big)
    put(session, 2, big[1:], rid=11)
    assert send(session, command("neg", ref(2), (), (3,))) == Outcome()
    assert len(store) == 3
    step = session.receive(encode_message_bytes(command("mul", ref(1), (2.0,), (4,))))
    assert isinstance(step, Work)
    assert len(store) == 3, "nothing runs before the caller runs the work"
    assert step.run() == Outcome()
    assert torch.equal(value(session, 4), big * 2)


def test_heavy_command_counts_tensors_in_kwargs() -> None:
    """A large tensor passed as a keyword argument makes the command heavy too."""
    session = opened()
    put(session, 1, torch.ones(1))
    put(session, 2, torch.ones(INLINE_ELEMENTS), rid=11)
    request = command("add", ref(1), (), (3,), kwargs={"other": ref(2)})
    assert isinstance(session.receive(encode_message_bytes(request)), Work)


@pytest.mark.parametrize("rows", [2, INLINE_ELEMENTS], ids=["inline", "heavy"])
def test_op_raising_inside_torch_is_op_failed_naming_the_op(rows: int) -> None:
    """An op torch rejects is OP_FAILED naming the op, inline or from Work.run(); nothing stored."""
    store = MemoryStore()
    session = opened(store)
    put(session, 1, torch.ones(rows, 3))
    step = session.receive(encode_message_bytes(command("matmul", ref(1), (ref(1),), (3,), rid=32)))
    assert isinstance(step, Work) == (rows >= INLINE_ELEMENTS // 3)
    error = error_of(step.run() if isinstance(step, Work) else step)
    assert error.code == "OP_FAILED" and error.id == 32
    assert "matmul" in error.message and error.details["op"] == "matmul"
    assert len(store) == 1 and session.state is SessionState.OPEN


@pytest.mark.parametrize("results", [(3, 4), (3, 4, 5)])
def test_wrong_number_of_result_ids_is_bad_request(results: tuple[int, ...]) -> None:
    """A command naming more result ids than its op yields is BAD_REQUEST; nothing is stored."""
    store = MemoryStore()
    session = opened(store)
    put(session, 1, torch.ones(2))
    error = fails(session, command("neg", ref(1), (), results))
    assert error.code == "BAD_REQUEST" and error.details["expected"] == 1
    assert len(store) == 1


@pytest.mark.parametrize("where", ["target", "arg", "kwarg", "nested"])
def test_pointer_naming_another_node_is_bad_request(where: str) -> None:
    """A pointer ref naming another node, anywhere in the command, is BAD_REQUEST."""
    session = opened()
    put(session, 1, torch.ones(2))
    foreign = ref(1, node="bob")
    request = {
        "target": command("add", foreign, (ref(1),), (2,)),
        "arg": command("add", ref(1), (foreign,), (2,)),
        "kwarg": command("add", ref(1), (), (2,), kwargs={"other": foreign}),
        "nested": command("cat", None, ([ref(1), foreign],), (2,)),
    }[where]
    error = fails(session, request)
    assert error.code == "BAD_REQUEST" and error.details["node"] == "bob"


class ExplodingStore(MemoryStore):
    """A store whose reads fail with an exception the session does not expect."""

    def get(self, principal: str, object_id: ObjectId) -> StoredObject:
        raise RuntimeError("disk on fire at /srv/secret/path")


@pytest.mark.parametrize(
    "request_",
    [GetRequest(RequestId(60), ObjectId(1)), DescribeRequest(RequestId(60), (ObjectId(1),)),
     command("neg", ref(1), (), (2,), rid=60)],
    ids=["get", "describe", "command"],
)
def test_unexpected_exception_is_internal_without_detail(
    request_: Message, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected exception in a handler is INTERNAL with no detail, logged, session open."""
    session = opened(ExplodingStore())
    put(session, 1, torch.ones(2))
    with caplog.at_level(logging.ERROR, logger="tessera.node.session"):
        error = fails(session, request_)
    assert (error.code, error.id, error.message, dict(error.details)) == (
        "INTERNAL", 60, "internal error", {}
    )
    assert "fire" not in repr(error)
    assert any(record.exc_info for record in caplog.records), "traceback goes to the log"
    assert session.state is SessionState.OPEN
    assert send(session, SyncRequest(RequestId(61))) == Outcome(SyncReply(RequestId(61)))



def test_different_secrets_cannot_see_each_others_objects() -> None:
    """Objects of one principal are NOT_FOUND to another, and its deletes leave them alone."""
    store = MemoryStore()
    alice, mallory = opened(store), opened(store, OTHER_SECRET)
    put(alice, 1, torch.ones(2))
    assert fails(mallory, GetRequest(RequestId(2), ObjectId(1))).code == "NOT_FOUND"
    assert fails(mallory, DescribeRequest(RequestId(3), (ObjectId(1),))).code == "NOT_FOUND"
    assert fails(mallory, command("neg", ref(1), (), (5,))).code == "NOT_FOUND"
    assert send(mallory, DeleteRequest(RequestId(4), (ObjectId(1),))) == Outcome()
    assert send(mallory, ListRequest(RequestId(6))).reply == ListReply(RequestId(6), ())
    assert torch.equal(value(alice, 1), torch.ones(2))


def test_same_secret_reaches_the_same_principal() -> None:
    """Two sessions with the same secret share one principal and so its objects."""
    store = MemoryStore()
    first, second = opened(store), opened(store)
    assert first.principal == second.principal
    put(first, 1, torch.tensor([4.0]))
    assert torch.equal(value(second, 1), torch.tensor([4.0]))
    assert send(second, DeleteRequest(RequestId(7), (ObjectId(1),))) == Outcome()
    assert len(store) == 0


def test_guarded_async_turns_errors_into_the_requests_error_reply() -> None:
    """AsyncWork bodies never raise: a reply passes, a TesseraError keeps its code, anything else is INTERNAL."""
    import asyncio
    from typing import Awaitable, Callable

    from protocol.errors import ErrorCode, PermissionDenied
    from protocol.messages import Reply

    session = opened()
    request = SyncRequest(RequestId(5))

    async def ok() -> SyncReply:
        return request.reply()

    async def refused() -> None:
        raise PermissionDenied("no", {})

    async def broken() -> None:
        raise RuntimeError("secret detail")

    async def outcome(run: Callable[[], Awaitable[Reply | None]]) -> Outcome:
        return await session.guarded_async(request, run).run()

    replies = [asyncio.run(outcome(run)).reply for run in (ok, refused, broken)]
    assert isinstance(replies[0], SyncReply) and replies[0].id == request.id
    assert isinstance(replies[1], ErrorReply) and replies[1].code == ErrorCode.PERMISSION_DENIED.value
    assert isinstance(replies[2], ErrorReply) and replies[2].code == ErrorCode.INTERNAL.value
    assert "secret" not in replies[2].message
