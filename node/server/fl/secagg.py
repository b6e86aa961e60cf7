"""Secure aggregation inside a node: the handlers of the ``secagg_*`` kinds.

Owns :class:`SecureAggregation`, a :class:`~node.server.session.SessionService`
serving both roles a node plays in a secure round (``PROTOCOL.md`` 19.4):

- aggregation party: ``secagg_setup`` (any authenticated principal opens a
  round for itself), ``secagg_share`` (only from a caller that proved a
  node identity, and only the node named for that owner index: else
  ``PERMISSION_DENIED``), ``secagg_sum`` (only the principal that opened
  the round; ``check`` reports missing shares, otherwise the sum over two or
  more owners is returned once and the round forgotten);
- data owner: ``secagg_split`` takes the update this principal's secure
  ``train`` left in :class:`~node.server.fl.secagg_mailbox.PendingUpdates`,
  splits it (:func:`node.fl.secure.split_update`: a seed for every other
  party, the explicit rest for this node's own party, which must be among
  the parties) and delivers each share over a pooled, pinned node-to-node
  link (:meth:`~node.server.transfers.TransferService.link`, node
  credentials); acknowledged once every party acknowledged.

Shares never enter the object store.  Must not import websockets.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any, Callable, Mapping, Sequence

import torch

from protocol.errors import BadRequest, PeerUnavailable
from protocol.ids import NodeId
from protocol.messages import AckReply, ErrorReply, MessageKind
from protocol.secagg import (
    AggregationParty,
    SecaggSetupRequest,
    SecaggShareRequest,
    SecaggSplitRequest,
    SecaggSumRequest,
)

from node.errors import NodeUnavailable
from node.fl.spec import MAX_MODEL_ELEMENTS
from node.fl.secure import SharePart, add_shares, shapes_of, share_tensors, split_update
from node.mpc.prg import check_seed
from peer.client.tracker import rebuild_error
from peer.security.trust import TrustError
from node.server.fl.secagg_mailbox import PendingUpdates, Sender, Share, ShareMailbox
from node.server.offload import offload, runs_inline
from node.server.session import Outcome, Session, Step, Work
from node.server.transfers import TransferService

__all__ = ["SecureAggregation", "SHARE_TIMEOUT"]

log = logging.getLogger("tessera.node.secagg")

SHARE_TIMEOUT = 60.0
"""Seconds an owner may take to reach every party and have its share acknowledged."""


class SecureAggregation:
    """The ``secagg_*`` handlers of one node."""

    def __init__(self, node_id: NodeId, fingerprint: str, transfers: TransferService,
                 pending: PendingUpdates) -> None:
        self.node_id = node_id
        self.fingerprint = fingerprint
        self.transfers = transfers
        self.pending = pending
        self.mailbox = ShareMailbox(store=transfers.store)

    def handlers(self, session: Session) -> Mapping[MessageKind, Callable[[Any], Any]]:
        return {
            MessageKind.SECAGG_SETUP: lambda r: self._setup(session, r),
            MessageKind.SECAGG_SHARE: lambda r: self._share(session, r),
            MessageKind.SECAGG_SUM: lambda r: self._sum(session, r),
            MessageKind.SECAGG_SPLIT: lambda r: self._split(session, r),
        }

    # -- party ------------------------------------------------------------------

    def _setup(self, session: Session, request: SecaggSetupRequest) -> Step:
        assert session.principal is not None
        self.mailbox.setup(session.principal, request.round, request.owners, request.timeout)
        return Outcome(request.ack())

    def _share(self, session: Session, request: SecaggShareRequest) -> Step:
        assert session.caller is not None
        sender = session.caller.node_sender("secagg_share")
        if _elements(request.shapes) > MAX_MODEL_ELEMENTS:
            raise BadRequest(f"a share describes more than {MAX_MODEL_ELEMENTS} elements", {})
        part = SharePart(None if request.seed is None else check_seed(request.seed), dict(request.values))
        self.mailbox.post(sender, request, part)
        return Outcome(request.ack())

    def _sum(self, session: Session, request: SecaggSumRequest) -> Step:
        assert session.principal is not None
        missing = self.mailbox.missing(session.principal, request.round, request.owners)
        if request.check or missing:
            return Outcome(request.reply(missing, {}))
        shares = self.mailbox.take(session.principal, request.round, request.owners)
        elements = sum(_elements(shapes) for shapes, _ in shares)
        if runs_inline(elements):
            return Outcome(request.reply((), _total(shares)))
        return Work(lambda: session.guarded(request, lambda: Outcome(request.reply((), _total(shares)))))

    # -- owner ------------------------------------------------------------------

    def _split(self, session: Session, request: SecaggSplitRequest) -> Step:
        assert session.principal is not None
        if session.transfers is None:
            raise BadRequest("this node has no network: it cannot share an update", {})
        parties = request.parties
        session.transfers.check_recipients(parties, "aggregation parties")
        mine = [i for i, p in enumerate(parties) if self.transfers.is_self(p.fingerprint)]
        if not mine:
            raise BadRequest(
                "this owner node must be one of the aggregation parties: it keeps a share of its own update",
                {"node": self.node_id},
            )
        update, min_owners = self.pending.take(session.principal, request.round, request.owner)
        return session.guarded_async(request, lambda: self._deliver(request, update, mine[0], min_owners))

    @property
    def own(self) -> Sender:
        return (self.node_id, self.fingerprint)

    async def _deliver(self, request: SecaggSplitRequest, update: dict[str, torch.Tensor], own: int,
                       min_owners: int) -> AckReply:
        parties = request.parties
        shapes = shapes_of(update)
        parts = await offload(_elements(shapes) * len(parties), split_update, update, len(parties), own)
        for index, (party, part) in enumerate(zip(parties, parts)):
            if index == own:
                share = SecaggShareRequest(request.id, request.round, request.owner, shapes, None, part.values)
                self.mailbox.post(self.own, share, part, min_owners)  # the dataset policy's K rides with it
        sends = [
            self._send(party, request, shapes, part)
            for index, (party, part) in enumerate(zip(parties, parts)) if index != own
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*sends), SHARE_TIMEOUT)
        except (TimeoutError, asyncio.TimeoutError):
            raise PeerUnavailable("an aggregation party did not acknowledge in time", {}) from None
        return request.ack()

    async def _send(self, party: AggregationParty, request: SecaggSplitRequest,
                    shapes: Mapping[str, tuple[int, ...]], part: SharePart) -> None:
        try:
            link = await self.transfers.link(party.url, party.fingerprint)
        except (NodeUnavailable, TrustError, OSError) as exc:
            log.info("cannot reach aggregation party %s at %s: %s", party.node, party.url, exc)
            raise PeerUnavailable(
                f"cannot reach aggregation party {party.node}: unreachable, or it did not present "
                "the expected certificate", {"node": party.node},
            ) from None
        try:
            reply = await link.call(
                lambda rid: SecaggShareRequest(rid, request.round, request.owner, shapes, part.seed, part.values)
            )
        except (NodeUnavailable, OSError) as exc:
            raise PeerUnavailable(f"aggregation party {party.node} went away: {exc}", {"node": party.node}) from None
        if isinstance(reply, ErrorReply):
            raise rebuild_error(reply, "secagg_share", party.node)
        if not isinstance(reply, AckReply):
            raise BadRequest(f"{party.node} answered secagg_share with {reply.KIND.value}", {})


def _elements(shapes: Mapping[str, Sequence[int]]) -> int:
    return sum(math.prod(shape) for shape in shapes.values())


def _total(shares: Sequence[Share]) -> dict[str, torch.Tensor]:
    """This party's summed share: every owner's share expanded or taken, added in the ring."""
    layout = list(shares[0][0].items())
    for shapes, _ in shares[1:]:
        if list(shapes.items()) != layout:
            raise BadRequest("the owners' shares describe different tensors or shapes", {})
    return add_shares([share_tensors(shapes, part) for shapes, part in shares])
