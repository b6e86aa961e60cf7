"""Executor: result policies, restricted commands (refusals, redaction) and quota before allocation."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from node.server import sizing
from node.server.executor import Executor
from node.server.policy import Policy
from node.server.store import MemoryStore, Quota
from protocol.errors import NotFound, OpFailed, PermissionDenied, QuotaExceeded
from protocol.ids import NodeId, ObjectId, RequestId
from protocol.messages import CommandRequest
from protocol.values import PointerRef

NODE = NodeId("alice")
HOSPITAL = "user:hospital"
ANALYST = "user:analyst"
DATA = torch.tensor([[3.0, 1.0], [4.0, 1.0], [5.0, 9.0]])
LABELS = torch.tensor([2, 7, 1])
SCALAR = torch.tensor(3)


def ref(n: int) -> PointerRef:
    return PointerRef(NODE, ObjectId(n))


def setup(quota: Quota | None = None) -> tuple[MemoryStore, Executor]:
    """The hospital's private data (1), labels (2) and a scalar (3); the analyst's own tensor (10)."""
    store = MemoryStore(quota)
    store.put(HOSPITAL, ObjectId(1), DATA, Policy.private(HOSPITAL))
    store.put(HOSPITAL, ObjectId(2), LABELS, Policy.private(HOSPITAL))
    store.put(HOSPITAL, ObjectId(3), SCALAR, Policy.private(HOSPITAL))
    store.put(ANALYST, ObjectId(10), torch.ones(3, 2))
    return store, Executor(NODE, store)


def run(
    executor: Executor, principal: str, op: str, target: PointerRef | None, args: tuple[Any, ...],
    kwargs: dict[str, Any] | None = None, results: tuple[int, ...] = (100,),
) -> None:
    request = CommandRequest(
        RequestId(1), op, target, args, kwargs or {}, tuple(ObjectId(r) for r in results)
    )
    executor.run(executor.prepare(principal, request))


@pytest.mark.parametrize(
    "op, target, args",
    [("add", ref(1), (0,)), ("mul", ref(1), (1,)), ("sum", ref(1), ()),
     ("getitem", ref(1), (torch.tensor([0, 2]),)), ("add", ref(10), (ref(1),))],
    ids=["x+0", "x*1", "sum", "x[idx]", "own+x"],
)
def test_results_of_private_data_cannot_be_read_by_the_caller(op: str, target: PointerRef, args: tuple[Any, ...]) -> None:
    """Anything the analyst computes from the hospital's private data is unreadable to it, but usable."""
    store, executor = setup()
    run(executor, ANALYST, op, target, args)
    with pytest.raises(PermissionDenied):
        store.read(ANALYST, ObjectId(100))
    run(executor, ANALYST, "neg", ref(100), (), results=(101,))
    assert store.get(ANALYST, ObjectId(101)).owner == ANALYST


def test_result_readers_are_the_intersection_and_need_every_release() -> None:
    """A derived result needs the hospital's and the analyst's release before a third party reads it."""
    store, executor = setup()
    run(executor, ANALYST, "add", ref(10), (ref(1),))
    assert store.get(HOSPITAL, ObjectId(100)).policy.readers() == frozenset()
    with pytest.raises(PermissionDenied):
        store.read(HOSPITAL, ObjectId(100))  # the analyst's own tensor is in it
    store.release(HOSPITAL, ObjectId(100), ANALYST)
    assert torch.equal(store.read(ANALYST, ObjectId(100)).value, DATA + 1)
    store.release(HOSPITAL, ObjectId(100), "user:third")
    with pytest.raises(NotFound):
        store.read("user:third", ObjectId(100))  # the analyst has not released it
    store.release(ANALYST, ObjectId(100), "user:third")
    assert torch.equal(store.read("user:third", ObjectId(100)).value, DATA + 1)


def test_a_released_dataset_makes_results_readable_to_the_releasee() -> None:
    """After the hospital releases its dataset to the analyst, the analyst reads what it computes."""
    store, executor = setup()
    store.release(HOSPITAL, ObjectId(1), ANALYST)
    run(executor, ANALYST, "sum", ref(1), ())
    assert store.read(ANALYST, ObjectId(100)).value.item() == DATA.sum().item()
    with pytest.raises(PermissionDenied):
        store.read("user:other", ObjectId(1))


def test_failures_on_unreadable_data_reach_the_session_unredacted() -> None:
    """The executor raises torch's message; redaction is the session's one point (test_redaction.py)."""
    _, executor = setup()
    with pytest.raises(OpFailed) as caught:
        run(executor, ANALYST, "getitem", ref(1), (torch.tensor([7]),))
    assert "7" in caught.value.message


