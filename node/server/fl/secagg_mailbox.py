"""What secure aggregation keeps on a node: owners' pending updates and parties' shares.

Two bounded, expiring stores, neither of them the object store (so no
``get``, ``list`` or ``transfer`` can ever reach what they hold):

- :class:`PendingUpdates` (data owner side): the encoded, sample-weighted
  update a secure ``train`` produced, keyed by (principal, round id, owner
  index), until that principal's ``secagg_split`` takes it.  Each holds its
  bytes in the quota of the principal that asked for the secure train (a
  :class:`~node.server.quota.Reservation`) and at most
  :data:`MAX_PENDING_UPDATES_PER_PRINCIPAL` wait per principal: no
  node-wide table one principal could fill to lock out another.
  Thread-safe: ``train`` runs in a worker thread.
- :class:`ShareMailbox` (party side): rounds opened by ``secagg_setup``
  (bound to the principal that opened them, naming the node and
  certificate allowed to send each owner's share) and the shares that
  arrived for them, keyed by (round id, owner index); their bytes count in
  the quota of the principal that opened the round.  A share from any
  other node than the one named for its owner index is refused
  ``PERMISSION_DENIED``.  :meth:`ShareMailbox.take` hands over the shares of
  two or more owners once, then the round is closed: its shares are
  forgotten and later shares or sums for it are refused.

Runs on the node's event loop (the mailbox) or any thread (pending
updates); must not import asyncio or websockets.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import torch

from protocol.errors import AlreadyExists, BadRequest, NotFound, PermissionDenied, QuotaExceeded
from protocol.ids import NodeId
from protocol.secagg import SecaggShareRequest, ShareSender

from node.fl.policy import PolicyRefused
from node.fl.secure import SharePart
from peer.server.redaction import note_restricted
from node.server.store import Hold, ObjectStore, Principal, Reservation

__all__ = [
    "PendingUpdates",
    "ShareMailbox",
    "Sender",
    "PENDING_TTL",
    "MAX_PENDING_UPDATES_PER_PRINCIPAL",
    "MAX_OPEN_ROUNDS",
    "MAX_OPEN_ROUNDS_PER_PRINCIPAL",
    "MAX_SHARE_BYTES_PER_SENDER",
    "CLOSED_TTL",
]

PENDING_TTL = 3600.0
"""Seconds an owner keeps a secure round's update waiting for its ``secagg_split``."""

MAX_PENDING_UPDATES_PER_PRINCIPAL = 64
"""Updates one owner node keeps waiting at once for one principal (their bytes count in its quota)."""

MAX_OPEN_ROUNDS = 256
"""Rounds one party node keeps open at once (all principals)."""

MAX_OPEN_ROUNDS_PER_PRINCIPAL = 64

MAX_SHARE_BYTES_PER_SENDER = 2 * 1024**3
"""Explicit share bytes one sending node may have waiting at one party (2 GiB)."""

CLOSED_TTL = 600.0
"""Seconds a summed (closed) round id is remembered: late shares and second sums are refused."""

Sender = Tuple[NodeId, str]
"""A node id and the fingerprint of the certificate it proved it holds."""

Ring = Dict[str, torch.Tensor]
Share = Tuple[Mapping[str, Tuple[int, ...]], SharePart]


def _check_owners(owners: Sequence[int]) -> None:
    if len(owners) < 2:
        raise BadRequest(
            f"a party sums the shares of at least 2 owners, not {len(owners)}: the sum of one is its update",
            {"owners": len(owners)},
        )


def _check_policy(owners: Sequence[int], state: _Round) -> None:
    """A round holding this node's own share is summed only over as many owners as its policy asks."""
    if len(owners) < state.min_owners:
        raise PolicyRefused.for_secure_round(state.min_owners, len(owners))


