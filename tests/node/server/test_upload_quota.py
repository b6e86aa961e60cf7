"""Unfinished uploads and awaited deliveries hold their full size in the principal's quota."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from peer.server.auth import AnonymousAuthenticator, Caller
from node.server.executor import Executor
from node.server.session import Outcome, Session
from node.server.store import MemoryStore, Quota
from node.server.reservations import RESERVATION_TTL
from node.server.transfers import TransferService
from protocol.codec import encode_message_bytes
from protocol.errors import QuotaExceeded
from protocol.ids import NodeId, ObjectId, RequestId
from protocol.limits import PROTOCOL_VERSION
from protocol.messages import (
    DeliverRequest, ErrorReply, ExpectRequest, HelloReply, HelloRequest, Message, PutChunkRequest, PutRequest,
    ReadReply, ReadRequest,
)

NODE = NodeId("bob")
QUOTA = Quota(max_objects=100, max_bytes=64 * 1024)
CHUNK = torch.zeros(1024, dtype=torch.uint8)


def _send(session: Session, message: Message) -> Outcome:
    step = session.receive(encode_message_bytes(message))
    assert isinstance(step, Outcome), step
    return step


def _session(store: MemoryStore) -> Session:
    session = Session(NODE, ("node",), Executor(NODE, store), store, AnonymousAuthenticator(), 1 << 26)
    hello = HelloRequest(RequestId(1), PROTOCOL_VERSION, "tests", (), {"scheme": "anonymous", "secret": b"s" * 32})
    assert isinstance(_send(session, hello).reply, HelloReply)
    return session


def _first_chunk(object_id: int, size: int, rid: int = 2) -> PutChunkRequest:
    return PutChunkRequest(RequestId(rid), ObjectId(object_id), "uint8", (size,), 0, CHUNK, False)


def _code(outcome: Outcome) -> str | None:
    return outcome.reply.code if isinstance(outcome.reply, ErrorReply) else None


def test_an_unfinished_upload_holds_its_declared_size_from_the_first_chunk() -> None:
    """The first chunk reserves the whole declared size: a second upload or a put past the quota is refused."""
    store = MemoryStore(QUOTA)
    session = _session(store)
    principal = session.principal
    assert principal is not None
    assert _code(_send(session, _first_chunk(1, 48 * 1024))) is None
    assert store.ledger.usage(principal) == (0, 48 * 1024)
    refused = _send(session, _first_chunk(2, 32 * 1024, rid=3))
    assert _code(refused) == "QUOTA_EXCEEDED"
    assert isinstance(refused.reply, ErrorReply) and "unfinished uploads" in refused.reply.message
    assert _code(_send(session, PutRequest(RequestId(4), ObjectId(3), torch.zeros(5000)))) == "QUOTA_EXCEEDED"


def test_a_completed_upload_counts_once_as_its_object() -> None:
    """The last chunk turns the reservation into the stored object's quota, not twice."""
    store = MemoryStore(QUOTA)
    session = _session(store)
    assert session.principal is not None
    _send(session, _first_chunk(1, 2048))
    last = PutChunkRequest(RequestId(3), ObjectId(1), "uint8", (2048,), 1024, CHUNK, True)
    assert _code(_send(session, last)) is None
    assert store.ledger.usage(session.principal) == (2048, 0)


def test_a_failed_chunk_and_a_closed_connection_release_the_reservation() -> None:
    """A chunk out of order abandons its upload; closing the connection abandons the rest."""
    store = MemoryStore(QUOTA)
    session = _session(store)
    principal = session.principal
    assert principal is not None
    _send(session, _first_chunk(1, 8192))
    wrong = PutChunkRequest(RequestId(3), ObjectId(1), "uint8", (8192,), 4096, CHUNK, False)
    assert _code(_send(session, wrong)) == "BAD_REQUEST"
    assert store.ledger.usage(principal) == (0, 0)
    _send(session, _first_chunk(2, 8192, rid=4))
    _send(session, _first_chunk(3, 8192, rid=5))
    assert store.ledger.usage(principal) == (0, 16384)
    session.close()
    assert store.ledger.usage(principal) == (0, 0)


