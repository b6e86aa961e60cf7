"""Objects by id, with their owner and read policy.

The store is the only place that decides who may see and who may read an
object.  A principal *sees* (may list, describe and use in commands) what
it owns, what holds its data (it is a guardian of the object's
:class:`~node.server.policy.Policy`), what it may read, and every *shared*
object (a data owner's private dataset); an object it may not see is
reported as not found, so ids of other principals' objects leak nothing.
*Reading* (``get``, ``read``, ``transfer``) additionally needs the policy
to allow it, else PermissionDenied naming who may release it.  It is shared
by every connection of a node and by the worker threads that run heavy ops,
hence the lock.  Each principal's quota is kept by a
:class:`~node.server.quota.Ledger`, which counts the store's objects and
the :class:`~node.server.quota.Reservation`s for everything else a principal
makes the node hold (:meth:`MemoryStore.reserve`).  It must not import
torch ops, asyncio or the transport.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterable, Protocol

import torch

from protocol.errors import AlreadyExists, NotFound, PermissionDenied
from protocol.ids import ObjectId
from protocol.messages import ObjectInfo
from protocol.tensors import DTYPE_NAMES

from .policy import OPERATOR, Policy, Principal
from peer.server.redaction import note_restricted
from .quota import DEFAULT_MAX_BYTES, DEFAULT_MAX_OBJECTS, Hold, Ledger, Quota, Reservation

__all__ = [
    "Principal",
    "Policy",
    "StoredObject",
    "ObjectStore",
    "MemoryStore",
    "Quota",
    "Hold",
    "Reservation",
    "storage_bytes",
    "unreadable",
    "DEFAULT_MAX_OBJECTS",
    "DEFAULT_MAX_BYTES",
]

@dataclass(frozen=True, slots=True)
class StoredObject:
    """A tensor with its owner (who may delete it) and its read policy."""

    object_id: ObjectId
    value: torch.Tensor
    owner: Principal
    policy: Policy

    def visible_to(self, principal: Principal) -> bool:
        """May ``principal`` know it exists and use it in commands?"""
        policy = self.policy
        return (
            principal == self.owner
            or policy.shared
            or principal in policy.guardians
            or policy.can_read(principal)
        )

    def readable_by(self, principal: Principal) -> bool:
        """May ``principal`` have its data (get, read, transfer)?"""
        return self.policy.can_read(principal)

    def info(self, principal: Principal | None = None) -> ObjectInfo:
        """Dtype, shape, owner and what ``principal`` (default: the owner) may do with it."""
        readable = self.policy.can_read(self.owner if principal is None else principal)
        return ObjectInfo(
            self.object_id,
            DTYPE_NAMES[self.value.dtype],
            tuple(self.value.shape),
            self.owner,
            readable,
            self.policy.shared,
        )

    @property
    def nbytes(self) -> int:
        return self.value.numel() * self.value.element_size()


class ObjectStore(Protocol):
    """What sessions and the executor need from a store."""

    def put(
        self,
        principal: Principal,
        object_id: ObjectId,
        value: torch.Tensor,
        policy: Policy | None = None,
        reservation: Reservation | None = None,
    ) -> None: ...

    def get(self, principal: Principal, object_id: ObjectId) -> StoredObject: ...

    def read(self, principal: Principal, object_id: ObjectId) -> StoredObject: ...

    def release(self, principal: Principal, object_id: ObjectId, to: Principal) -> None: ...

    def delete(self, principal: Principal, object_ids: Iterable[ObjectId]) -> int: ...

    def visible(self, principal: Principal) -> list[StoredObject]: ...

    def drop_principal(self, principal: Principal) -> int: ...

    def exists(self, object_id: ObjectId) -> bool: ...

    def check_quota(self, principal: Principal, nbytes: int, objects: int = 1) -> None: ...

    def reserve(self, principal: Principal, hold: Hold, nbytes: int, objects: int = 0) -> Reservation: ...


def storage_bytes(value: torch.Tensor) -> int:
    """Memory an object keeps alive: a view holds its whole base storage."""
    return max(value.numel() * value.element_size(), value.untyped_storage().nbytes())


class MemoryStore:
    """In-memory :class:`ObjectStore`; thread-safe, O(1) per operation."""

    def __init__(self, quota: Quota | None = None) -> None:
        self.quota = quota or Quota()
        self._objects: dict[ObjectId, StoredObject] = {}
        self._owned: dict[Principal, set[ObjectId]] = {}
        self.ledger = Ledger(self.quota)
        self._lock = threading.Lock()

    def check_quota(self, principal: Principal, nbytes: int, objects: int = 1) -> None:
        """QuotaExceeded if ``principal`` may not add ``objects`` holding ``nbytes`` more
        (counting what it stores and what its reservations hold)."""
        self.ledger.check(principal, nbytes, objects)

    def reserve(self, principal: Principal, hold: Hold, nbytes: int, objects: int = 0) -> Reservation:
        """Hold ``nbytes`` and ``objects`` of ``principal``'s quota for ``hold``, before allocating.

        QuotaExceeded past the quota.  The caller releases it on every way
        out, or passes it to :meth:`put` with the object it was made for.
        """
        return self.ledger.reserve(principal, hold, nbytes, objects)

    def __len__(self) -> int:
        return len(self._objects)

    @property
    def bytes_stored(self) -> int:
        """Bytes of tensor data held, all principals (derived: no counter to keep in step)."""
        with self._lock:
            return sum(stored.nbytes for stored in self._objects.values())

    def put(
        self,
        principal: Principal,
        object_id: ObjectId,
        value: torch.Tensor,
        policy: Policy | None = None,
        reservation: Reservation | None = None,
    ) -> None:
        """Store ``value`` owned by ``principal`` (default policy: only it may read); the id must be unused.

        With ``reservation`` (``principal``'s, made for this object or for a
        command's results), up to the object's size and one object of it count
        as the object's own quota (see :meth:`~node.server.quota.Ledger.store`).
        """
        stored = StoredObject(object_id, value, principal, policy or Policy.own(principal))
        size = storage_bytes(value)
        if reservation is not None and (reservation.released or reservation.principal != principal):
            reservation = None
        with self._lock:
            if object_id in self._objects:
                raise AlreadyExists.for_object(object_id)
            self.ledger.store(principal, size, reservation)
            self._objects[object_id] = stored
            self._owned.setdefault(principal, set()).add(object_id)

    def get(self, principal: Principal, object_id: ObjectId) -> StoredObject:
        """The object, if ``principal`` may see it; else NotFound."""
        stored = self._objects.get(object_id)
        if stored is None or not stored.visible_to(principal):
            raise NotFound.for_object(object_id)
        if not stored.policy.can_read(principal):
            note_restricted()  # the request now holds data its caller may not read
        return stored

    def read(self, principal: Principal, object_id: ObjectId) -> StoredObject:
        """The object, if ``principal`` may read its data: NotFound if it cannot even see it,
        PermissionDenied (naming who may release it) if it may only compute on it."""
        stored = self.get(principal, object_id)
        if not stored.readable_by(principal):
            raise unreadable(stored)
        return stored

    def release(self, principal: Principal, object_id: ObjectId, to: Principal) -> None:
        """``principal``, a guardian of the object, allows ``to`` to read it (see Policy.release)."""
        with self._lock:
            stored = self.get(principal, object_id)
            released = stored.policy.release(principal, to)
            self._objects[object_id] = StoredObject(object_id, stored.value, stored.owner, released)

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
        """Objects ``principal`` may see (owns, guards, may read, or shared), in insertion order."""
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
        return len(owned)

    def _remove(self, stored: StoredObject) -> None:
        del self._objects[stored.object_id]
        owned = self._owned.get(stored.owner)
        if owned is not None:
            owned.discard(stored.object_id)
        self.ledger.unstore(stored.owner, storage_bytes(stored.value))


def unreadable(stored: StoredObject) -> PermissionDenied:
    """The refusal to hand over data the asker may only compute on.

    Names the object and the principals who may release it, never the data.
    """
    guardians = sorted(stored.policy.guardians)
    if OPERATOR in guardians:
        return PermissionDenied(
            f"object {stored.object_id:#x} holds data of this node's operator: it can be "
            "computed on, never read",
            {"object_id": stored.object_id},
        )
    shown = ", ".join(guardians[:4]) + (", ..." if len(guardians) > 4 else "")
    who = "its owner" if guardians == [stored.owner] else "its guardians"
    return PermissionDenied(
        f"object {stored.object_id:#x} is private: its data cannot be read; "
        f"{who} {shown} may release it",
        {"object_id": stored.object_id},
    )