class PendingUpdates:
    """Encoded updates waiting for their owner's ``secagg_split``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._updates: Dict[Tuple[Principal, bytes, int], Tuple[Ring, float, Reservation, int]] = {}

    def put(self, principal: Principal, round_id: bytes, owner: int, update: Ring, held: Reservation,
            min_owners: int = 2) -> None:
        """Keep ``update`` for ``principal``'s ``secagg_split``, with ``held``, its bytes in that
        principal's quota, released when it is taken or expires; refused, the caller keeps ``held``.
        ``min_owners``: the dataset's policy sums it only in rounds of at least that many owners."""
        now = self.clock()
        with self._lock:
            for key in [k for k, (_, until, _, _) in self._updates.items() if until < now]:
                self._updates.pop(key)[2].release()
            key = (principal, round_id, owner)
            if key in self._updates:
                raise AlreadyExists("this secure round already has an update for that owner index here", {})
            mine = sum(1 for k in self._updates if k[0] == principal)
            if mine >= MAX_PENDING_UPDATES_PER_PRINCIPAL:
                raise QuotaExceeded(
                    f"at most {MAX_PENDING_UPDATES_PER_PRINCIPAL} secure-aggregation updates per principal "
                    f"may wait on a node ({mine} waiting)",
                    {"limit": MAX_PENDING_UPDATES_PER_PRINCIPAL},
                )
            self._updates[key] = (update, now + PENDING_TTL, held, min_owners)

    def take(self, principal: Principal, round_id: bytes, owner: int) -> Tuple[Ring, int]:
        """The waiting update and the fewest owners a round summing it must have, in one step
        (read apart, a ``train`` finishing in between could pair the update with another K)."""
        with self._lock:
            found = self._updates.pop((principal, round_id, owner), None)
        if found is not None:
            found[2].release()
        if found is None or found[1] < self.clock():
            raise NotFound(f"no update of owner {owner} of that secure round is waiting here", {"owner": owner})
        note_restricted()  # an update trained on a private dataset: its sharing's errors are withheld
        return found[0], found[3]

    def __len__(self) -> int:
        return len(self._updates)


@dataclass(eq=False)
class _Round:
    principal: Principal
    senders: Dict[int, Sender]
    expires: float
    shares: Dict[int, Tuple[Share, Sender, int]] = field(default_factory=dict)
    min_owners: int = 2
    """Raised by this node's own shares: their datasets' policies sum them only with this many owners."""
    held: Reservation | None = None
    """The shares' bytes, in the quota of the principal that opened the round."""