def test_a_download_copy_holds_its_bytes_until_the_next_download_or_the_close() -> None:
    """Reading a non-contiguous object makes a contiguous copy: it counts in the quota, per connection."""
    store = MemoryStore(QUOTA)
    first, second = _session(store), _session(store)
    principal = first.principal
    assert principal is not None
    store.put(principal, ObjectId(1), torch.zeros(64, 64).t())  # 16 KiB, a transposed view
    for session in (first, second):
        assert isinstance(_send(session, ReadRequest(RequestId(2), ObjectId(1), 0, 64)).reply, ReadReply)
    assert store.ledger.usage(principal) == (16384, 2 * 16384)
    refused = _send(first, PutRequest(RequestId(3), ObjectId(2), torch.zeros(4097)))
    assert _code(refused) == "QUOTA_EXCEEDED" and "downloads in progress" in refused.reply.message  # type: ignore[union-attr]
    store.put(principal, ObjectId(3), torch.zeros(8, 8).t())
    _send(first, ReadRequest(RequestId(4), ObjectId(3), 0, 64))  # replaces the first copy
    assert store.ledger.usage(principal) == (16384 + 256, 16384 + 256)
    first.close()
    second.close()
    assert store.ledger.usage(principal) == (16384 + 256, 0)


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


FP = "sha256:" + "a" * 64
SOURCE = Caller("node:alice", NodeId("alice"), FP)
CLIENT = Caller("anon-client")


def _service(store: MemoryStore, clock: Clock) -> TransferService:
    def no_credentials(fingerprint: str | None) -> dict[str, Any]:
        raise AssertionError("no link is dialed here")

    return TransferService(NODE, store, no_credentials, 1 << 20, clock)


def _expect(svc: TransferService, object_id: int) -> None:
    svc.expect(CLIENT, ExpectRequest(RequestId(1), ObjectId(object_id), NodeId("alice"), FP, b"t" * 32))


def _chunk(object_id: int, size: int, offset: int = 0, last: bool = False) -> DeliverRequest:
    return DeliverRequest(RequestId(2), ObjectId(object_id), b"t" * 32, "uint8", (size,), offset, CHUNK, last)


def test_deliveries_reserve_at_expect_and_first_chunk_against_the_expecting_principal() -> None:
    """expect holds one object; the first chunk its declared size; a second delivery past the quota is refused."""
    store = MemoryStore(QUOTA)
    svc = _service(store, Clock())
    _expect(svc, 1)
    _expect(svc, 2)
    svc.deliver(SOURCE, _chunk(1, 40 * 1024))
    assert store.ledger.usage("anon-client") == (0, 40 * 1024)
    with pytest.raises(QuotaExceeded) as raised:
        svc.deliver(SOURCE, _chunk(2, 40 * 1024))
    assert "incoming transfers" in raised.value.message
    assert store.ledger.usage("anon-client") == (0, 40 * 1024)
    with pytest.raises(QuotaExceeded):
        store.put("anon-client", ObjectId(9), torch.zeros(7 * 1024))


def test_an_expired_delivery_gives_its_quota_back() -> None:
    """A delivery left unfinished past its reservation's lifetime frees its bytes and its object slot."""
    store = MemoryStore(Quota(max_objects=1, max_bytes=64 * 1024))
    clock = Clock()
    svc = _service(store, clock)
    _expect(svc, 1)
    svc.deliver(SOURCE, _chunk(1, 40 * 1024))
    with pytest.raises(QuotaExceeded):
        _expect(svc, 2)  # the one object slot is awaited
    clock.now += RESERVATION_TTL + 1
    _expect(svc, 2)
    assert store.ledger.usage("anon-client") == (0, 0)


def test_a_finished_delivery_counts_once() -> None:
    """The last chunk stores the object against the reservation made for it."""
    store = MemoryStore(QUOTA)
    svc = _service(store, Clock())
    _expect(svc, 1)
    svc.deliver(SOURCE, _chunk(1, 2048))
    svc.deliver(SOURCE, _chunk(1, 2048, offset=1024, last=True))
    assert store.ledger.usage("anon-client") == (2048, 0)
