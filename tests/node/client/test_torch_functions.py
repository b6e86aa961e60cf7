"""Routing torch callables to wire ops, checked by running them through run_op."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from node.client.torch_functions import (
    TENSOR_METHOD_OPS,
    TORCH_FUNCTION_OPS,
    op_for_torch_function,
    route_for_torch_function,
    wire_index,
    wire_kwargs,
)
from node.server.ops import run_op
from protocol.ops import OPS, OpForm, result_count

A = torch.tensor([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]])
B = torch.tensor([[0.5, 2.0, -1.0], [3.0, -4.0, 2.0]])
P = torch.tensor([True, False, True, False])
Q = torch.tensor([True, True, False, False])
IMG = torch.linspace(-2.0, 2.0, 32).reshape(1, 2, 4, 4)


def _plain(value: object) -> object:
    """What the wire would carry: plain tensors, lists for tuples."""
    if isinstance(value, torch.Tensor):
        return value.as_subclass(torch.Tensor)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


class Remote(torch.Tensor):
    """Stands in for a pointer: every torch call on it is routed and run by run_op."""

    @classmethod
    def __torch_function__(
        cls,
        func: Callable[..., object],
        types: Sequence[type],
        args: Sequence[object] = (),
        kwargs: Mapping[str, object] | None = None,
    ) -> Any:
        route = route_for_torch_function(func)
        if route is None:
            raise TypeError(f"{func!r} cannot run remotely")
        op, form = route
        if op == "getitem":
            args = [args[0], wire_index(args[1])]
        with torch._C.DisableTorchFunctionSubclass():
            plain_args = _plain(list(args))
            plain_kwargs = _plain(wire_kwargs(kwargs))
        assert isinstance(plain_args, list) and isinstance(plain_kwargs, dict)
        target = plain_args.pop(0) if form is OpForm.METHOD else None
        assert target is None or isinstance(target, torch.Tensor)
        results = run_op(op, target, plain_args, plain_kwargs)
        assert result_count(op, target is not None, plain_args, plain_kwargs) == len(results)
        return results[0] if len(results) == 1 else results


CALLS: list[tuple[str, Callable[..., object]]] = [
    ("add", lambda x, y, p, q, img: x + y),
    ("add", lambda x, y, p, q, img: 2 + x),
    ("rsub", lambda x, y, p, q, img: 2 - x),
    ("mul", lambda x, y, p, q, img: 3 * x),
    ("div", lambda x, y, p, q, img: x / y),
    ("rtruediv", lambda x, y, p, q, img: 1 / x),
    ("floor_divide", lambda x, y, p, q, img: x // 2),
    ("rfloordiv", lambda x, y, p, q, img: 7 // x),
    ("remainder", lambda x, y, p, q, img: x % 2),
    ("rmod", lambda x, y, p, q, img: 7 % x),
    ("pow", lambda x, y, p, q, img: x**2),
    ("rpow", lambda x, y, p, q, img: 2**x),
    ("matmul", lambda x, y, p, q, img: x @ y.t()),
    ("eq", lambda x, y, p, q, img: x == y),
    ("ne", lambda x, y, p, q, img: x != y),
    ("ge", lambda x, y, p, q, img: x >= 1),
    ("neg", lambda x, y, p, q, img: -x),
    ("abs", lambda x, y, p, q, img: abs(x)),
    ("bitwise_and", lambda x, y, p, q, img: p & q),
    ("bitwise_and", lambda x, y, p, q, img: True & p),
    ("bitwise_or", lambda x, y, p, q, img: p | q),
    ("bitwise_xor", lambda x, y, p, q, img: p ^ q),
    ("bitwise_not", lambda x, y, p, q, img: ~p),
    ("getitem", lambda x, y, p, q, img: x[0]),
    ("getitem", lambda x, y, p, q, img: x[:, 1:]),
    ("getitem", lambda x, y, p, q, img: x[..., None]),
    ("getitem", lambda x, y, p, q, img: x[[1, 0]]),
    ("getitem", lambda x, y, p, q, img: x[A > 0]),
    ("getitem", lambda x, y, p, q, img: x[[0, 1], [2, 0]]),
    ("getitem", lambda x, y, p, q, img: x[1, 0]),
    ("mT", lambda x, y, p, q, img: x.mT),
    ("t", lambda x, y, p, q, img: x.t()),
    ("float", lambda x, y, p, q, img: p.float()),
    ("view", lambda x, y, p, q, img: x.view(3, 2)),
    ("sum", lambda x, y, p, q, img: x.sum(1)),
    ("max", lambda x, y, p, q, img: x.max(1)),
    ("sort", lambda x, y, p, q, img: x.sort()),
    ("topk", lambda x, y, p, q, img: x.topk(2)),
    ("softmax", lambda x, y, p, q, img: x.softmax(1)),
    ("to", lambda x, y, p, q, img: x.to(torch.float64)),
    ("clamp", lambda x, y, p, q, img: x.clamp(min=0)),
    ("add", lambda x, y, p, q, img: torch.add(x, y)),
    ("add", lambda x, y, p, q, img: torch.Tensor.add(x, y)),
    ("cat", lambda x, y, p, q, img: torch.cat([x, y])),
    ("cat", lambda x, y, p, q, img: torch.concat((x, y), dim=1)),
    ("stack", lambda x, y, p, q, img: torch.stack([x, y])),
    ("max", lambda x, y, p, q, img: torch.max(x, 1)),
    ("where", lambda x, y, p, q, img: torch.where(A > 0, x, y)),
    ("einsum", lambda x, y, p, q, img: torch.einsum("ij,kj->ik", x, y)),
    ("norm", lambda x, y, p, q, img: torch.norm(x)),
    ("relu", lambda x, y, p, q, img: F.relu(x)),
    ("softmax", lambda x, y, p, q, img: F.softmax(x, 1)),
    ("gelu", lambda x, y, p, q, img: F.gelu(x)),
    ("pad", lambda x, y, p, q, img: F.pad(x, [1, 1])),
    ("normalize", lambda x, y, p, q, img: F.normalize(x)),
    ("layer_norm", lambda x, y, p, q, img: F.layer_norm(x, [3])),
    ("mse_loss", lambda x, y, p, q, img: F.mse_loss(x, y)),
    ("dropout", lambda x, y, p, q, img: F.dropout(x, 0.5, False)),
    ("linear", lambda x, y, p, q, img: F.linear(x, y)),
    ("max_pool2d", lambda x, y, p, q, img: F.max_pool2d(img, 2)),
    ("relu", lambda x, y, p, q, img: nn.ReLU()(x)),
    ("leaky_relu", lambda x, y, p, q, img: nn.LeakyReLU(0.1)(x)),
    ("dropout", lambda x, y, p, q, img: nn.Dropout(0.5).eval()(x)),
    ("softmax", lambda x, y, p, q, img: nn.Softmax(dim=1)(x)),
    ("log_softmax", lambda x, y, p, q, img: nn.LogSoftmax(dim=1)(x)),
    ("gelu", lambda x, y, p, q, img: nn.GELU()(x)),
    ("silu", lambda x, y, p, q, img: nn.SiLU()(x)),
    ("elu", lambda x, y, p, q, img: nn.ELU()(x)),
    ("hardtanh", lambda x, y, p, q, img: nn.Hardtanh()(x)),
    ("layer_norm", lambda x, y, p, q, img: nn.LayerNorm(3, elementwise_affine=False)(x)),
    ("flatten", lambda x, y, p, q, img: nn.Flatten()(img)),
    ("avg_pool2d", lambda x, y, p, q, img: nn.AvgPool2d(2)(img)),
    ("cross_entropy", lambda x, y, p, q, img: nn.CrossEntropyLoss()(x, torch.tensor([2, 0]))),
    ("mse_loss", lambda x, y, p, q, img: nn.MSELoss()(x, y)),
    ("max_pool2d", lambda x, y, p, q, img: nn.MaxPool2d(2)(img)),
]


def _as_tuple(value: object) -> tuple[torch.Tensor, ...]:
    if isinstance(value, torch.Tensor):
        return (value.as_subclass(torch.Tensor),)
    assert isinstance(value, tuple)
    return tuple(item.as_subclass(torch.Tensor) for item in value)


CALL_IDS = [f"{op}-{i}" for i, (op, _) in enumerate(CALLS)]


@pytest.mark.parametrize(("op", "call"), CALLS, ids=CALL_IDS)
def test_routed_call_matches_local_call(op: str, call: Callable[..., object]) -> None:
    """A torch call on pointer-like tensors, routed and run by run_op, equals the local call."""
    routed: list[str] = []

    def spy(func: Callable[..., object]) -> None:
        found = op_for_torch_function(func)
        if found is not None:
            routed.append(found)

    remote = [t.as_subclass(Remote) for t in (A, B, P, Q, IMG)]
    original = Remote.__torch_function__.__func__  # type: ignore[attr-defined]

    def recording(cls: type, func: Callable[..., object], *rest: Any) -> Any:
        spy(func)
        return original(cls, func, *rest)

    Remote.__torch_function__ = classmethod(recording)  # type: ignore[assignment,method-assign]
    try:
        got = _as_tuple(call(*remote))
    finally:
        Remote.__torch_function__ = classmethod(original)  # type: ignore[assignment,method-assign]
    want = _as_tuple(call(A, B, P, Q, IMG))
    assert op in routed
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert torch.allclose(g.double(), w.double(), equal_nan=True)


def test_function_table_targets_function_ops() -> None:
    """Every torch/F callable maps to an op allowed in the FUNCTION form."""
    for func, op in TORCH_FUNCTION_OPS.items():
        assert OPS[op].function, (func, op)


def test_method_table_targets_method_ops() -> None:
    """Every Tensor method or dunder maps to an op allowed in the METHOD form."""
    for func, op in TENSOR_METHOD_OPS.items():
        assert OPS[op].method, (func, op)


def test_every_function_op_has_a_torch_callable() -> None:
    """Each FUNCTION-form op is reachable from at least one torch or F callable."""
    reachable = set(TORCH_FUNCTION_OPS.values())
    assert reachable == {name for name, spec in OPS.items() if spec.function}


def test_every_method_op_has_a_tensor_method() -> None:
    """Each METHOD-form op is reachable from at least one Tensor method or dunder."""
    reachable = set(TENSOR_METHOD_OPS.values())
    assert reachable == {name for name, spec in OPS.items() if spec.method}


def test_wire_kwargs_drops_forwarded_defaults() -> None:
    """_stacklevel, out=None and inplace=False are dropped; other keywords are kept."""
    given = {"_stacklevel": 5, "out": None, "inplace": False, "dim": 1, "dtype": None}
    assert wire_kwargs(given) == {"dim": 1, "dtype": None}
    assert wire_kwargs({"inplace": True, "out": A}) == {"inplace": True, "out": A}
    assert wire_kwargs(None) == {}


def test_wire_index_is_always_a_list_of_components() -> None:
    """A tuple index becomes a list; any other index is wrapped as one component."""
    assert wire_index((0, slice(1, None))) == [0, slice(1, None)]
    assert wire_index([1, 0]) == [[1, 0]]
    assert wire_index(0) == [0]
    assert wire_index(Ellipsis) == [Ellipsis]


def test_routes_carry_the_form() -> None:
    """torch.add is a FUNCTION-form add; torch.Tensor.add a METHOD-form add."""
    assert route_for_torch_function(torch.add) == ("add", OpForm.FUNCTION)
    assert route_for_torch_function(torch.Tensor.add) == ("add", OpForm.METHOD)
    assert route_for_torch_function(F.conv2d) == ("conv2d", OpForm.FUNCTION)
    assert route_for_torch_function(torch.Tensor.__rsub__) == ("rsub", OpForm.METHOD)


@pytest.mark.parametrize(
    "func",
    [torch.load, torch.save, torch.zeros, torch.randn, torch.Tensor.add_, torch.Tensor.numpy,
     torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.storage, torch.Tensor.backward,
     torch.Tensor.where, torch.Tensor.T.__get__,  # type: ignore[attr-defined]
     torch.split, torch.unique, torch.nonzero, F.relu_, print, [], None],
)  # fmt: skip
def test_unlisted_callables_do_not_route(func: object) -> None:
    """I/O, factories, in-place, Python-value and data-sized callables (and junk) map to None."""
    assert op_for_torch_function(func) is None
    assert route_for_torch_function(func) is None


def test_unrouted_call_on_a_pointer_raises() -> None:
    """A torch call with no route surfaces as TypeError from the pointer, not a remote call."""
    x = A.as_subclass(Remote)
    with pytest.raises(TypeError):
        torch.split(x, 1)
