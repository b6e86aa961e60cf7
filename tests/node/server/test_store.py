"""MemoryStore: ownership, visibility, byte accounting and thread safety."""

from __future__ import annotations

import threading

import pytest
import torch

from node.server.policy import OPERATOR, Policy
from node.server.store import MemoryStore, Principal
from protocol.errors import AlreadyExists, NotFound, PermissionDenied
from protocol.ids import ObjectId
from protocol.messages import ObjectInfo

ALICE: Principal = "anon-alice"
BOB: Principal = "anon-bob"


def oid(n: int) -> ObjectId:
    return ObjectId(n)


def test_put_then_get_returns_the_owned_object() -> None:
    """get returns the very tensor put, owned by and readable to its principal."""
    store = MemoryStore()
    value = torch.tensor([1.0, 2.0])
    store.put(ALICE, oid(1), value)
    stored = store.get(ALICE, oid(1))
    assert stored.value is value and stored.owner == ALICE and stored.policy == Policy.own(ALICE)
    assert stored.info() == ObjectInfo(oid(1), "float32", (2,), ALICE, True, False)
    assert len(store) == 1


def test_put_of_a_used_id_is_already_exists() -> None:
    """put under a used id is ALREADY_EXISTS, whoever owns it, and keeps the first value."""
    store = MemoryStore()
    store.put(ALICE, oid(1), torch.ones(1))
    for principal in (ALICE, BOB):
        with pytest.raises(AlreadyExists) as caught:
            store.put(principal, oid(1), torch.zeros(3))
        assert caught.value.details == {"object_id": 1}
    assert torch.equal(store.get(ALICE, oid(1)).value, torch.ones(1))
    assert len(store) == 1 and store.bytes_stored == 4


def test_delete_frees_and_ignores_unknown_ids() -> None:
    """delete removes owned objects, counts them, and skips ids that do not exist."""
    store = MemoryStore()
    store.put(ALICE, oid(1), torch.ones(1))
    store.put(ALICE, oid(2), torch.ones(1))
    assert store.delete(ALICE, [oid(1), oid(99), oid(1)]) == 1
    with pytest.raises(NotFound):
        store.get(ALICE, oid(1))
    assert [s.object_id for s in store.visible(ALICE)] == [2]


def test_unknown_and_invisible_objects_are_both_not_found() -> None:
    """Another principal's object is NOT_FOUND, exactly like an id that was never used."""
    store = MemoryStore()
    store.put(ALICE, oid(1), torch.ones(1))
    with pytest.raises(NotFound) as invisible:
        store.get(BOB, oid(1))
    with pytest.raises(NotFound) as unknown:
        store.get(BOB, oid(2))
    assert type(invisible.value) is type(unknown.value)
    assert invisible.value.message == "object 0x1 not found"
    assert unknown.value.message == "object 0x2 not found"


def test_delete_of_an_invisible_object_is_ignored() -> None:
    """Deleting another principal's object one cannot see does nothing and reveals nothing."""
    store = MemoryStore()
    store.put(ALICE, oid(1), torch.ones(1))
    assert store.delete(BOB, [oid(1)]) == 0
    assert store.get(ALICE, oid(1)).owner == ALICE


def test_reader_can_get_and_list_but_not_delete() -> None:
    """A principal the owner released to sees the object, but deleting it is PERMISSION_DENIED and keeps it."""
    store = MemoryStore()
    store.put(ALICE, oid(1), torch.ones(2))
    store.release(ALICE, oid(1), BOB)
    assert store.get(BOB, oid(1)).owner == ALICE
    assert [s.object_id for s in store.visible(BOB)] == [1]
    with pytest.raises(PermissionDenied) as caught:
        store.delete(BOB, [oid(1)])
    assert caught.value.details == {"object_id": 1}
    assert store.get(ALICE, oid(1)).value.numel() == 2 and store.bytes_stored == 8


def test_permission_denied_stops_a_batch_midway() -> None:
    """A refused id stops a delete batch; ids before it are gone, ids after it remain (PROTOCOL.md 6.6)."""
    store = MemoryStore()
    store.put(BOB, oid(1), torch.ones(1))
    store.put(ALICE, oid(2), torch.ones(1))
    store.put(BOB, oid(3), torch.ones(1))
    store.release(ALICE, oid(2), BOB)
    with pytest.raises(PermissionDenied):
        store.delete(BOB, [oid(1), oid(2), oid(3)])
    assert sorted(s.object_id for s in store.visible(BOB)) == [2, 3]


