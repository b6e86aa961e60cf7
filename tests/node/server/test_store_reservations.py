"""Reservations: what a principal makes a node hold outside the store counts in its one quota."""

from __future__ import annotations

import threading

import pytest
import torch

from node.server.store import Hold, MemoryStore, Quota
from protocol.errors import QuotaExceeded
from protocol.ids import ObjectId

ALICE, BOB = "user:alice", "user:bob"


def _store(max_bytes: int = 1000, max_objects: int = 100) -> MemoryStore:
    return MemoryStore(Quota(max_objects=max_objects, max_bytes=max_bytes))


def test_reserved_bytes_count_against_puts_and_other_reservations() -> None:
    """Reserved bytes leave only the rest of the quota to puts and to further reservations."""
    store = _store()
    held = store.reserve(ALICE, Hold.UPLOAD, 600)
    with pytest.raises(QuotaExceeded):
        store.put(ALICE, ObjectId(1), torch.zeros(101))  # 404 bytes
    with pytest.raises(QuotaExceeded):
        store.reserve(ALICE, Hold.BACKLOG, 401)
    store.put(ALICE, ObjectId(2), torch.zeros(100))  # 400 bytes: exactly the rest
    held.release()
    store.put(ALICE, ObjectId(3), torch.zeros(150))


def test_refusal_names_the_limit_and_what_was_counted() -> None:
    """QUOTA_EXCEEDED says the limit, what asked, and bytes stored and reserved by kind."""
    store = _store()
    store.put(ALICE, ObjectId(1), torch.zeros(50))  # 200 bytes
    store.reserve(ALICE, Hold.DELIVERY, 300)
    with pytest.raises(QuotaExceeded) as raised:
        store.reserve(ALICE, Hold.BACKLOG, 600)
    message = raised.value.message
    assert message.startswith("queued frames: 600 more bytes would exceed the 1000-byte quota")
    assert "200 stored, 300 reserved by incoming transfers" in message
    assert raised.value.details == {"limit": 1000, "used": 500, "size": 600}


def test_a_refused_reservation_changes_nothing() -> None:
    """A refused reserve or grow leaves the principal's counts as they were."""
    store = _store()
    held = store.reserve(ALICE, Hold.JOB, 900)
    with pytest.raises(QuotaExceeded):
        held.grow(101)
    assert held.nbytes == 900 and store.ledger.usage(ALICE) == (0, 900)
    with pytest.raises(QuotaExceeded):
        store.reserve(ALICE, Hold.JOB, 101)
    assert store.ledger.usage(ALICE) == (0, 900)


def test_grow_shrink_and_idempotent_release() -> None:
    """A reservation grows (checked), shrinks, and releases once however often it is released."""
    store = _store()
    held = store.reserve(ALICE, Hold.BACKLOG, 100)
    held.grow(300)
    held.shrink(50)
    assert held.nbytes == 350 and store.ledger.usage(ALICE) == (0, 350)
    held.shrink(10_000)  # never below zero
    assert held.nbytes == 0
    held.grow(200)
    held.release()
    held.release()
    assert held.released and store.ledger.usage(ALICE) == (0, 0)
    with pytest.raises(RuntimeError):
        held.grow(1)
    with store.reserve(ALICE, Hold.TRAINING, 1000):
        with pytest.raises(QuotaExceeded):
            store.check_quota(ALICE, 1, objects=0)
    store.check_quota(ALICE, 1000, objects=0)


def test_reserved_objects_count_against_the_object_limit() -> None:
    """An awaited object (reserved, objects=1) takes a slot of the per-principal object count."""
    store = _store(max_bytes=1 << 20, max_objects=2)
    store.reserve(ALICE, Hold.DELIVERY, 0, objects=1)
    store.put(ALICE, ObjectId(1), torch.zeros(1))
    with pytest.raises(QuotaExceeded) as raised:
        store.put(ALICE, ObjectId(2), torch.zeros(1))
    assert raised.value.details["limit"] == 2


def test_put_with_its_reservation_counts_the_object_once() -> None:
    """An upload reserved at its full size is stored with that reservation: not counted twice."""
    store = _store(max_objects=1)
    held = store.reserve(ALICE, Hold.UPLOAD, 800, objects=1)
    store.put(ALICE, ObjectId(1), torch.zeros(200), reservation=held)  # 800 bytes
    assert held.released and store.ledger.usage(ALICE) == (800, 0)
    store.delete(ALICE, [ObjectId(1)])
    assert store.ledger.usage(ALICE) == (0, 0)


def test_put_with_a_reservation_still_checks_what_exceeds_it() -> None:
    """A value larger than its reservation is checked for the difference; refused, the reservation stays."""
    store = _store()
    held = store.reserve(ALICE, Hold.UPLOAD, 100, objects=1)
    with pytest.raises(QuotaExceeded):
        store.put(ALICE, ObjectId(1), torch.zeros(251), reservation=held)  # 1004 bytes
    assert not held.released and store.ledger.usage(ALICE) == (0, 100)
    other = store.reserve(BOB, Hold.UPLOAD, 800, objects=1)
    store.put(ALICE, ObjectId(2), torch.zeros(200), reservation=other)  # BOB's: not used for ALICE
    assert not other.released and store.ledger.usage(ALICE) == (800, 100)


def test_principals_are_counted_apart() -> None:
    """One principal's reservations never take from another's quota."""
    store = _store()
    store.reserve(ALICE, Hold.SECURE_UPDATE, 1000)
    store.reserve(BOB, Hold.SECURE_UPDATE, 1000)
    store.put(BOB, ObjectId(1), torch.zeros(0))
    assert store.ledger.usage(BOB) == (0, 1000)


def test_dropping_a_principal_keeps_its_live_reservations() -> None:
    """drop_principal frees stored objects; reservations stay until their holders release them."""
    store = _store()
    store.put(ALICE, ObjectId(1), torch.zeros(100))
    held = store.reserve(ALICE, Hold.JOB, 500)
    store.drop_principal(ALICE)
    assert store.ledger.usage(ALICE) == (0, 500)
    held.release()
    assert store.ledger.usage(ALICE) == (0, 0)


def test_concurrent_reservations_never_pass_the_quota() -> None:
    """Threads racing to reserve never hold more than the quota between them."""
    store = _store(max_bytes=10_000)
    granted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(200):
            try:
                held = store.reserve(ALICE, Hold.BACKLOG, 300)
            except QuotaExceeded:
                continue
            with lock:
                granted.append(held.nbytes)
            assert store.ledger.usage(ALICE)[1] <= 10_000
            held.release()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted and store.ledger.usage(ALICE) == (0, 0)


def test_one_reservation_covers_several_results() -> None:
    """A command's reservation (bytes and objects for all its results) is consumed result by result."""
    store = _store(max_objects=3)
    held = store.reserve(ALICE, Hold.COMMAND, 1000, objects=2)
    store.put(ALICE, ObjectId(1), torch.zeros(100), reservation=held)  # 400 bytes
    assert (held.nbytes, held.objects) == (600, 1) and store.ledger.usage(ALICE) == (400, 600)
    with pytest.raises(QuotaExceeded):
        store.put(ALICE, ObjectId(2), torch.zeros(2))  # the rest of the bytes is still the command's
    store.put(ALICE, ObjectId(3), torch.zeros(100), reservation=held)
    assert (held.nbytes, held.objects) == (200, 0) and not held.released
    held.release()
    assert store.ledger.usage(ALICE) == (800, 0)
