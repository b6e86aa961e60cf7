"""Which torch callable stands for which wire op, for ``__torch_function__``.

Runs in the user's process.  When torch meets a pointer among the arguments
of ``torch.add``, ``torch.cat``, ``torch.nn.functional.relu`` or a
``torch.Tensor`` method, it calls the pointer class's
``__torch_function__(func, types, args, kwargs)``; the pointer looks
``func`` up here to learn the op to send and its form:

- :data:`TORCH_FUNCTION_OPS`: functions of ``torch`` and
  ``torch.nn.functional`` (aliases included), sent in the FUNCTION form with
  all arguments as given.
- :data:`TENSOR_METHOD_OPS`: ``torch.Tensor`` methods and operator dunders,
  sent in the METHOD form with ``args[0]`` as the target.  Torch reports
  ``t + p`` as ``Tensor.add`` and ``2 - p`` as ``Tensor.__rsub__``; a pointer
  that is not a Tensor subclass only sees these when a real tensor is
  ``self``, since torch's C methods refuse other objects as ``self``.

Before sending, :func:`wire_kwargs` drops the defaults torch's Python
wrappers forward (``_stacklevel``, ``out=None``, ``inplace=False``) and
:func:`wire_index` puts a ``getitem`` index in its wire form.

Both tables are written out by hand: nothing here is derived from names that
travel on the wire.  A callable not listed is not remote-capable and the
pointer should raise ``TypeError`` naming it.  Imports torch and ``protocol``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Mapping

import torch
import torch.nn.functional as F

from protocol.ops import OpForm

__all__ = [
    "TORCH_FUNCTION_OPS",
    "TENSOR_METHOD_OPS",
    "op_for_torch_function",
    "route_for_torch_function",
    "wire_index",
    "wire_kwargs",
]

_T = torch.Tensor

TORCH_FUNCTION_OPS: Mapping[Callable[..., object], str] = MappingProxyType(
    {
        # Arithmetic (with torch's aliases).
        torch.add: "add",
        torch.sub: "sub",
        torch.subtract: "sub",
        torch.mul: "mul",
        torch.multiply: "mul",
        torch.div: "div",
        torch.divide: "div",
        torch.true_divide: "div",
        torch.floor_divide: "floor_divide",
        torch.remainder: "remainder",
        torch.fmod: "fmod",
        torch.pow: "pow",
        torch.matmul: "matmul",
        torch.mm: "mm",
        torch.bmm: "bmm",
        torch.dot: "dot",
        torch.outer: "outer",
        torch.maximum: "maximum",
        torch.minimum: "minimum",
        torch.rsub: "rsub",
        # Comparisons and tests.
        torch.eq: "eq",
        torch.ne: "ne",
        torch.not_equal: "ne",
        torch.lt: "lt",
        torch.less: "lt",
        torch.le: "le",
        torch.less_equal: "le",
        torch.gt: "gt",
        torch.greater: "gt",
        torch.ge: "ge",
        torch.greater_equal: "ge",
        torch.isclose: "isclose",
        torch.isnan: "isnan",
        torch.isinf: "isinf",
        torch.isfinite: "isfinite",
        # Logical and bitwise.
        torch.logical_and: "logical_and",
        torch.logical_or: "logical_or",
        torch.logical_xor: "logical_xor",
        torch.logical_not: "logical_not",
        torch.bitwise_and: "bitwise_and",
        torch.bitwise_or: "bitwise_or",
        torch.bitwise_xor: "bitwise_xor",
        torch.bitwise_not: "bitwise_not",
        # Unary elementwise.
        torch.neg: "neg",
        torch.negative: "neg",
        torch.abs: "abs",
        torch.absolute: "abs",
        torch.sign: "sign",
        torch.exp: "exp",
        torch.log: "log",
        torch.log2: "log2",
        torch.log10: "log10",
        torch.log1p: "log1p",
        torch.expm1: "expm1",
        torch.sqrt: "sqrt",
        torch.rsqrt: "rsqrt",
        torch.square: "square",
        torch.sin: "sin",
        torch.cos: "cos",
        torch.tan: "tan",
        torch.tanh: "tanh",
        F.tanh: "tanh",
        torch.sigmoid: "sigmoid",
        F.sigmoid: "sigmoid",
        torch.relu: "relu",
        F.relu: "relu",
        torch.floor: "floor",
        torch.ceil: "ceil",
        torch.round: "round",
        torch.trunc: "trunc",
        torch.fix: "trunc",
        torch.reciprocal: "reciprocal",
        torch.erf: "erf",
        torch.clamp: "clamp",
        torch.clip: "clamp",
        # Reductions and scans.
        torch.sum: "sum",
        torch.mean: "mean",
        torch.prod: "prod",
        torch.max: "max",
        torch.min: "min",
        torch.median: "median",
        torch.mode: "mode",
        torch.aminmax: "aminmax",
        torch.amax: "amax",
        torch.amin: "amin",
        torch.argmax: "argmax",
        torch.argmin: "argmin",
        torch.std: "std",
        torch.var: "var",
        torch.std_mean: "std_mean",
        torch.var_mean: "var_mean",
        torch.norm: "norm",
        torch.all: "all",
        torch.any: "any",
        torch.count_nonzero: "count_nonzero",
        torch.cumsum: "cumsum",
        torch.cumprod: "cumprod",
        torch.cummax: "cummax",
        torch.cummin: "cummin",
        torch.logsumexp: "logsumexp",
        torch.sort: "sort",
        torch.argsort: "argsort",
        torch.topk: "topk",
        torch.kthvalue: "kthvalue",
        # Shapes and views.
        torch.reshape: "reshape",
        torch.flatten: "flatten",
        torch.unflatten: "unflatten",
        torch.squeeze: "squeeze",
        torch.unsqueeze: "unsqueeze",
        torch.transpose: "transpose",
        torch.swapaxes: "transpose",
        torch.permute: "permute",
        torch.movedim: "movedim",
        torch.t: "t",
        torch.clone: "clone",
        torch.detach: "detach",
        torch.narrow: "narrow",
        torch.flip: "flip",
        torch.roll: "roll",
        # Indexing and selection.
        torch.index_select: "index_select",
        torch.gather: "gather",
        torch.masked_fill: "masked_fill",
        torch.where: "where",
        torch.argwhere: "argwhere",
        # Functions of several tensors, and tensors shaped like others.
        torch.cat: "cat",
        torch.concat: "cat",
        torch.concatenate: "cat",
        torch.stack: "stack",
        torch.einsum: "einsum",
        torch.zeros_like: "zeros_like",
        torch.ones_like: "ones_like",
        torch.full_like: "full_like",
        torch.softmax: "softmax",
        F.softmax: "softmax",
        torch.log_softmax: "log_softmax",
        F.log_softmax: "log_softmax",
        # torch.nn.functional (F.conv1d and F.conv2d are torch.conv1d and torch.conv2d).
        F.gelu: "gelu",
        F.silu: "silu",
        F.leaky_relu: "leaky_relu",
        F.elu: "elu",
        F.softplus: "softplus",
        F.hardtanh: "hardtanh",
        F.linear: "linear",
        F.conv1d: "conv1d",
        F.conv2d: "conv2d",
        F.max_pool2d: "max_pool2d",
        torch.max_pool2d: "max_pool2d",
        F.avg_pool2d: "avg_pool2d",
        F.dropout: "dropout",
        F.mse_loss: "mse_loss",
        F.l1_loss: "l1_loss",
        F.cross_entropy: "cross_entropy",
        F.binary_cross_entropy_with_logits: "binary_cross_entropy_with_logits",
        F.nll_loss: "nll_loss",
        F.one_hot: "one_hot",
        F.pad: "pad",
        F.normalize: "normalize",
        F.layer_norm: "layer_norm",
        # Autograd: torch.autograd.grad(loss, [w]) on pointers runs on their node.
        torch.autograd.grad: "grad",
    }
)
"""torch and torch.nn.functional callables, each sent as a FUNCTION-form op."""

TENSOR_METHOD_OPS: Mapping[Callable[..., object], str] = MappingProxyType(
    {
        # Operators: torch reports most as the named method, some as dunders.
        _T.__add__: "add",
        _T.__radd__: "radd",
        _T.__sub__: "sub",
        _T.__rsub__: "rsub",
        _T.__mul__: "mul",
        _T.__rmul__: "rmul",
        _T.__truediv__: "div",
        _T.__rtruediv__: "rtruediv",
        _T.__floordiv__: "floor_divide",
        _T.__rfloordiv__: "rfloordiv",
        _T.__mod__: "remainder",
        _T.__rmod__: "rmod",
        _T.__pow__: "pow",
        _T.__rpow__: "rpow",
        _T.__matmul__: "matmul",
        _T.__rmatmul__: "rmatmul",
        _T.__eq__: "eq",
        _T.__ne__: "ne",
        _T.__lt__: "lt",
        _T.__le__: "le",
        _T.__gt__: "gt",
        _T.__ge__: "ge",
        _T.__and__: "bitwise_and",
        _T.__rand__: "bitwise_and",
        _T.__or__: "bitwise_or",
        _T.__ror__: "bitwise_or",
        _T.__xor__: "bitwise_xor",
        _T.__rxor__: "bitwise_xor",
        _T.__invert__: "bitwise_not",
        _T.__neg__: "neg",
        _T.__abs__: "abs",
        _T.__getitem__: "getitem",
        _T.mT.__get__: "mT",  # type: ignore[attr-defined]  # the getter torch reports for p.mT
        # fmt: off
        # Arithmetic.
        _T.add: "add", _T.sub: "sub", _T.mul: "mul", _T.div: "div",
        _T.floor_divide: "floor_divide", _T.remainder: "remainder", _T.fmod: "fmod",
        _T.pow: "pow", _T.matmul: "matmul", _T.mm: "mm", _T.bmm: "bmm", _T.dot: "dot",
        _T.outer: "outer", _T.maximum: "maximum", _T.minimum: "minimum",
        # Comparisons, logical and bitwise.
        _T.eq: "eq", _T.ne: "ne", _T.lt: "lt", _T.le: "le", _T.gt: "gt", _T.ge: "ge",
        _T.isclose: "isclose", _T.isnan: "isnan", _T.isinf: "isinf", _T.isfinite: "isfinite",
        _T.logical_and: "logical_and", _T.logical_or: "logical_or",
        _T.logical_xor: "logical_xor", _T.logical_not: "logical_not",
        _T.bitwise_and: "bitwise_and", _T.bitwise_or: "bitwise_or",
        _T.bitwise_xor: "bitwise_xor", _T.bitwise_not: "bitwise_not",
        # Unary elementwise.
        _T.neg: "neg", _T.abs: "abs", _T.sign: "sign", _T.exp: "exp", _T.log: "log",
        _T.log2: "log2", _T.log10: "log10", _T.log1p: "log1p", _T.expm1: "expm1",
        _T.sqrt: "sqrt", _T.rsqrt: "rsqrt", _T.square: "square", _T.sin: "sin", _T.cos: "cos",
        _T.tan: "tan", _T.tanh: "tanh", _T.sigmoid: "sigmoid", _T.relu: "relu",
        _T.floor: "floor", _T.ceil: "ceil", _T.round: "round", _T.trunc: "trunc",
        _T.reciprocal: "reciprocal", _T.erf: "erf", _T.clamp: "clamp",
        _T.clip: "clamp",
        # Reductions and scans.
        _T.sum: "sum", _T.mean: "mean", _T.prod: "prod", _T.max: "max", _T.min: "min",
        _T.median: "median", _T.mode: "mode", _T.aminmax: "aminmax", _T.amax: "amax",
        _T.amin: "amin", _T.argmax: "argmax", _T.argmin: "argmin", _T.std: "std",
        _T.var: "var", _T.norm: "norm", _T.all: "all", _T.any: "any",
        _T.count_nonzero: "count_nonzero", _T.cumsum: "cumsum", _T.cumprod: "cumprod",
        _T.cummax: "cummax", _T.cummin: "cummin", _T.logsumexp: "logsumexp", _T.sort: "sort",
        _T.argsort: "argsort", _T.topk: "topk", _T.kthvalue: "kthvalue",
        # Shapes and views.
        _T.reshape: "reshape", _T.view: "view", _T.view_as: "view_as",
        _T.reshape_as: "reshape_as", _T.flatten: "flatten", _T.unflatten: "unflatten",
        _T.squeeze: "squeeze", _T.unsqueeze: "unsqueeze", _T.transpose: "transpose",
        _T.permute: "permute", _T.movedim: "movedim", _T.t: "t", _T.expand: "expand",
        _T.expand_as: "expand_as", _T.repeat: "repeat", _T.contiguous: "contiguous",
        _T.clone: "clone", _T.detach: "detach", _T.narrow: "narrow", _T.flip: "flip",
        _T.roll: "roll",
        # Indexing and selection (Tensor.where(cond, y) differs: not listed).
        _T.index_select: "index_select", _T.gather: "gather", _T.masked_fill: "masked_fill",
        _T.argwhere: "argwhere",
        # Dtype conversions.
        _T.float: "float", _T.double: "double", _T.half: "half", _T.bfloat16: "bfloat16",
        _T.int: "int", _T.long: "long", _T.short: "short", _T.bool: "bool", _T.to: "to",
        _T.type_as: "type_as", _T.softmax: "softmax", _T.log_softmax: "log_softmax",
        _T.requires_grad_: "leaf",
        # fmt: on
    }
)
"""torch.Tensor methods and dunders, each sent as a METHOD-form op on args[0]."""


def wire_index(index: object) -> list[object]:
    """An index for the ``getitem`` op: always a list of index components.

    msgpack has no tuples, so the node reads a list as a tuple index:
    ``x[0, 1:]`` travels as ``[0, slice(1, None)]``, and a single component
    is wrapped, so that ``x[[1, 0]]`` (advanced indexing) travels as
    ``[[1, 0]]`` and cannot be mistaken for ``x[1, 0]``.
    """
    return list(index) if isinstance(index, tuple) else [index]


_DROPPED_DEFAULTS: Mapping[str, object] = MappingProxyType({"out": None, "inplace": False})


def wire_kwargs(kwargs: Mapping[str, object] | None) -> dict[str, object]:
    """Keyword arguments as they should travel for a ``__torch_function__`` call.

    Torch's Python wrappers forward their defaults to ``__torch_function__``:
    ``F.softmax`` adds its private ``_stacklevel``, ``torch.norm`` and
    ``F.normalize`` add ``out=None``, ``torch.nn`` modules pass
    ``inplace=False``.  The node refuses ``_``-prefixed keywords and any
    ``out``, so those are removed here; everything else is kept as given.
    """
    cleaned: dict[str, object] = {}
    for name, value in (kwargs or {}).items():
        if name == "_stacklevel":
            continue
        if name in _DROPPED_DEFAULTS and value is _DROPPED_DEFAULTS[name]:
            continue
        cleaned[name] = value
    return cleaned


def route_for_torch_function(func: object) -> tuple[str, OpForm] | None:
    """The op and form a ``__torch_function__`` call of ``func`` maps to, if any."""
    try:
        op = TORCH_FUNCTION_OPS.get(func)  # type: ignore[call-overload]
        if op is not None:
            return op, OpForm.FUNCTION
        op = TENSOR_METHOD_OPS.get(func)  # type: ignore[call-overload]
    except TypeError:  # an unhashable callable is not one of ours
        return None
    return None if op is None else (op, OpForm.METHOD)


def op_for_torch_function(func: object) -> str | None:
    """The wire op name for ``func``, or None if it cannot run remotely."""
    route = route_for_torch_function(func)
    return None if route is None else route[0]
