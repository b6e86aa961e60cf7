"""Session: private puts, release, and who may get, read, list and describe what."""

from __future__ import annotations

import torch

from node.server.session import Session
from node.server.store import MemoryStore
from protocol.ids import ObjectId, RequestId
from protocol.messages import (
    AckReply, DeleteRequest, DescribeReply, DescribeRequest, GetRequest, ListReply, ListRequest, ObjectInfo,
    PutRequest, ReadRequest, ReleaseRequest,
)
from protocol.streams import PutChunkRequest
from tests.node.server.test_session import OTHER_SECRET, command, fails, opened, ref, send, value


def two_principals() -> tuple[Session, Session, str, str]:
    """A data owner that put private object 1 and an analyst on the same node."""
    store = MemoryStore()
    owner, analyst = opened(store), opened(store, OTHER_SECRET)
    assert send(owner, PutRequest(RequestId(2), ObjectId(1), torch.arange(4.0), True)).reply is None
    assert owner.principal is not None and analyst.principal is not None
    return owner, analyst, owner.principal, analyst.principal


def test_private_object_is_listed_to_others_with_its_owner_but_not_readable() -> None:
    """list and describe show another principal's private dataset: owner named, readable false, private true."""
    owner, analyst, owner_p, _ = two_principals()
    expected = ObjectInfo(ObjectId(1), "float32", (4,), owner_p, False, True)
    assert send(analyst, ListRequest(RequestId(3))).reply == ListReply(RequestId(3), (expected,))
    assert send(analyst, DescribeRequest(RequestId(4), (ObjectId(1),))).reply == DescribeReply(RequestId(4), (expected,))
    own = send(owner, ListRequest(RequestId(5))).reply
    assert isinstance(own, ListReply) and own.objects[0].readable


def test_get_and_read_of_a_private_object_are_permission_denied_naming_the_owner() -> None:
    """get (inline or streamed) and read by another principal: PERMISSION_DENIED naming who may release."""
    _, analyst, owner_p, _ = two_principals()
    for request in (GetRequest(RequestId(3), ObjectId(1)), GetRequest(RequestId(4), ObjectId(1), False, 1),
                    ReadRequest(RequestId(5), ObjectId(1), 0, 4)):
        error = fails(analyst, request)
        assert error.code == "PERMISSION_DENIED" and error.details == {"object_id": 1}
        assert owner_p in error.message and "0x1" in error.message


def test_release_lets_exactly_that_principal_get() -> None:
    """After the owner's release the analyst gets the value; a third principal still cannot see it."""
    owner, analyst, _, analyst_p = two_principals()
    assert send(owner, ReleaseRequest(RequestId(3), ObjectId(1), analyst_p)).reply == AckReply(RequestId(3))
    assert torch.equal(value(analyst, 1), torch.arange(4.0))
    third = opened(owner.store, b"t" * 32)
    assert fails(third, GetRequest(RequestId(4), ObjectId(1))).code == "PERMISSION_DENIED"


def test_release_by_a_non_guardian_is_permission_denied() -> None:
    """The analyst cannot release the owner's dataset to itself."""
    _, analyst, _, analyst_p = two_principals()
    error = fails(analyst, ReleaseRequest(RequestId(3), ObjectId(1), analyst_p))
    assert error.code == "PERMISSION_DENIED"
    assert fails(analyst, GetRequest(RequestId(4), ObjectId(1))).code == "PERMISSION_DENIED"


def test_release_of_an_invisible_object_is_not_found() -> None:
    """Releasing another principal's ordinary object is NOT_FOUND, like an unused id."""
    owner, analyst, _, analyst_p = two_principals()
    send(owner, PutRequest(RequestId(3), ObjectId(2), torch.ones(1)))
    assert fails(analyst, ReleaseRequest(RequestId(4), ObjectId(2), analyst_p)).code == "NOT_FOUND"


def test_derived_result_needs_both_releases() -> None:
    """The analyst's x*1 of the private x: unreadable to both until both release it."""
    owner, analyst, owner_p, analyst_p = two_principals()
    assert send(analyst, command("mul", ref(1), (1,), (9,))).reply is None
    assert fails(analyst, GetRequest(RequestId(5), ObjectId(9))).code == "PERMISSION_DENIED"
    assert fails(owner, GetRequest(RequestId(6), ObjectId(9))).code == "PERMISSION_DENIED"
    send(owner, ReleaseRequest(RequestId(7), ObjectId(9), owner_p))
    assert fails(owner, GetRequest(RequestId(8), ObjectId(9))).code == "PERMISSION_DENIED"
    send(analyst, ReleaseRequest(RequestId(9), ObjectId(9), owner_p))
    assert torch.equal(value(owner, 9), torch.arange(4.0))
    send(owner, ReleaseRequest(RequestId(10), ObjectId(9), analyst_p))
    assert torch.equal(value(analyst, 9), torch.arange(4.0))


def test_streamed_private_upload_is_private() -> None:
    """put_chunk with private on its last chunk stores a private dataset."""
    store = MemoryStore()
    owner, analyst = opened(store), opened(store, OTHER_SECRET)
    data = torch.arange(4.0).view(torch.uint8)
    send(owner, PutChunkRequest(RequestId(2), ObjectId(5), "float32", (4,), 0, data, True, True))
    assert store.get(analyst.principal or "", ObjectId(5)).policy.shared
    assert fails(analyst, GetRequest(RequestId(3), ObjectId(5))).code == "PERMISSION_DENIED"


def test_delete_of_a_visible_private_object_is_permission_denied_and_keeps_it() -> None:
    """Another principal deleting a private dataset it can see is refused; the data survives."""
    owner, analyst, _, _ = two_principals()
    assert fails(analyst, DeleteRequest(RequestId(3), (ObjectId(1),))).code == "PERMISSION_DENIED"
    assert torch.equal(value(owner, 1), torch.arange(4.0))
