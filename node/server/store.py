"""Objects by id, with their owner and readers.

The store is the only place that decides who may see an object: a principal
sees what it owns or what it has been granted, and an object it may not see
is reported as not found, so ids of other principals' objects leak nothing.
It is shared by every connection of a node and by the worker threads that
run heavy ops, hence the lock.  It must not import torch ops, asyncio or the
transport.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterable, Protocol

import torch

from protocol.errors import AlreadyExists, NotFound, PermissionDenied, QuotaExceeded
from protocol.ids import ObjectId
from protocol.messages import ObjectInfo
from protocol.tensors import DTYPE_NAMES

__all__ = [
    "Principal",
    "StoredObject",
    "ObjectStore",
    "MemoryStore",
    "Quota",
    "storage_bytes",
    "DEFAULT_MAX_OBJECTS",
    "DEFAULT_MAX_BYTES",
]

Principal = str


@dataclass(frozen=True, slots=True)
class StoredObject:
    """A tensor with its access rules."""

    object_id: ObjectId
    value: torch.Tensor
    owner: Principal
    readers: frozenset[Principal]

    def visible_to(self, principal: Principal) -> bool:
        return principal == self.owner or principal in self.readers

    def info(self) -> ObjectInfo:
        return ObjectInfo(self.object_id, DTYPE_NAMES[self.value.dtype], tuple(self.value.shape))

    @property
    def nbytes(self) -> int:
        return self.value.numel() * self.value.element_size()


class ObjectStore(Protocol):
    """What sessions and the executor need from a store."""

    def put(self, principal: Principal, object_id: ObjectId, value: torch.Tensor) -> None: ...

    def get(self, principal: Principal, object_id: ObjectId) -> StoredObject: ...

    def delete(self, principal: Principal, object_ids: Iterable[ObjectId]) -> int: ...

    def visible(self, principal: Principal) -> list[StoredObject]: ...

    def drop_principal(self, principal: Principal) -> int: ...

    def exists(self, object_id: ObjectId) -> bool: ...

    def check_quota(self, principal: Principal, nbytes: int, objects: int = 1) -> None: ...


DEFAULT_MAX_OBJECTS = 100_000
"""Objects one principal may hold on a node by default."""

DEFAULT_MAX_BYTES = 8 * 1024**3
"""Bytes one principal may hold on a node by default (8 GiB)."""


@dataclass(frozen=True, slots=True)
class Quota:
    """Per-principal limits a store enforces on every new object."""

    max_objects: int = DEFAULT_MAX_OBJECTS
    max_bytes: int = DEFAULT_MAX_BYTES


def storage_bytes(value: torch.Tensor) -> int:
    """Memory an object keeps alive: a view holds its whole base storage."""
    return max(value.numel() * value.element_size(), value.untyped_storage().nbytes())


class MemoryStore:
    """In-memory :class:`ObjectStore`; thread-safe, O(1) per operation."""

    def __init__(self, quota: Quota | None = None) -> None:
        self.quota = quota or Quota()
        self._objects: dict[ObjectId, StoredObject] = {}
        self._owned: dict[Principal, set[ObjectId]] = {}
        self._bytes: dict[Principal, int] = {}
        self._lock = threading.Lock()

    def check_quota(self, principal: Principal, nbytes: int, objects: int = 1) -> None:
        """QuotaExceeded if ``principal`` may not add ``objects`` holding ``nbytes`` more."""
        held = len(self._owned.get(principal, ()))
        if held + objects > self.quota.max_objects:
            raise QuotaExceeded(
                f"at most {self.quota.max_objects} objects per principal on this node",
                {"limit": self.quota.max_objects, "held": held},
            )
        used = self._bytes.get(principal, 0)
        if used + nbytes > self.quota.max_bytes:
            raise QuotaExceeded(
                f"{nbytes} more bytes would exceed the {self.quota.max_bytes}-byte quota "
                f"({used} in use)",
                {"limit": self.quota.max_bytes, "used": used, "size": nbytes},
            )

    def __len__(self) -> int:
        return len(self._objects)

    @property
    def bytes_stored(self) -> int:
        """Bytes of tensor data held, all principals (derived: no counter to keep in step)."""
        with self._lock:
            return sum(stored.nbytes for stored in self._objects.values())

    def put(self, principal: Principal, object_id: ObjectId, value: torch.Tensor) -> None:
        """Store ``value`` owned by ``principal``; the id must be unused."""
        stored = StoredObject(object_id, value, principal, frozenset({principal}))
        size = storage_bytes(value)
        with self._lock:
            if object_id in self._objects:
                raise AlreadyExists.for_object(object_id)
            self.check_quota(principal, size)
            self._objects[object_id] = stored
            self._owned.setdefault(principal, set()).add(object_id)
            self._bytes[principal] = self._bytes.get(principal, 0) + size

    def get(self, principal: Principal, object_id: ObjectId) -> StoredObject:
        """The object, if ``principal`` may see it; else NotFound."""
        stored = self._objects.get(object_id)
        if stored is None or not stored.visible_to(principal):
            raise NotFound.for_object(object_id)
        return stored

    def delete(self, principal: Principal, object_ids: Iterable[ObjectId]) -> int:
        """Delete the listed objects ``principal`` owns; unknown ids are ignored.

        Deleting an object one can see but does not own is refused: a reader
        must not be able to destroy the owner's data.
        """
        removed = 0
        with self._lock:
            for object_id in object_ids:
                stored = self._objects.get(object_id)
                if stored is None or not stored.visible_to(principal):
                    continue
                if stored.owner != principal:
                    raise PermissionDenied(
                        f"object {object_id:#x} belongs to another principal",
                        {"object_id": object_id},
                    )
                self._remove(stored)
                removed += 1
        return removed

    def visible(self, principal: Principal) -> list[StoredObject]:
        """Objects ``principal`` owns or may read, in insertion order."""
        with self._lock:
            return [s for s in self._objects.values() if s.visible_to(principal)]

    def exists(self, object_id: ObjectId) -> bool:
        """Whether the id is taken, by anyone (for reservations; never shown to clients)."""
        return object_id in self._objects

    def drop_principal(self, principal: Principal) -> int:
        """Delete everything ``principal`` owns (its session expired)."""
        with self._lock:
            owned = [self._objects[i] for i in self._owned.get(principal, ())]
            for stored in owned:
                self._remove(stored)
            self._owned.pop(principal, None)
            self._bytes.pop(principal, None)
        return len(owned)

    def _remove(self, stored: StoredObject) -> None:
        del self._objects[stored.object_id]
        owned = self._owned.get(stored.owner)
        if owned is not None:
            owned.discard(stored.object_id)
        if stored.owner in self._bytes:
            self._bytes[stored.owner] -= storage_bytes(stored.value)