def test_visible_lists_own_and_shared_objects_in_insertion_order() -> None:
    """visible() gives what the principal owns or reads, in insertion order, nothing else."""
    store = MemoryStore()
    store.put(ALICE, oid(3), torch.ones(1))
    store.put(BOB, oid(1), torch.ones(1))
    store.put(ALICE, oid(2), torch.ones(1))
    store.put(BOB, oid(4), torch.ones(1))
    store.release(ALICE, oid(2), BOB)
    assert [s.object_id for s in store.visible(ALICE)] == [3, 2]
    assert [s.object_id for s in store.visible(BOB)] == [1, 2, 4]
    assert store.visible("anon-nobody") == []


def test_bytes_stored_accounting_returns_to_zero() -> None:
    """bytes_stored adds numel * itemsize per put and returns to 0 after deletes."""
    store = MemoryStore()
    store.put(ALICE, oid(1), torch.zeros(10, dtype=torch.float32))
    store.put(ALICE, oid(2), torch.zeros(3, dtype=torch.int64))
    store.put(BOB, oid(3), torch.zeros(2, 2, dtype=torch.float16))
    store.put(BOB, oid(4), torch.zeros(0, 5))
    assert store.bytes_stored == 40 + 24 + 8
    store.delete(ALICE, [oid(1)])
    assert store.bytes_stored == 24 + 8
    store.delete(ALICE, [oid(2)])
    store.delete(BOB, [oid(3), oid(4)])
    assert store.bytes_stored == 0 and len(store) == 0


def test_drop_principal_frees_exactly_its_objects() -> None:
    """drop_principal removes every object the principal owns and nothing of anyone else's."""
    store = MemoryStore()
    for n in range(1, 6):
        store.put(ALICE if n % 2 else BOB, oid(n), torch.zeros(n))
    store.release(BOB, oid(2), ALICE)
    assert store.drop_principal(ALICE) == 3
    assert sorted(s.object_id for s in store.visible(BOB)) == [2, 4]
    assert [s.object_id for s in store.visible(ALICE)] == [2], "reading is not owning"
    assert store.bytes_stored == (2 + 4) * 4 and len(store) == 2
    assert store.drop_principal(ALICE) == 0
    assert store.drop_principal("anon-nobody") == 0


def test_ids_of_a_dropped_principal_can_be_reused() -> None:
    """After drop_principal, the freed ids are free for anyone to put again."""
    store = MemoryStore()
    store.put(ALICE, oid(1), torch.ones(1))
    store.drop_principal(ALICE)
    store.put(BOB, oid(1), torch.zeros(1))
    assert store.get(BOB, oid(1)).owner == BOB


THREADS = 8
ROUNDS = 1000


def test_concurrent_put_and_delete_keep_the_store_consistent() -> None:
    """8 threads x 1000 put/delete on their own ids leave no object and zero bytes behind."""
    store = MemoryStore()
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        principal = f"anon-{worker}"
        try:
            barrier.wait()
            for n in range(ROUNDS):
                object_id = oid(worker * ROUNDS + n + 1)
                store.put(principal, object_id, torch.zeros(n % 7 + 1))
                assert store.get(principal, object_id).owner == principal
                assert store.delete(principal, [object_id]) == 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store) == 0 and store.bytes_stored == 0


def test_concurrent_puts_then_drops_account_exactly() -> None:
    """Concurrent puts racing on shared ids keep one winner each; dropping all frees every byte."""
    store = MemoryStore()
    barrier = threading.Barrier(THREADS)
    wins = [0] * THREADS

    def work(worker: int) -> None:
        barrier.wait()
        for n in range(ROUNDS):
            try:
                store.put(f"anon-{worker}", oid(n + 1), torch.zeros(2))
                wins[worker] += 1
            except AlreadyExists:
                pass
            store.visible(f"anon-{worker}")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(wins) == ROUNDS == len(store)
    assert store.bytes_stored == ROUNDS * 8
    assert sum(store.drop_principal(f"anon-{w}") for w in range(THREADS)) == ROUNDS
    assert len(store) == 0 and store.bytes_stored == 0


def test_operator_dataset_refusal_says_it_is_never_readable() -> None:
    """Reading an operator's dataset is refused as never readable, without naming a releaser."""
    store = MemoryStore()
    store.put(OPERATOR, ObjectId(5), torch.ones(2), Policy.private(OPERATOR))
    with pytest.raises(PermissionDenied, match="never read") as refused:
        store.read("user:eve", ObjectId(5))
    assert "may release" not in str(refused.value)
