"""Which torch callables a :class:`~node.client.mpc.shared.SharedTensor` answers, and how.

Runs in the user's process.  When torch meets a shared tensor among the
arguments of ``torch.matmul``, ``torch.nn.functional.conv2d`` or a
``torch.Tensor`` operator (``t + x`` arrives as ``Tensor.add(t, x)``), it
calls ``SharedTensor.__torch_function__``, which looks the callable up here.
The table is written out by hand; anything else raises ``TypeError`` naming
the callable.  The shared tensor class is handed in by the caller, so this
module imports nothing of ours.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

__all__ = ["dispatch"]

_T = torch.Tensor


Handler = Callable[..., Any]
"""Called as ``handler(shared_type, *args, **kwargs)``."""


def _binary(name: str, reflected: str) -> Handler:
    def call(shared: type[Any], a: Any, b: Any, *rest: Any, **kwargs: Any) -> Any:
        if rest or kwargs:
            raise TypeError(f"{name} of a shared tensor takes two operands only")
        if isinstance(a, shared):
            return getattr(a, name)(b)
        return getattr(b, reflected)(a)

    return call


def _method(name: str) -> Handler:
    def call(shared: type[Any], x: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(x, name)(*args, **kwargs)

    return call


def _conv2d(
    shared: type[Any], input: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
    dilation: Any = 1, groups: int = 1,
) -> Any:
    if not isinstance(input, shared):
        raise TypeError("conv2d with a shared weight needs a shared input too (share it first)")
    return input.conv2d(weight, bias, stride, padding, dilation, groups)


_ADD, _SUB, _MUL = _binary("__add__", "__radd__"), _binary("__sub__", "__rsub__"), _binary("__mul__", "__rmul__")
_MATMUL = _binary("__matmul__", "__rmatmul__")

_TABLE: Mapping[Callable[..., Any], Handler] = {
    torch.add: _ADD, _T.add: _ADD, _T.__add__: _ADD, _T.__radd__: _binary("__radd__", "__add__"),
    torch.sub: _SUB, _T.sub: _SUB, _T.__sub__: _SUB, _T.__rsub__: _binary("__rsub__", "__sub__"),
    torch.rsub: _binary("__rsub__", "__sub__"),
    torch.mul: _MUL, _T.mul: _MUL, _T.__mul__: _MUL, _T.__rmul__: _MUL,
    torch.matmul: _MATMUL, _T.matmul: _MATMUL, _T.__matmul__: _MATMUL,
    _T.__rmatmul__: _binary("__rmatmul__", "__matmul__"),
    torch.div: _binary("__truediv__", "__rtruediv__"), _T.__truediv__: _binary("__truediv__", "__rtruediv__"),
    torch.neg: _method("__neg__"), _T.neg: _method("__neg__"), _T.__neg__: _method("__neg__"),
    torch.sum: _method("sum"), _T.sum: _method("sum"),
    torch.mean: _method("mean"), _T.mean: _method("mean"),
    torch.reshape: _method("reshape"), _T.reshape: _method("reshape"), _T.view: _method("view"),
    torch.transpose: _method("transpose"), _T.transpose: _method("transpose"),
    torch.t: _method("t"), _T.t: _method("t"),
    torch.flatten: _method("flatten"), _T.flatten: _method("flatten"),
    F.conv2d: _conv2d, torch.conv2d: _conv2d,
}


def dispatch(shared: type[Any], func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """Run ``func(*args, **kwargs)`` with a ``shared`` tensor among the arguments."""
    handler = _TABLE.get(func)
    if handler is None:
        name = getattr(func, "__qualname__", repr(func))
        raise TypeError(f"{name} is not supported on shared tensors")
    return handler(shared, *args, **dict(kwargs))
