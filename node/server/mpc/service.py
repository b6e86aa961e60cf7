"""Secret sharing inside a node: the handlers of the ``mpc_*`` kinds.

Owns the node's :class:`~node.server.mpc.mailbox.Mailbox` and serves every
role a node may play for a client's secret computation:

- data owner (``mpc_split``): encode a stored object, split it into
  additive shares (:func:`node.mpc.split`) and deliver each over a pinned
  node-to-node link into the reservation the client made on its party,
  with the source object's read policy (a share's policy is its source's);
- crypto provider (``mpc_deal``): look the batch's
  :class:`~node.mpc.MaterialProvider` up by the kind of its specs in the
  :class:`~node.mpc.Providers` the runtime injected (the Beaver
  :class:`~node.mpc.Dealer`, the FSS and binary dealers of comparisons),
  send each party the seed the provider drew
  for it at once, then compute the dependent tensors off the loop and send
  each to its party; the provider sees shapes only.  The deal is answered
  once every party processed its letters (a ``sync`` barrier on each link),
  failing with a party's refusal (e.g. a full mailbox): so a client's
  ``sync`` with the provider means the material is at the parties, which
  material dealt ahead of use (``node.preprocess``) relies on;
- party (``mpc_step``): :class:`~node.server.mpc.party.PartyRunner`;
- receiver of node-to-node letters (``mpc_material``, ``mpc_open``): only
  from a caller that proved a node identity (a user is refused
  ``PERMISSION_DENIED``), into the mailbox, which checks them against the
  sender the client named when the step takes them.

Material is never stored as an object, so no ``get`` or ``list`` can reach
it.  Must not import websockets.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Mapping, Sequence

from protocol.errors import BadRequest, PeerUnavailable, PermissionDenied
from protocol.ids import NodeId, RequestId
from protocol.messages import MessageKind, Reply, SyncReply, SyncRequest, TransferRequest
from protocol.mpc import (
    COMPARE_ROUND_BASE,
    MpcDealRequest,
    MpcMaterialRequest,
    MpcOpenRequest,
    MpcSplitRequest,
    MpcStepRequest,
    OpenRound,
)
from protocol.tensors import DTYPE_NAMES

from node.mpc import Dealer, MaterialProvider, Providers, encoder_for, split
from node.mpc.a2b import BinaryDealer
from node.mpc.fss import FssDealer
from peer.client.async_channel import AsyncChannel
from peer.server.auth import Caller
from node.server.mpc.mailbox import CompareRound, Mailbox, Slot
from node.server.mpc.party import PartyRunner
from node.server.mpc.specs import check_parties, material_specs
from node.server.offload import offload
from node.server.policy import MOVER
from node.server.session import Outcome, Session
from node.server.store import ObjectStore
from node.server.transfers import TransferService

__all__ = ["MpcService", "default_providers"]

log = logging.getLogger("tessera.node.mpc")

DEAL_TIMEOUT = 120.0
"""Seconds a crypto provider may take to reach the parties and send one deal."""


def default_providers() -> Providers:
    """What a node deals as a crypto provider unless told otherwise: Beaver, FSS and binary material."""
    return Providers(Dealer(), FssDealer(), BinaryDealer())


class MpcService:
    """The ``mpc_*`` handlers of one node."""

    def __init__(
        self,
        node_id: NodeId,
        store: ObjectStore,
        transfers: TransferService,
        providers: Providers,
        trusted_providers: frozenset[str] = frozenset(),
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.transfers = transfers
        self.providers = providers
        """The material this node deals as a crypto provider, by kind."""
        self.mailbox = Mailbox()
        self.party = PartyRunner(node_id, store, self.mailbox, transfers, trusted_providers)

    def handlers(self, session: Session) -> Mapping[MessageKind, Callable[[Any], Any]]:
        """Handlers bound to one connection's session, for its kind-indexed table."""
        return {
            MessageKind.MPC_SPLIT: lambda r: self._split(session, r),
            MessageKind.MPC_DEAL: lambda r: self._deal(session, r),
            MessageKind.MPC_STEP: lambda r: self._step(session, r),
            MessageKind.MPC_MATERIAL: lambda r: self._material(session, r),
            MessageKind.MPC_OPEN: lambda r: self._open(session, r),
        }

    # -- node-to-node letters (synchronous, on the loop) --------------------

    def _material(self, session: Session, request: MpcMaterialRequest) -> Any:
        assert session.caller is not None
        sender = session.caller.node_sender("mpc_material")
        slot = Slot.SEED if request.seed is not None else Slot.EXPLICIT
        nbytes = sum(t.numel() * 8 for t in request.explicit)
        self.mailbox.post((request.session, slot, 0), sender, request, nbytes)
        return Outcome()

    def _open(self, session: Session, request: MpcOpenRequest) -> Any:
        assert session.caller is not None
        sender = session.caller.node_sender("mpc_open")
        if request.abort is not None:
            self.mailbox.post((request.session, Slot.ABORT, request.party), sender, request.abort, 0)
            return Outcome()
        slot: Slot | CompareRound
        if request.round == OpenRound.BEAVER:
            slot = Slot.OPEN_BEAVER
        elif request.round == OpenRound.TRUNCATION:
            slot = Slot.OPEN_TRUNCATION
        else:
            slot = CompareRound(request.round - COMPARE_ROUND_BASE)
        nbytes = sum(t.numel() * 8 for t in request.values)
        self.mailbox.post((request.session, slot, request.party), sender, request, nbytes)
        return Outcome()

    # -- client requests ------------------------------------------------------

    def _step(self, session: Session, request: MpcStepRequest) -> Any:
        caller = _caller(session)
        plan = self.party.plan(caller, request)  # refusals before anything starts
        return session.guarded_async(request, lambda: self.party.run(plan))

    def _deal(self, session: Session, request: MpcDealRequest) -> Any:
        _caller(session)
        check_parties(request.specs, len(request.parties))  # BadRequest: fss for other than 2
        specs = material_specs(request.specs)  # MaterialError for shapes that do not fit
        provider = self.providers.for_specs(specs)  # MaterialError for a kind not dealt here
        self.transfers.check_recipients(request.parties, "parties of a deal")
        return session.guarded_async(request, lambda: self._send_material(request, provider, specs))

    def _split(self, session: Session, request: MpcSplitRequest) -> Any:
        caller = _caller(session)
        parties = request.parties
        self.transfers.check_recipients(parties, "parties of a sharing")
        stored = self.store.get(caller.principal, request.object_id)
        encoder = encoder_for(stored.value, request.precision)  # UnsupportedDtype before sending
        if not stored.readable_by(caller.principal) and not any(self.transfers.is_self(t.fingerprint) for t in parties):
            # Otherwise a client could split a private dataset between nodes it
            # controls and add the shares up: with this node a party, one share
            # always stays here under the data's own policy.  "This node" is
            # recognised by its certificate: a party merely *named* like this
            # node, at another address with another key, is somebody else.
            raise PermissionDenied(
                f"object {request.object_id:#x} is private: to share it, make this node "
                f"({self.node_id}, with its own certificate) one of the parties",
                {"object_id": request.object_id},
            )

        async def run() -> Reply:
            value = stored.value
            shares = await offload(value.numel(), lambda: split(encoder.encode(value), len(request.parties)))
            policy = stored.policy.renamed({caller.principal: MOVER})
            await asyncio.gather(
                *(
                    self.transfers.deliver_value(
                        TransferRequest(
                            RequestId(0), request.object_id, t.node, t.url, t.fingerprint,
                            t.object_id, t.ticket, False,
                        ),
                        share,
                        policy,
                    )
                    for t, share in zip(request.parties, shares)
                )
            )
            return request.reply(DTYPE_NAMES[value.dtype], tuple(value.shape), encoder.precision_bits)

        return session.guarded_async(request, run)

    async def _send_material(
        self, request: MpcDealRequest, provider: MaterialProvider, specs: Sequence[Any]
    ) -> None:
        """The provider's two phases: seeds to every party first, then the dependent tensors; then a barrier."""
        n = len(request.parties)
        seeds = provider.seeds(n)
        pooled = [self.transfers.pooled(p.url, p.fingerprint) for p in request.parties]
        links: list[AsyncChannel | BaseException]
        if all(link is not None for link in pooled):
            links = [link for link in pooled if link is not None]  # no dial, no task
        else:
            dials = [
                asyncio.wait_for(self.transfers.link(p.url, p.fingerprint), DEAL_TIMEOUT)
                for p in request.parties
            ]
            links = list(await asyncio.gather(*dials, return_exceptions=True))
        # Seeds go to every party that can be reached, so a party that cannot
        # reach an unreachable peer fails fast instead of waiting for its seed.
        for index, link in enumerate(links):
            if isinstance(link, BaseException):
                continue
            link.take_failure()  # answers to earlier posted letters: nobody waits for them
            link.post(
                lambda rid: MpcMaterialRequest(rid, request.session, index, n, request.specs, seeds[index]),
                "mpc_material seed",
            )
        reached: list[AsyncChannel] = []
        for index, link in enumerate(links):
            if isinstance(link, BaseException):
                party = request.parties[index]
                log.info("crypto provider cannot reach party %d (%s): %s", index, party.node, link)
                raise PeerUnavailable(
                    f"the crypto provider cannot reach party {index} ({party.node})",
                    {"node": party.node, "party": index},
                )
            reached.append(link)
        dependent = await offload(provider.cost(specs), provider.dependent, specs, seeds)
        for index, explicit in dependent.items():
            target = reached[index]
            target.post(
                lambda rid: MpcMaterialRequest(rid, request.session, index, n, request.specs, None, explicit),
                "mpc_material explicit",
            )
        # Letters are posted (a party answers only refusals); a barrier on each
        # link is answered after the party processed every letter before it.
        # A refusal found then fails this deal (on a link shared with other
        # deals it may be another's letter, whose party refused this provider too).
        barriers = [link.submit(lambda rid: SyncRequest(rid)) for link in reached]
        for index, (link, barrier) in enumerate(zip(reached, barriers)):
            reply = await asyncio.wait_for(barrier, DEAL_TIMEOUT)
            link.settle(reply, SyncReply, f"mpc_material to party {index} ({request.parties[index].node})")


def _caller(session: Session) -> Caller:
    assert session.caller is not None
    if session.transfers is None:
        raise BadRequest("this node has no network: it cannot take part in secret sharing", {})
    return session.caller