@pytest.mark.parametrize(
    "op, target, args, kwargs",
    [
        ("getitem", ref(10), (ref(2),), {}),
        ("getitem", ref(10), ([ref(2)],), {}),
        ("index_select", None, (ref(10), 0, ref(2)), {}),
        ("gather", ref(10), (0, ref(2).__class__(NODE, ObjectId(2))), {}),
        ("one_hot", None, (ref(2),), {}),
        ("one_hot", None, (ref(2), 10), {}),
        ("argwhere", ref(1), (), {}),
        ("floor_divide", None, (torch.tensor([6]), ref(2)), {}),
        ("remainder", None, (torch.tensor([6]), ref(2)), {}),
        ("fmod", None, (torch.tensor([6]), ref(2)), {}),
        ("div", None, (torch.tensor([6]), ref(2)), {"rounding_mode": "floor"}),
        ("rfloordiv", ref(2), (6,), {}),
        ("rmod", ref(2), (6,), {}),
        ("cross_entropy", None, (ref(10),), {"target": ref(2)}),
        ("nll_loss", None, (ref(10), ref(2)), {}),
    ],
    ids=["index", "index-list", "index_select", "gather", "one_hot", "one_hot-n", "argwhere",
         "floor_divide", "remainder", "fmod", "div-floor", "rfloordiv", "rmod", "cross_entropy", "nll_loss"],
)
def test_value_sensitive_arguments_of_unreadable_data_are_refused(
    op: str, target: PointerRef | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Indices, classes, integer divisors and targets from private data are PERMISSION_DENIED, nothing stored."""
    store, executor = setup()
    with pytest.raises(PermissionDenied) as caught:
        run(executor, ANALYST, op, target, args, kwargs)
    assert caught.value.details == {"op": op}
    with pytest.raises(NotFound):
        store.get(ANALYST, ObjectId(100))


def test_value_sensitive_arguments_are_fine_for_their_reader() -> None:
    """The hospital itself may index, one-hot and divide by its own data."""
    store, executor = setup()
    run(executor, HOSPITAL, "one_hot", None, (ref(2),))
    assert store.read(HOSPITAL, ObjectId(100)).value.shape == (3, 8)


def test_float_division_by_unreadable_data_is_allowed() -> None:
    """Float division cannot fail on values: dividing by private floats runs (result unreadable)."""
    store, executor = setup()
    run(executor, ANALYST, "div", ref(10), (ref(1),))
    assert store.get(ANALYST, ObjectId(100)).value.shape == (3, 2)


@pytest.mark.parametrize(
    "op, target, args",
    [("narrow", ref(10), (0, ref(3), 1)), ("repeat", ref(10), (ref(3), 1)),
     ("topk", ref(10), (ref(3),)), ("unsqueeze", ref(10), (ref(3),))],
    ids=["narrow", "repeat", "topk", "unsqueeze"],
)
def test_unreadable_scalar_used_as_a_size_fails_without_its_value(
    op: str, target: PointerRef, args: tuple[Any, ...]
) -> None:
    """A private one-element tensor standing for a number is caught by the meta run; its value never shows."""
    store, executor = setup()
    with pytest.raises(OpFailed) as caught:
        run(executor, ANALYST, op, target, args, results=(100, 101) if op == "topk" else (100,))
    assert "3" not in caught.value.message.replace(repr(op), "")
    with pytest.raises(NotFound):
        store.get(ANALYST, ObjectId(100))


def test_unreadable_scalar_as_an_operand_still_works() -> None:
    """A private scalar used as a tensor operand (x / s) runs after the meta check."""
    store, executor = setup()
    run(executor, ANALYST, "div", ref(10), (ref(3),))
    assert store.get(ANALYST, ObjectId(100)).value.shape == (3, 2)


def test_readable_bool_mask_on_private_data_works() -> None:
    """Selecting rows of a private tensor with the caller's own mask is allowed (result unreadable)."""
    store, executor = setup()
    run(executor, ANALYST, "getitem", ref(1), (torch.tensor([True, False, True]),))
    assert store.get(ANALYST, ObjectId(100)).value.shape == (2, 2)


@pytest.mark.parametrize(
    "op, target, args",
    [("repeat", ref(10), (100_000, 100_000)), ("outer", None, (torch.ones(10**6), torch.ones(10**6))),
     ("add", None, (torch.ones(10**6, 1), torch.ones(1, 10**6))), ("pad", None, (ref(10), [0, 10**9])),
     ("one_hot", None, (torch.tensor([10**9]),)), ("matmul", None, (torch.ones(10**6, 1), torch.ones(1, 10**6)))],
    ids=["repeat", "outer", "broadcast", "pad", "one_hot", "matmul"],
)
def test_amplifying_ops_are_refused_before_allocating(op: str, target: PointerRef | None, args: tuple[Any, ...]) -> None:
    """Results of terabytes against a 1 MiB quota are QUOTA_EXCEEDED (an allocation would fail, not this)."""
    store, executor = setup(Quota(max_bytes=1 << 20))
    with pytest.raises(QuotaExceeded):
        run(executor, ANALYST, op, target, args)
    with pytest.raises(NotFound):
        store.get(ANALYST, ObjectId(100))


def test_expanded_view_counts_at_its_full_size() -> None:
    """expand allocates nothing, but storing the view counts its full size: refused, so no clone of it can follow."""
    store, executor = setup(Quota(max_bytes=1 << 20))
    with pytest.raises(QuotaExceeded):
        run(executor, ANALYST, "expand", ref(10), (10**6, 3, 2))
    with pytest.raises(NotFound):
        store.get(ANALYST, ObjectId(100))


def test_small_commands_never_run_on_meta_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Far below the quota, elementwise ops, reductions and products take the cheap bound only."""
    calls: list[str] = []
    original = sizing.meta_specs

    def counting(op: str, *rest: Any) -> Any:
        calls.append(op)
        return original(op, *rest)

    monkeypatch.setattr("node.server.executor.meta_specs", counting)
    _, executor = setup()
    for op, target, args in [("add", ref(10), (1,)), ("sum", ref(10), ()), ("matmul", ref(10), (torch.ones(2, 4),)),
                             ("cat", None, ([ref(10), ref(10)],))]:
        run(executor, ANALYST, op, target, args)
        executor.store.delete(ANALYST, [ObjectId(100)])
    assert calls == []
    run(executor, ANALYST, "repeat", ref(10), (2, 2))
    assert calls == ["repeat"]


def test_near_the_quota_the_exact_size_decides() -> None:
    """A result that fits exactly is stored even though the loose bound would not fit."""
    store, executor = setup(Quota(max_bytes=6 * 4 + 4 * 4 + 3 * 8 + 8 + 6 * 4))
    run(executor, ANALYST, "neg", ref(10), ())
    assert store.get(ANALYST, ObjectId(100)).value.shape == (3, 2)
