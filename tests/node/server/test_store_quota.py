"""Per-principal quotas: object count and bytes, per principal, released on delete."""

from __future__ import annotations

import pytest
import torch

from protocol.errors import QuotaExceeded
from protocol.ids import ObjectId
from node.server.store import MemoryStore, Quota, storage_bytes


def test_object_count_is_limited_per_principal() -> None:
    """The (n+1)th object of one principal is refused; another principal is unaffected."""
    store = MemoryStore(Quota(max_objects=3, max_bytes=1 << 30))
    for i in range(3):
        store.put("alice", ObjectId(i + 1), torch.zeros(1))
    with pytest.raises(QuotaExceeded) as raised:
        store.put("alice", ObjectId(9), torch.zeros(1))
    assert raised.value.details["limit"] == 3
    store.put("bob", ObjectId(10), torch.zeros(1))
    assert not store.exists(ObjectId(9))


def test_bytes_are_limited_and_freed_on_delete() -> None:
    """Bytes count towards the quota until the object is deleted."""
    store = MemoryStore(Quota(max_objects=100, max_bytes=1000))
    store.put("alice", ObjectId(1), torch.zeros(200))  # 800 bytes
    with pytest.raises(QuotaExceeded):
        store.put("alice", ObjectId(2), torch.zeros(100))
    store.delete("alice", [ObjectId(1)])
    store.put("alice", ObjectId(2), torch.zeros(100))


def test_views_count_the_storage_they_keep_alive() -> None:
    """A one-element view of a big tensor counts the whole base storage."""
    base = torch.zeros(1000)
    assert storage_bytes(base[:1]) == 4000
    store = MemoryStore(Quota(max_objects=100, max_bytes=3000))
    with pytest.raises(QuotaExceeded):
        store.put("alice", ObjectId(1), base[:1])


def test_dropping_a_principal_resets_its_usage() -> None:
    """drop_principal frees the principal's quota as well as its objects."""
    store = MemoryStore(Quota(max_objects=1, max_bytes=1 << 20))
    store.put("alice", ObjectId(1), torch.zeros(1))
    store.drop_principal("alice")
    store.put("alice", ObjectId(2), torch.zeros(1))
