"""Node-to-node transfers: reservations for incoming objects, pooled links to peers.

The three requests of :mod:`protocol.transfers` meet here.  ``expect``
reserves an object id for the asking client, to be filled only by the node
and certificate the client named, with a one-time ticket.  ``transfer``
makes this node dial the destination over a pooled, pinned TLS link on
which it proves its own identity (node proof), and ``deliver`` the object;
the destination checks node, certificate and ticket before storing the
object for the client.  The client never sees the bytes.

Only an object the client may read can leave (PermissionDenied before
anything is sent: otherwise a curious client would move a private dataset
to a node it controls), and its read policy travels with it: the last
``deliver`` chunk carries the restrictions, with the client written as
:data:`~node.server.policy.MOVER` because its principal on the destination
may differ; the destination substitutes the principal that made the
``expect``.

Runs inside a node on its event loop; links are
:class:`~peer.client.async_channel.AsyncChannel`s.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence
from urllib.parse import urlsplit

import torch

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
from protocol.messages import (
    AckReply,
    DeliverRequest,
    ErrorReply,
    ExpectRequest,
    Reply,
    TransferRequest,
)
from protocol.streams import CHUNK_BYTES
from protocol.tensors import DTYPE_NAMES

from ..errors import NodeUnavailable
from peer.client.async_channel import AsyncChannel
from peer.client.endpoint import Credentials, Endpoint
from peer.client.tracker import rebuild_error
from peer.security.trust import TrustError, TrustPolicy
from peer.server.auth import Caller
from .policy import MOVER, Policy
from .quota import Hold, Reservation as QuotaReservation
from .store import ObjectStore, Principal
from .uploads import Upload, tensor_bytes

__all__ = [
    "Reservation", "TransferService", "RESERVATION_TTL", "MAX_PENDING_PER_PRINCIPAL",
    "IN_PROCESS_DOMAIN", "is_in_process_url",
]

log = logging.getLogger("tessera.node.transfers")

RESERVATION_TTL = 120.0
"""Seconds an ``expect`` reservation waits for its delivery."""

MAX_PENDING_PER_PRINCIPAL = 1024
"""Open reservations one principal may hold."""

MAX_LINKS = 64
"""Open node-to-node links kept in the pool (least recently used closed first)."""

TRANSFER_TIMEOUT = 300.0
"""Seconds a transfer may take end to end before it fails."""


class Recipient(Protocol):
    """A node as a client named it for a multi-party request: id, URL and pinned fingerprint."""

    @property
    def node(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def fingerprint(self) -> str: ...


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


class TransferService:
    """Reservations for incoming objects and links for outgoing ones."""

    def __init__(
        self,
        node_id: NodeId,
        store: ObjectStore,
        credentials: Credentials,
        max_message_bytes: int,
        clock: Callable[[], float] = time.monotonic,
        max_object_bytes: int = 4 * 1024**3,
        *,
        network: bytes | None = None,
        fingerprint: str | None = None,
        dial: Callable[[str, str], AsyncChannel] | None = None,
    ) -> None:
        self.node_id = node_id
        self.dial = dial
        """Set for an in-process node: makes its links to in-process peers (and it reaches no other)."""
        self.store = store
        self.credentials = credentials
        self.network = network
        """The network key every peer must prove it holds before it is sent anything."""
        self.fingerprint = fingerprint
        """This node's own certificate fingerprint: how a party that stands for it is recognised."""
        self.max_message_bytes = max_message_bytes
        self.clock = clock
        self.max_object_bytes = max_object_bytes
        self._pending: dict[ObjectId, Reservation] = {}
        self._uploads: dict[ObjectId, Upload] = {}
        self._failed: dict[ObjectId, tuple[TesseraError, float]] = {}
        """Why a delivery failed, so its later chunks report the cause."""
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

    # -- source side (async) ----------------------------------------------------

    def check_transfer(self, principal: Principal, request: TransferRequest) -> None:
        """Refuse at once what cannot succeed: unknown or unreadable object, not owner, no TLS."""
        stored = self.store.read(principal, request.object_id)
        if request.delete_source and stored.owner != principal:
            raise PermissionDenied("only the owner may move an object", {})
        self.check_url(request.to_url, "node-to-node transfers")
        self.require_network()

    async def send(self, principal: Principal, request: TransferRequest) -> None:
        """Deliver the object and its policy to the destination and wait for its acknowledgement."""
        stored = self.store.read(principal, request.object_id)
        policy = stored.policy.renamed({principal: MOVER})
        await self.deliver_value(request, stored.value, policy)
        if request.delete_source:
            self.store.delete(principal, (request.object_id,))
        log.info("sent %#x to %s as %#x", request.object_id, request.to_node, request.dest_object_id)

    async def deliver_value(self, request: TransferRequest, value: torch.Tensor, policy: Policy) -> None:
        """Deliver ``value`` with ``policy`` (the mover written as MOVER) to ``request``'s reservation.

        Also used by secret sharing, whose owner delivers shares it made
        rather than a stored object (``request.object_id`` is then unused).
        """
        try:
            link = await self.link(request.to_url, request.to_fingerprint)
            reply = await asyncio.wait_for(
                self._deliver_chunks(link, request, value.contiguous(), policy), TRANSFER_TIMEOUT
            )
        except (NodeUnavailable, TrustError, asyncio.TimeoutError, TimeoutError) as exc:
            # The reason stays in our log: echoing it would let a client use
            # transfers to scan the node's network and fingerprint services.
            log.info("delivery to %s at %s failed: %s", request.to_node, request.to_url, exc)
            raise PeerUnavailable(
                f"cannot deliver to {request.to_node} at {request.to_url}: unreachable, "
                "or it did not present the expected certificate and prove network membership",
                {"node": request.to_node},
            ) from None
        if isinstance(reply, ErrorReply):
            raise rebuild_error(reply, f"deliver to {request.to_node}", request.to_url)
        if not isinstance(reply, AckReply):
            raise BadRequest(f"{request.to_node} answered deliver with {reply.KIND.value}", {})

    async def _deliver_chunks(
        self, link: AsyncChannel, request: TransferRequest, value: torch.Tensor, policy: Policy
    ) -> Reply:
        """Post every chunk but the last, then wait for the last one's answer.

        The link keeps their order; the destination refuses the last chunk
        if any earlier one failed, so its answer speaks for the transfer.
        """
        data = tensor_bytes(value)
        dtype, shape = DTYPE_NAMES[value.dtype], tuple(value.shape)
        total = data.numel()
        offsets = list(range(0, total, CHUNK_BYTES)) or [0]
        for offset in offsets[:-1]:
            link.post(
                lambda rid: DeliverRequest(
                    rid, request.dest_object_id, request.ticket, dtype, shape,
                    offset, data[offset : offset + CHUNK_BYTES], False,
                ),
                f"deliver chunk at {offset}",
            )
            await link.drained(keep=2)
        last = offsets[-1]
        restrictions = tuple((g, tuple(sorted(r))) for g, r in policy.restrictions)
        reply = await link.call(
            lambda rid: DeliverRequest(
                rid, request.dest_object_id, request.ticket, dtype, shape,
                last, data[last:], True, restrictions, policy.shared,
            )
        )
        # The last chunk's answer speaks for the transfer; failures of earlier
        # chunks must not pile up on this pooled link (nobody else reads them).
        link.take_failure()
        return reply

    def require_network(self) -> None:
        """PermissionDenied if this node holds no network token: then no peer can prove membership."""
        if self.network is None:
            raise PermissionDenied(
                f"this node ({self.node_id}) is in no network (no network token): "
                "it sends nothing to other nodes",
                {},
            )

    def check_recipients(self, recipients: Sequence[Recipient], what: str) -> None:
        """Refuse, before anything is sent, a set of nodes this node cannot send ``what`` to.

        Distinct node ids and distinct certificates (BadRequest), TLS only
        (BadRequest), and this node in a network (PermissionDenied): the
        checks every multi-party sending (shares, material, updates) shares.
        """
        if len({r.node for r in recipients}) != len(recipients) or len(
            {r.fingerprint for r in recipients}
        ) != len(recipients):
            raise BadRequest(f"the {what} must be distinct nodes (ids and certificates)", {})
        for r in recipients:
            self.check_url(r.url, f"the {what}")
        self.require_network()

    def check_url(self, url: str, what: str) -> None:
        """BadRequest unless this node can reach ``url``: TLS for a networked node, in-process for an in-process one.

        In-process URLs are recognised by their reserved host (see
        :mod:`node.server.inprocess`); a networked node could not resolve
        them, and an in-process node has no sockets to reach anything else.
        """
        in_process = is_in_process_url(url)
        if self.dial is not None and not in_process:
            raise BadRequest(
                f"{what}: this node ({self.node_id}) runs in a user's process and reaches "
                "in-process nodes only, not a networked node",
                {},
            )
        if self.dial is None and in_process:
            raise BadRequest(f"{what}: an in-process node cannot be reached over the network", {})
        if not url.startswith("wss://"):
            raise BadRequest(f"{what} are reached over TLS only (wss:// URLs)", {})

    def is_self(self, fingerprint: str) -> bool:
        """Whether a peer presenting ``fingerprint`` is this very node.

        By certificate, never by name: a client may call any address
        ``alice``, but only alice's key completes a TLS handshake pinned to
        alice's fingerprint.
        """
        return self.fingerprint is not None and hmac.compare_digest(fingerprint, self.fingerprint)

    async def link(self, url: str, fingerprint: str) -> AsyncChannel:
        """A pooled, opened link to the node at ``url`` presenting ``fingerprint``.

        The one way bytes leave this node for another node (transfers,
        shares, material, openings, secure-aggregation shares, trainer
        requests): the link pins ``fingerprint`` and, before anything is
        sent on it, the peer proves it holds the network token
        (:class:`~peer.security.trust.NotAMember` otherwise).  A node in no
        network sends nothing to other nodes.  Failed dials are not kept,
        and the pool is bounded.  Raises NodeUnavailable or TrustError when
        the peer cannot be reached as pinned or is not a member.
        """
        self.require_network()
        key = (url, fingerprint)
        lock = self._dialing.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                link = self._links.get(key)
                if link is None and self.dial is not None:
                    link = self.dial(url, fingerprint)  # pinned like a certificate
                elif link is None:
                    endpoint = Endpoint(
                        url,
                        TrustPolicy(fingerprint=fingerprint),
                        self.node_id,
                        self.credentials,
                        self.max_message_bytes,
                        roles=("node",),
                        network=self.network,
                    )
                    link = AsyncChannel(endpoint)
                await link.open()
                self._links.pop(key, None)
                self._links[key] = link  # most recently used last
        except BaseException:
            self._links.pop(key, None)
            if not lock.locked():
                self._dialing.pop(key, None)
            raise
        await self._evict()
        return link

    def pooled(self, url: str, fingerprint: str) -> AsyncChannel | None:
        """The pooled link to ``url`` if it is connected now (no dial, no wait), else None.

        The fast path of :meth:`link` for callers on a latency-critical path:
        no lock, no task, no event-loop round.  The link becomes the most
        recently used.
        """
        key = (url, fingerprint)
        link = self._links.get(key)
        if link is None or not link.connected:
            return None
        del self._links[key]
        self._links[key] = link
        return link

    async def _evict(self) -> None:
        """Close the least recently used links beyond MAX_LINKS."""
        while len(self._links) > MAX_LINKS:
            key = next(iter(self._links))
            link = self._links.pop(key)
            self._dialing.pop(key, None)
            await link.aclose()

    async def close(self) -> None:
        links, self._links = list(self._links.values()), {}
        for link in links:
            await link.aclose()


IN_PROCESS_DOMAIN = "in-process.invalid"
"""The host suffix of in-process node URLs (:mod:`node.server.inprocess`); ``.invalid`` never resolves."""


def is_in_process_url(url: str) -> bool:
    """Whether ``url`` names an in-process node (its host is under :data:`IN_PROCESS_DOMAIN`)."""
    host = (urlsplit(url).hostname or "").lower()
    return host.endswith("." + IN_PROCESS_DOMAIN)


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
