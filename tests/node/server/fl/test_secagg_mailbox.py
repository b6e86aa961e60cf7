"""The party's share mailbox and the owner's pending updates: who may send, sum, and for how long."""

from __future__ import annotations

import pytest
import torch

from node.fl.secure import SharePart
from node.server.fl.secagg_mailbox import (
    CLOSED_TTL,
    MAX_OPEN_ROUNDS_PER_PRINCIPAL,
    MAX_PENDING_UPDATES_PER_PRINCIPAL,
    PENDING_TTL,
    PendingUpdates,
    ShareMailbox,
)
from node.server.store import Hold, MemoryStore, Quota
from protocol.errors import AlreadyExists, BadRequest, NotFound, PermissionDenied, QuotaExceeded
from protocol.ids import NodeId, RequestId
from protocol.secagg import SecaggShareRequest, ShareSender

ROUND = bytes(16)
A = (NodeId("a"), "sha256:" + "aa" * 32)
B = (NodeId("b"), "sha256:" + "bb" * 32)
SHAPES = {"w": (2,)}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _share(owner: int, round_id: bytes = ROUND) -> tuple[SecaggShareRequest, SharePart]:
    return SecaggShareRequest(RequestId(1), round_id, owner, SHAPES, bytes(16)), SharePart(None, {})


def _open(mailbox: ShareMailbox, principal: str = "user:t", round_id: bytes = ROUND) -> None:
    mailbox.setup(principal, round_id, (ShareSender(0, *A), ShareSender(1, *B)), 60.0)


def test_shares_are_taken_once_for_two_or_more_owners_of_the_round_principal() -> None:
    """take needs >= 2 owners and the opening principal; afterwards the round is closed."""
    mailbox = ShareMailbox()
    _open(mailbox)
    mailbox.post(A, *_share(0))
    assert mailbox.missing("user:t", ROUND, (0, 1)) == (1,)
    mailbox.post(B, *_share(1))
    with pytest.raises(BadRequest, match="at least 2"):
        mailbox.take("user:t", ROUND, (0,))
    with pytest.raises(NotFound):
        mailbox.take("user:eve", ROUND, (0, 1))
    assert len(mailbox.take("user:t", ROUND, (0, 1))) == 2
    with pytest.raises(BadRequest, match="already summed"):
        mailbox.take("user:t", ROUND, (0, 1))
    with pytest.raises(BadRequest, match="already summed"):
        mailbox.post(A, *_share(0))
    with pytest.raises(AlreadyExists):
        _open(mailbox)


def test_a_share_from_another_node_or_certificate_is_refused() -> None:
    """Only the node and fingerprint named for the owner index may post its share, once."""
    mailbox = ShareMailbox()
    _open(mailbox)
    with pytest.raises(PermissionDenied, match="expected from 'a'"):
        mailbox.post(B, *_share(0))
    with pytest.raises(PermissionDenied):
        mailbox.post((NodeId("a"), "sha256:" + "cc" * 32), *_share(0))
    with pytest.raises(PermissionDenied, match="not part"):
        mailbox.post(A, *_share(5))
    with pytest.raises(NotFound):
        mailbox.post(A, *_share(0, round_id=bytes(range(16))))
    mailbox.post(A, *_share(0))
    with pytest.raises(AlreadyExists):
        mailbox.post(A, *_share(0))


def test_rounds_expire_and_are_bounded_per_principal() -> None:
    """An open round is dropped after its timeout; a principal may keep a bounded number open."""
    clock = Clock()
    mailbox = ShareMailbox(clock)
    _open(mailbox)
    mailbox.post(A, *_share(0))
    clock.now = 61.0
    with pytest.raises(BadRequest):
        mailbox.missing("user:t", ROUND, (0, 1))
    clock.now += CLOSED_TTL + 1
    with pytest.raises(NotFound):
        mailbox.missing("user:t", ROUND, (0, 1))
    for index in range(MAX_OPEN_ROUNDS_PER_PRINCIPAL):
        _open(mailbox, round_id=index.to_bytes(16, "big"))
    with pytest.raises(QuotaExceeded):
        _open(mailbox, round_id=b"x" * 16)
    _open(mailbox, principal="user:other", round_id=b"y" * 16)


