"""Incoming node-to-node deliveries: reservations made by ``expect``, filled by ``deliver``.

The destination side of :mod:`node.server.transfers`.  ``expect`` reserves
an object id for the asking client, to be filled only by the node and
certificate the client named, with a one-time ticket; every ``deliver``
chunk is checked against all three before it is written, and the object is
stored for the client when the last one arrives.  The client's quota holds
one object from ``expect`` and the declared size from the first chunk, so
an unfinished delivery costs the client, never the node.

The last chunk carries the object's read policy with the mover written as
:data:`~node.server.policy.MOVER` (its principal here may differ from the
one on the source); the principal that made the ``expect`` stands in.
Synchronous, on the node's event loop.
"""

from __future__ import annotations

import copy
import hmac
import time
from dataclasses import dataclass
from typing import Callable

from protocol.errors import AlreadyExists, BadRequest, NotFound, PermissionDenied, QuotaExceeded, TesseraError
from protocol.ids import NodeId, ObjectId
from protocol.messages import DeliverRequest, ExpectRequest

from peer.server.auth import Caller
from .policy import MOVER, Policy
from .quota import Hold, Reservation as QuotaReservation
from .store import ObjectStore, Principal
from .uploads import Upload

__all__ = ["MAX_PENDING_PER_PRINCIPAL", "RESERVATION_TTL", "Reservation", "Reservations"]

RESERVATION_TTL = 120.0
"""Seconds an ``expect`` reservation waits for its delivery."""

MAX_PENDING_PER_PRINCIPAL = 1024
"""Open reservations one principal may hold."""


@dataclass(frozen=True, slots=True)
class Reservation:
    """An object id promised to ``owner``, to be delivered by one node with one ticket."""

    object_id: ObjectId
    owner: Principal
    from_node: NodeId
    from_fingerprint: str
    ticket: bytes
    expires: float
    held: QuotaReservation
    """``owner``'s quota held for it: one object from ``expect``, its declared size from the first chunk."""


class Reservations:
    """This node's open reservations for incoming objects, and the deliveries filling them."""

    def __init__(
        self, store: ObjectStore, clock: Callable[[], float] = time.monotonic, max_object_bytes: int = 4 * 1024**3
    ) -> None:
        self.store = store
        self.clock = clock
        self.max_object_bytes = max_object_bytes
        self._pending: dict[ObjectId, Reservation] = {}
        self._uploads: dict[ObjectId, Upload] = {}
        self._failed: dict[ObjectId, tuple[TesseraError, float]] = {}
        """Why a delivery failed, so its later chunks report the cause."""

    def expect(self, caller: Caller, request: ExpectRequest) -> None:
        """Reserve ``request.object_id`` for ``caller``."""
        now = self.clock()
        self._expire(now)
        if request.object_id in self._pending or self.store.exists(request.object_id):
            raise AlreadyExists.for_object(request.object_id)
        held = sum(1 for r in self._pending.values() if r.owner == caller.principal)
        if held >= MAX_PENDING_PER_PRINCIPAL:
            raise QuotaExceeded(
                f"at most {MAX_PENDING_PER_PRINCIPAL} transfers may be awaited at once",
                {"limit": MAX_PENDING_PER_PRINCIPAL},
            )
        self._pending[request.object_id] = Reservation(
            request.object_id,
            caller.principal,
            request.from_node,
            request.from_fingerprint,
            request.ticket,
            now + RESERVATION_TTL,
            self.store.reserve(caller.principal, Hold.DELIVERY, 0, objects=1),
        )

    def deliver(self, caller: Caller, request: DeliverRequest) -> None:
        """Take one chunk of a delivery; store the object for the client when complete.

        Every chunk is checked (reservation, ticket, node and certificate);
        a failed chunk cancels the reservation, so a bad delivery cannot be
        finished by anyone.
        """
        sender = caller.node_sender("deliver")
        self._expire(self.clock())
        reservation = self._pending.get(request.object_id)
        if reservation is None:
            failed = self._failed.get(request.object_id)
            if failed is not None:
                raise copy.copy(failed[0])  # an earlier chunk failed: report why, not "not found"
            raise NotFound(f"no transfer is expected for object {request.object_id:#x}", {})
        if not hmac.compare_digest(reservation.ticket, request.ticket):
            raise PermissionDenied("wrong transfer ticket", {"object_id": request.object_id})
        if sender != (reservation.from_node, reservation.from_fingerprint):
            raise PermissionDenied(
                f"this transfer is expected from {reservation.from_node!r} with another "
                f"certificate, not from {caller.node_id!r}",
                {"expected": reservation.from_node, "actual": caller.node_id},
            )
        upload = self._uploads.get(request.object_id)
        try:
            if upload is None:
                if request.offset != 0:
                    raise BadRequest("a delivery must start at byte 0", {})
                held = reservation.held
                # The expecting principal's quota holds the declared size before it is allocated.
                upload = Upload(request.dtype, request.shape, self.max_object_bytes, lambda size: _grown(held, size))
                self._uploads[request.object_id] = upload
            upload.write(request.dtype, request.shape, request.offset, request.data)
            if request.last:
                value = upload.complete()
                policy = _received_policy(request, reservation.owner)
                self.store.put(reservation.owner, request.object_id, value, policy, reservation.held)
                self._drop(request.object_id)
        except TesseraError as exc:
            self._drop(request.object_id)
            # A copy: the raised one's traceback keeps this frame, and the chunk's bytes, alive.
            self._failed[request.object_id] = (copy.copy(exc), self.clock() + RESERVATION_TTL)
            raise

    def _drop(self, object_id: ObjectId) -> None:
        """Forget a reservation and its partial object, and give their quota back."""
        reservation = self._pending.pop(object_id, None)
        if reservation is not None:
            reservation.held.release()
        upload = self._uploads.pop(object_id, None)
        if upload is not None:
            upload.abandon()

    def _expire(self, now: float) -> None:
        for object_id in [i for i, r in self._pending.items() if r.expires < now]:
            self._drop(object_id)
        for object_id in [i for i, (_, until) in self._failed.items() if until < now]:
            del self._failed[object_id]


def _grown(held: QuotaReservation, nbytes: int) -> QuotaReservation:
    held.grow(nbytes)
    return held


def _received_policy(request: DeliverRequest, owner: Principal) -> Policy | None:
    """The delivered object's policy on this node, the mover being ``owner`` here.

    The expecting client always guards its copy (its own restriction is
    added if the source sent none for it), so it can release the copy and
    results it computes from it stay its own.
    """
    if request.restrictions is None:
        return None
    sent = Policy.of(((g, frozenset(r)) for g, r in request.restrictions), request.shared)
    renamed = sent.renamed({MOVER: owner})
    if owner in renamed.guardians:
        return renamed
    return Policy.of((*renamed.restrictions, *Policy.own(owner).restrictions), renamed.shared)
