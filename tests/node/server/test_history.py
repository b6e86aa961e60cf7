"""Autograd histories on a node: what they save is charged to the quota while they keep it."""

from __future__ import annotations

import gc
from typing import Any

import pytest
import torch

from node.server.executor import Executor
from node.server.store import MemoryStore, Quota
from protocol.errors import QuotaExceeded
from protocol.ids import NodeId, ObjectId, RequestId
from protocol.messages import CommandRequest
from protocol.values import PointerRef

NODE = NodeId("alice")
USER = "user:trainer"
KIB = 1024


def ref(n: int) -> PointerRef:
    return PointerRef(NODE, ObjectId(n))


def run(executor: Executor, op: str, target: int | None, args: tuple[Any, ...], results: tuple[int, ...]) -> None:
    request = CommandRequest(
        RequestId(1), op, None if target is None else ref(target), args, {}, tuple(ObjectId(r) for r in results)
    )
    executor.run(executor.prepare(USER, request))


def reserved(store: MemoryStore) -> int:
    return store.ledger.usage(USER)[1]


def setup(max_bytes: int = 1 << 30) -> tuple[MemoryStore, Executor]:
    """A leaf requiring grad (2) made from 256 floats (1 KiB) stored as 1."""
    store = MemoryStore(Quota(max_bytes=max_bytes))
    store.put(USER, ObjectId(1), torch.linspace(-1, 1, 256))
    executor = Executor(NODE, store)
    run(executor, "leaf", 1, (True,), (2,))
    return store, executor


def test_saved_tensors_are_reserved_and_given_back_after_grad() -> None:
    """x * x saves x twice (2 KiB reserved); grad frees the history and the next command settles it."""
    store, executor = setup()
    assert reserved(store) == 0  # a leaf has no history
    run(executor, "mul", 2, (ref(2),), (3,))
    run(executor, "sum", 3, (), (4,))
    assert reserved(store) >= 2 * KIB
    run(executor, "grad", None, (ref(4), [ref(2)]), (5,))
    gc.collect()
    executor.history.settle()
    assert reserved(store) == 0
    assert torch.allclose(store.get(USER, ObjectId(5)).value, 2 * torch.linspace(-1, 1, 256))


def test_deleting_the_result_gives_its_history_back() -> None:
    """Once the only result holding a history is deleted, what it saved is no longer charged."""
    store, executor = setup()
    run(executor, "mul", 2, (ref(2),), (3,))
    assert reserved(store) >= 2 * KIB
    store.delete(USER, [ObjectId(3)])
    gc.collect()
    executor.history.settle()
    assert reserved(store) == 0


def test_a_chain_of_deleted_intermediates_cannot_escape_the_quota() -> None:
    """b = a * a, c = b * b, ... deleting each step: the history still counts, so the quota refuses."""
    store, executor = setup(max_bytes=16 * KIB)
    previous = 2
    with pytest.raises(QuotaExceeded, match="autograd histories"):
        for step in range(3, 100):
            run(executor, "mul", previous, (ref(previous),), (step,))
            if previous != 2:
                store.delete(USER, [ObjectId(previous)])
            previous = step
    assert store.ledger.usage(USER)[0] <= 16 * KIB


def test_commands_without_autograd_reserve_nothing() -> None:
    """Plain tensors: no hooks, no reservation."""
    store = MemoryStore()
    store.put(USER, ObjectId(1), torch.ones(256))
    executor = Executor(NODE, store)
    run(executor, "mul", 1, (ref(1),), (2,))
    assert reserved(store) == 0 and not store.get(USER, ObjectId(2)).value.requires_grad