def test_closed_round_ids_are_forgotten_oldest_first() -> None:
    """A summed id is remembered for CLOSED_TTL after its sum; a later one outlives it."""
    clock = Clock()
    mailbox = ShareMailbox(clock)
    first, second = b"1" * 16, b"2" * 16
    for round_id in (first, second):
        _open(mailbox, round_id=round_id)
        mailbox.post(A, *_share(0, round_id))
        mailbox.post(B, *_share(1, round_id))
        mailbox.take("user:t", round_id, (0, 1))
        clock.now += CLOSED_TTL / 2
    clock.now += 1  # first's memory is past its time, second's is not
    with pytest.raises(NotFound):
        mailbox.missing("user:t", first, (0, 1))
    with pytest.raises(BadRequest, match="already summed"):
        mailbox.missing("user:t", second, (0, 1))


def test_pending_updates_belong_to_their_principal_and_expire() -> None:
    """An owner's kept update is taken once, by the principal that trained it, before PENDING_TTL."""
    clock = Clock()
    pending = PendingUpdates(clock)
    store = MemoryStore()
    update = {"w": torch.zeros(2, dtype=torch.int64)}
    pending.put("user:t", ROUND, 0, update, store.reserve("user:t", Hold.SECURE_UPDATE, 16))
    with pytest.raises(AlreadyExists):
        pending.put("user:t", ROUND, 0, update, store.reserve("user:t", Hold.SECURE_UPDATE, 16))
    with pytest.raises(NotFound):
        pending.take("user:eve", ROUND, 0)
    assert pending.take("user:t", ROUND, 0)[0] is update
    with pytest.raises(NotFound):
        pending.take("user:t", ROUND, 0)
    pending.put("user:t", ROUND, 1, update, store.reserve("user:t", Hold.SECURE_UPDATE, 16))
    clock.now = PENDING_TTL + 1
    with pytest.raises(NotFound):
        pending.take("user:t", ROUND, 1)


def test_pending_updates_hold_their_bytes_until_taken_or_expired() -> None:
    """A parked update's reservation is released when it is taken and when it expires."""
    clock = Clock()
    pending = PendingUpdates(clock)
    store = MemoryStore(Quota(max_bytes=1000))
    update = {"w": torch.zeros(2, dtype=torch.int64)}
    pending.put("user:t", ROUND, 0, update, store.reserve("user:t", Hold.SECURE_UPDATE, 600))
    with pytest.raises(QuotaExceeded, match="parked secure-aggregation updates"):
        store.reserve("user:t", Hold.SECURE_UPDATE, 600)
    pending.take("user:t", ROUND, 0)
    pending.put("user:t", ROUND, 1, update, store.reserve("user:t", Hold.SECURE_UPDATE, 600))
    clock.now = PENDING_TTL + 1
    pending.put("user:u", ROUND, 0, update, store.reserve("user:u", Hold.SECURE_UPDATE, 1))  # expires the old
    assert store.ledger.usage("user:t") == (0, 0)


def test_one_principal_filling_its_share_does_not_lock_out_another() -> None:
    """Past MAX_PENDING_UPDATES_PER_PRINCIPAL one principal is refused; another still parks its update."""
    pending = PendingUpdates(Clock())
    store = MemoryStore()
    update = {"w": torch.zeros(2, dtype=torch.int64)}
    for owner in range(MAX_PENDING_UPDATES_PER_PRINCIPAL):
        pending.put("user:eve", ROUND, owner, update, store.reserve("user:eve", Hold.SECURE_UPDATE, 16))
    with pytest.raises(QuotaExceeded):
        pending.put("user:eve", ROUND, 999, update, store.reserve("user:eve", Hold.SECURE_UPDATE, 16))
    pending.put("user:t", ROUND, 0, update, store.reserve("user:t", Hold.SECURE_UPDATE, 16))
    assert pending.take("user:t", ROUND, 0)[0] is update


def test_shares_count_against_the_principal_that_opened_the_round() -> None:
    """A round's shares hold their (expanded) bytes in its opener's quota until the round is summed or expires."""
    clock = Clock()
    store = MemoryStore(Quota(max_bytes=3000))
    mailbox = ShareMailbox(clock, store=store)
    big = {"w": (200,)}  # 1600 bytes once expanded
    _open(mailbox)
    mailbox.post(A, SecaggShareRequest(RequestId(1), ROUND, 0, big, bytes(16)), SharePart(None, {}))
    with pytest.raises(QuotaExceeded, match="secure-aggregation shares"):
        mailbox.post(B, SecaggShareRequest(RequestId(2), ROUND, 1, big, bytes(16)), SharePart(None, {}))
    assert store.ledger.usage("user:t") == (0, 1600) and store.ledger.usage("user:u") == (0, 0)
    clock.now = 61.0
    assert mailbox.open_rounds == 1
    _open(mailbox, round_id=bytes(range(16)))  # expires the first round, releasing its shares
    assert store.ledger.usage("user:t") == (0, 0)
