"""Node-to-node transfers: reservations for incoming objects, pooled links to peers.

The three requests of :mod:`protocol.transfers` meet here.  ``expect``
reserves an object id for the asking client, to be filled only by the node
and certificate the client named, with a one-time ticket.  ``transfer``
makes this node dial the destination over a pooled, pinned TLS link on
which it proves its own identity (node proof), and ``deliver`` the object;
the destination checks node, certificate and ticket before storing the
object for the client.  The client never sees the bytes.

Runs inside a node on its event loop; links are
:class:`~node.transport.channel.AsyncChannel`s.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Callable

from protocol.errors import (
    AlreadyExists,
    BadRequest,
    NotFound,
    PeerUnavailable,
    PermissionDenied,
    QuotaExceeded,
    TesseraError,
)
from protocol.ids import NodeId, ObjectId
from protocol.messages import AckReply, DeliverRequest, ErrorReply, ExpectRequest, TransferRequest

from ..errors import NodeUnavailable
from ..transport.channel import AsyncChannel, Credentials, Endpoint
from ..transport.tracker import RequestTracker, rebuild_error
from ..transport.trust import TrustError, TrustPolicy
from .auth import Caller
from .store import ObjectStore, Principal

__all__ = ["Reservation", "TransferService", "RESERVATION_TTL", "MAX_PENDING_PER_PRINCIPAL"]

log = logging.getLogger("tessera.node.transfers")

RESERVATION_TTL = 120.0
"""Seconds an ``expect`` reservation waits for its delivery."""

MAX_PENDING_PER_PRINCIPAL = 1024
"""Open reservations one principal may hold."""

TRANSFER_TIMEOUT = 300.0
"""Seconds a transfer may take end to end before it fails."""


@dataclass(frozen=True, slots=True)
class Reservation:
    """An object id promised to ``owner``, to be delivered by one node with one ticket."""

    object_id: ObjectId
    owner: Principal
    from_node: NodeId
    from_fingerprint: str
    ticket: bytes
    expires: float


class TransferService:
    """Reservations for incoming objects and links for outgoing ones."""

    def __init__(
        self,
        node_id: NodeId,
        store: ObjectStore,
        credentials: Credentials,
        max_message_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.credentials = credentials
        self.max_message_bytes = max_message_bytes
        self.clock = clock
        self._pending: dict[ObjectId, Reservation] = {}
        self._links: dict[tuple[str, str], AsyncChannel] = {}
        self._dialing: dict[tuple[str, str], asyncio.Lock] = {}

    # -- destination side (synchronous, on the loop) -------------------------

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
        )

    def deliver(self, caller: Caller, request: DeliverRequest) -> None:
        """Store a delivered object for the client that reserved it, if all checks hold."""
        if caller.node_id is None or caller.fingerprint is None:
            raise PermissionDenied("only a node that proved its identity may deliver", {})
        self._expire(self.clock())
        reservation = self._pending.get(request.object_id)
        if reservation is None:
            raise NotFound(f"no transfer is expected for object {request.object_id:#x}", {})
        if not hmac.compare_digest(reservation.ticket, request.ticket):
            raise PermissionDenied("wrong transfer ticket", {"object_id": request.object_id})
        if (caller.node_id, caller.fingerprint) != (
            reservation.from_node,
            reservation.from_fingerprint,
        ):
            raise PermissionDenied(
                f"this transfer is expected from {reservation.from_node!r} with another "
                f"certificate, not from {caller.node_id!r}",
                {"expected": reservation.from_node, "actual": caller.node_id},
            )
        del self._pending[request.object_id]
        self.store.put(reservation.owner, request.object_id, request.value)

    def _expire(self, now: float) -> None:
        for object_id in [i for i, r in self._pending.items() if r.expires < now]:
            del self._pending[object_id]

    # -- source side (async) ----------------------------------------------------

    def check_transfer(self, principal: Principal, request: TransferRequest) -> None:
        """Refuse at once what cannot succeed: unknown object, not owner, no TLS."""
        stored = self.store.get(principal, request.object_id)
        if request.delete_source and stored.owner != principal:
            raise PermissionDenied("only the owner may move an object", {})
        if not request.to_url.startswith("wss://"):
            raise BadRequest("node-to-node transfers need a TLS (wss://) destination", {})

    async def send(self, principal: Principal, request: TransferRequest) -> None:
        """Deliver the object to the destination and wait for its acknowledgement."""
        value = self.store.get(principal, request.object_id).value
        try:
            link = await self._link(request.to_url, request.to_fingerprint)
            deliver = DeliverRequest(
                link.tracker.next_id(), request.dest_object_id, request.ticket, value
            )
            reply = await asyncio.wait_for(link.call(deliver), TRANSFER_TIMEOUT)
        except (NodeUnavailable, TrustError, asyncio.TimeoutError, TimeoutError) as exc:
            reason = exc.message if isinstance(exc, TesseraError) else "timed out"
            raise PeerUnavailable(
                f"cannot deliver to {request.to_node} at {request.to_url}: {reason}",
                {"node": request.to_node},
            ) from None
        if isinstance(reply, ErrorReply):
            raise rebuild_error(reply, f"deliver to {request.to_node}", request.to_url)
        if not isinstance(reply, AckReply):
            raise BadRequest(f"{request.to_node} answered deliver with {reply.KIND.value}", {})
        if request.delete_source:
            self.store.delete(principal, (request.object_id,))
        log.info("sent %#x to %s as %#x", request.object_id, request.to_node, request.dest_object_id)

    async def _link(self, url: str, fingerprint: str) -> AsyncChannel:
        key = (url, fingerprint)
        lock = self._dialing.setdefault(key, asyncio.Lock())
        async with lock:
            link = self._links.get(key)
            if link is None:
                endpoint = Endpoint(
                    url,
                    TrustPolicy(fingerprint=fingerprint),
                    self.node_id,
                    self.credentials,
                    self.max_message_bytes,
                    roles=("node",),
                )
                link = AsyncChannel(endpoint, RequestTracker(url))
                self._links[key] = link
            await link.open()
            return link

    async def close(self) -> None:
        links, self._links = list(self._links.values()), {}
        for link in links:
            await link.aclose()