class ShareMailbox:
    """Open secure rounds and their shares, on one aggregation party."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, store: ObjectStore | None = None) -> None:
        self.clock = clock
        self.store = store
        """Where the shares of a round are counted against the principal that opened it (None: not counted)."""
        self._rounds: Dict[bytes, _Round] = {}
        self._closed: Dict[bytes, float] = {}
        self._bytes: Dict[NodeId, int] = {}

    def setup(self, principal: Principal, round_id: bytes, senders: Sequence[ShareSender], keep: float) -> None:
        """Open ``round_id`` for ``principal``; refused if the id was ever used here."""
        now = self.clock()
        self._expire(now)
        if round_id in self._rounds or round_id in self._closed:
            raise AlreadyExists("this secure round id was already used here", {})
        mine = sum(1 for r in self._rounds.values() if r.principal == principal)
        if len(self._rounds) >= MAX_OPEN_ROUNDS or mine >= MAX_OPEN_ROUNDS_PER_PRINCIPAL:
            raise QuotaExceeded(
                f"at most {MAX_OPEN_ROUNDS} secure rounds ({MAX_OPEN_ROUNDS_PER_PRINCIPAL} per principal) "
                "may be open on a node",
                {"limit": MAX_OPEN_ROUNDS_PER_PRINCIPAL},
            )
        named: Dict[int, Sender] = {}
        for sender in senders:
            if sender.owner in named:
                raise BadRequest(f"owner {sender.owner} is named twice", {"owner": sender.owner})
            named[sender.owner] = (sender.node, sender.fingerprint)
        self._rounds[round_id] = _Round(principal, named, now + keep)

    def post(self, sender: Sender, share: SecaggShareRequest, part: SharePart, min_owners: int = 2) -> None:
        """A share arrived from ``sender`` (a proven node, or this node itself).

        ``min_owners`` (this node's own shares only): the round is summed only
        over at least that many owners, as the share's dataset policy says.
        """
        self._expire(self.clock())
        state = self._rounds.get(share.round)
        if state is None:
            if share.round in self._closed:
                raise BadRequest("that secure round was already summed here", {})
            raise NotFound("no secure round with that id is open here", {})
        expected = state.senders.get(share.owner)
        if expected is None:
            raise PermissionDenied(f"owner {share.owner} is not part of that secure round", {"owner": share.owner})
        if expected != sender:
            raise PermissionDenied(
                f"the share of owner {share.owner} is expected from {expected[0]!r} with its certificate, "
                f"not from {sender[0]!r}",
                {"expected": expected[0], "actual": sender[0]},
            )
        if share.owner in state.shares:
            raise AlreadyExists(f"the share of owner {share.owner} is already here", {"owner": share.owner})
        nbytes = 8 * sum(math.prod(shape) for shape in share.shapes.values())  # seeds expand to this much
        used = self._bytes.get(sender[0], 0)
        if used + nbytes > MAX_SHARE_BYTES_PER_SENDER:
            raise QuotaExceeded(
                f"{sender[0]} already has {used} bytes of shares waiting here (limit {MAX_SHARE_BYTES_PER_SENDER})",
                {"limit": MAX_SHARE_BYTES_PER_SENDER, "used": used, "size": nbytes},
            )
        if self.store is not None:  # the round's opener made this node hold them
            if state.held is None:
                state.held = self.store.reserve(state.principal, Hold.SHARES, nbytes)
            else:
                state.held.grow(nbytes)
        self._bytes[sender[0]] = used + nbytes
        state.shares[share.owner] = ((dict(share.shapes), part), sender, nbytes)
        state.min_owners = max(state.min_owners, min_owners)

    def missing(self, principal: Principal, round_id: bytes, owners: Sequence[int]) -> Tuple[int, ...]:
        """Which of ``owners`` (two or more) have no share here (the round must be ``principal``'s)."""
        _check_owners(owners)
        state = self._round(principal, round_id)
        _check_policy(owners, state)
        return tuple(o for o in owners if o not in state.shares)

    def take(self, principal: Principal, round_id: bytes, owners: Sequence[int]) -> List[Share]:
        """The shares of ``owners`` (two or more, all here); the round is closed and forgotten."""
        _check_owners(owners)
        state = self._round(principal, round_id)
        _check_policy(owners, state)
        missing = [o for o in owners if o not in state.shares]
        if missing:
            raise BadRequest(f"shares of owners {missing[:8]} are not here", {"missing": len(missing)})
        taken = [state.shares[o][0] for o in owners]
        self._close(round_id)
        return taken

    def _round(self, principal: Principal, round_id: bytes) -> _Round:
        self._expire(self.clock())
        state = self._rounds.get(round_id)
        if state is None or state.principal != principal:
            if round_id in self._closed:
                raise BadRequest("that secure round was already summed here", {})
            raise NotFound("no secure round of yours with that id is open here", {})
        return state

    def _close(self, round_id: bytes) -> None:
        state = self._rounds.pop(round_id, None)
        if state is not None:
            if state.held is not None:
                state.held.release()
            for _, sender, nbytes in state.shares.values():
                left = self._bytes.get(sender[0], 0) - nbytes
                if left > 0:
                    self._bytes[sender[0]] = left
                else:
                    self._bytes.pop(sender[0], None)
        self._closed[round_id] = self.clock() + CLOSED_TTL

    def _expire(self, now: float) -> None:
        for round_id in [r for r, state in self._rounds.items() if state.expires < now]:
            self._close(round_id)
        # Closed ids are in expiry order (each closed once, a constant TTL, a
        # monotonic clock): stop at the first live one instead of scanning all.
        while self._closed:
            round_id, until = next(iter(self._closed.items()))
            if until >= now:
                break
            del self._closed[round_id]

    @property
    def open_rounds(self) -> int:
        return len(self._rounds)

    def held(self, round_id: bytes) -> int:
        """Shares held for a round (for tests and logs)."""
        state = self._rounds.get(round_id)
        return 0 if state is None else len(state.shares)
