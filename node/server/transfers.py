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

The destination side (reservations and the deliveries filling them) is
:mod:`node.server.reservations`; this service answers ``expect`` and
``deliver`` through it, and owns the source side and the link pool, the one
way bytes leave this node for another.

Runs inside a node on its event loop; links are
:class:`~peer.client.async_channel.AsyncChannel`s.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import Callable, Protocol, Sequence
from urllib.parse import urlsplit

import torch

from protocol.errors import BadRequest, PeerUnavailable, PermissionDenied
from protocol.ids import NodeId
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
from .reservations import Reservations
from .store import ObjectStore, Principal
from .uploads import tensor_bytes

__all__ = ["TransferService", "IN_PROCESS_DOMAIN", "is_in_process_url"]

log = logging.getLogger("tessera.node.transfers")

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
        self.reservations = Reservations(store, clock, max_object_bytes)
        """The destination side: objects expected from other nodes (:mod:`node.server.reservations`)."""
        self._links: dict[tuple[str, str], AsyncChannel] = {}
        self._dialing: dict[tuple[str, str], asyncio.Lock] = {}

    # -- destination side (synchronous, on the loop) -------------------------

    def expect(self, caller: Caller, request: ExpectRequest) -> None:
        """Reserve ``request.object_id`` for ``caller`` (:meth:`Reservations.expect`)."""
        self.reservations.expect(caller, request)

    def deliver(self, caller: Caller, request: DeliverRequest) -> None:
        """Take one chunk of a delivery (:meth:`Reservations.deliver`)."""
        self.reservations.deliver(caller, request)

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
