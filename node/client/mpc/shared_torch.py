"""Which torch callables a :class:`~node.client.mpc.shared.SharedTensor` answers, and how.

Runs in the user's process.  When torch meets a shared tensor among the
arguments of ``torch.matmul``, ``torch.nn.functional.conv2d`` or a
``torch.Tensor`` operator (``t + x`` arrives as ``Tensor.add(t, x)``), it
calls ``SharedTensor.__torch_function__``, which looks the callable up here.
The table is written out by hand; anything else raises ``TypeError`` naming
the callable.  The shared tensor class is handed in by the caller; the
comparisons and approximations it routes to are written for shared and
plain tensors alike and never import the shared tensor module.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from . import approximations, comparisons, softmax

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


def _function(fn: Callable[..., Any]) -> Handler:
    """A function of :mod:`.comparisons` / :mod:`.approximations`, which takes shared or plain operands anywhere."""

    def call(shared: type[Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("_stacklevel", None)  # F.softmax's private argument
        return fn(*args, **kwargs)

    return call


def _relu(shared: type[Any], x: Any, inplace: bool = False) -> Any:
    if inplace:
        raise TypeError("relu of a shared tensor cannot be in place")
    return x.relu()


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
    # Comparisons (node.client.mpc.comparisons).
    torch.gt: _function(comparisons.gt), _T.gt: _function(comparisons.gt), _T.__gt__: _function(comparisons.gt),
    torch.ge: _function(comparisons.ge), _T.ge: _function(comparisons.ge), _T.__ge__: _function(comparisons.ge),
    torch.lt: _function(comparisons.lt), _T.lt: _function(comparisons.lt), _T.__lt__: _function(comparisons.lt),
    torch.le: _function(comparisons.le), _T.le: _function(comparisons.le), _T.__le__: _function(comparisons.le),
    torch.sign: _method("sign"), _T.sign: _method("sign"),
    torch.abs: _method("abs"), _T.abs: _method("abs"), _T.__abs__: _method("abs"),
    torch.clamp: _function(comparisons.clamp), _T.clamp: _function(comparisons.clamp),
    torch.clip: _function(comparisons.clamp), _T.clip: _function(comparisons.clamp),
    torch.relu: _relu, _T.relu: _relu, F.relu: _relu,
    torch.max: _function(comparisons.max_), _T.max: _function(comparisons.max_),
    torch.min: _function(comparisons.min_), _T.min: _function(comparisons.min_),
    torch.maximum: _function(comparisons.maximum), torch.minimum: _function(comparisons.minimum),
    torch.amax: _function(comparisons.amax), _T.amax: _function(comparisons.amax),
    torch.argmax: _function(comparisons.argmax), _T.argmax: _function(comparisons.argmax),
    torch.argmin: _function(comparisons.argmin), _T.argmin: _function(comparisons.argmin),
    F.max_pool2d: _function(comparisons.max_pool2d), torch.max_pool2d: _function(comparisons.max_pool2d),
    torch.where: _function(comparisons.where),
    # Approximations (node.client.mpc.approximations, .softmax).
    torch.exp: _method("exp"), _T.exp: _method("exp"),
    torch.log: _method("log"), _T.log: _method("log"),
    torch.sqrt: _method("sqrt"), _T.sqrt: _method("sqrt"),
    torch.rsqrt: _method("rsqrt"), _T.rsqrt: _method("rsqrt"),
    torch.reciprocal: _method("reciprocal"), _T.reciprocal: _method("reciprocal"),
    torch.sigmoid: _method("sigmoid"), _T.sigmoid: _method("sigmoid"), F.sigmoid: _method("sigmoid"),
    torch.tanh: _method("tanh"), _T.tanh: _method("tanh"), F.tanh: _method("tanh"),
    F.softmax: _function(softmax.softmax), torch.softmax: _function(softmax.softmax),
    _T.softmax: _function(softmax.softmax),
    F.log_softmax: _function(softmax.log_softmax), torch.log_softmax: _function(softmax.log_softmax),
    _T.log_softmax: _function(softmax.log_softmax),
    F.cross_entropy: _function(softmax.cross_entropy),
}


def dispatch(shared: type[Any], func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """Run ``func(*args, **kwargs)`` with a ``shared`` tensor among the arguments."""
    handler = _TABLE.get(func)
    if handler is None:
        name = getattr(func, "__qualname__", repr(func))
        raise TypeError(f"{name} is not supported on shared tensors")
    return handler(shared, *args, **dict(kwargs))
