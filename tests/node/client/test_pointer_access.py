"""Pointers to private data: repr without round trips, release, pointer(), objects(), get refused."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from node.client.handle import NodeHandle
from node.client.pointer import Pointer
from node.client.virtual import LocalChannel, VirtualNode
from protocol.errors import PermissionDenied
from protocol.ids import ObjectId
from protocol.messages import ObjectInfo


def second_client(node: VirtualNode) -> NodeHandle:
    """Another principal (its own anonymous secret) on the same in-process node: a second connection."""
    return NodeHandle(LocalChannel(node.server, "analyst"))


class NoRoundTrips:
    """A channel that fails the test if anything is sent."""

    node_id = "quiet"
    principal = "anon-me"

    def post(self, *args: Any) -> None:
        raise AssertionError("repr posted a request")

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"repr touched the channel: {name}")


def test_repr_never_contacts_the_node_and_shows_private_and_owner() -> None:
    """repr of a pointer shows id, location, dtype, shape, private, owner; it sends nothing."""
    handle = NodeHandle(NoRoundTrips())  # type: ignore[arg-type]
    info = ObjectInfo(ObjectId(0x2A), "float32", (3, 4), "user:hospital", False, True)
    pointer = Pointer(handle, ObjectId(0x2A), info, owned=False)
    text = repr(pointer)
    assert text == "<Pointer quiet:0x000000000000002a float32[3, 4] private owner=user:hospital unreadable>"
    assert repr(Pointer(handle, ObjectId(7), owned=False)) == "<Pointer quiet:0x0000000000000007>"
    assert str(pointer) == text


def test_private_send_is_computable_by_others_but_not_gettable() -> None:
    """The analyst finds the private dataset in objects(), computes on it, and every get is refused."""
    owner = VirtualNode("clinic")
    analyst = second_client(owner)
    data = owner.send(torch.arange(6.0), private=True)
    owner.sync()
    (info,) = [i for i in analyst.objects() if i.object_id == data.object_id]
    assert (info.owner, info.readable, info.private) == (owner.principal, False, True)
    remote = analyst.pointer(data.object_id)
    assert "private" in repr(remote) and owner.principal in repr(remote)
    for derived in (remote, remote + 0, remote * 1, remote.sum(), remote[torch.tensor([0, 1])]):
        with pytest.raises(PermissionDenied):
            derived.get()
    assert torch.equal(data.get(), torch.arange(6.0)), "the owner still reads its data"


def test_release_lets_the_analyst_get_and_borrowed_pointers_do_not_delete() -> None:
    """After data.release(analyst) the analyst gets it; dropping its pointer leaves the owner's object."""
    owner = VirtualNode("clinic")
    analyst = second_client(owner)
    data = owner.send(torch.arange(3.0), private=True)
    owner.sync()
    data.release(analyst.principal)
    borrowed = analyst.pointer(data.object_id)
    assert torch.equal(borrowed.get(), torch.arange(3.0))
    del borrowed
    analyst.sync()
    assert torch.equal(data.get(), torch.arange(3.0))


def test_derived_result_needs_the_owners_release_too() -> None:
    """The analyst's result from private data becomes gettable once the owner releases that result."""
    owner = VirtualNode("clinic")
    analyst = second_client(owner)
    data = owner.send(torch.arange(3.0), private=True)
    owner.sync()
    total = analyst.pointer(data.object_id).sum()
    analyst.sync()
    with pytest.raises(PermissionDenied):
        total.get()
    owner.pointer(total.object_id).release(analyst.principal)
    assert total.get().item() == 3.0
