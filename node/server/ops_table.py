"""The node's op table: each allowlisted wire name mapped to our own callable.

Runs inside a node.  Every entry is written out by hand and calls torch
explicitly; no callable is ever found by looking up a name that came from the
wire.  A callable takes the target (if any) as its first positional argument,
followed by the command's args, then its kwargs, so a name allowed in both
forms behaves the same in both.

Where torch's own signature would let a peer do something the allowlist
forbids, the entry is a wrapper with a narrower signature: ``out`` or
``inplace`` taken positionally (``normalize``, ``norm``, ``silu``...), a
second output (``max_pool2d(return_indices=True)``), a data-dependent number
of outputs (``where(condition)``), devices (``to``, ``*_like``).

Imports torch and ``protocol``; nothing else of ours.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, Mapping, cast

import torch
import torch.nn.functional as F

from protocol.errors import BadRequest

__all__ = ["OP_TABLE"]

Tensor = torch.Tensor


_INDEX_COMPONENT_TYPES = (int, slice, type(None), torch.Tensor, list)


def _getitem(x: Tensor, index: object) -> Tensor:
    """``x[index]``; a list on the wire stands for a tuple of index components.

    msgpack has no tuples, so the client sends ``x[0, 1:3]`` as
    ``[0, slice(1, 3)]`` and ``x[[0, 2]]`` (advanced indexing with a list)
    as ``[[0, 2]]``.  Inner lists stay lists.  Any other value (int, slice,
    None, Ellipsis, tensor) is a single component.
    """
    components = index if isinstance(index, list) else [index]
    for component in components:
        if not isinstance(component, _INDEX_COMPONENT_TYPES) and component is not Ellipsis:
            raise TypeError(f"an index component may not be a {type(component).__name__}")
    key = tuple(index) if isinstance(index, list) else index
    return x[key]  # type: ignore[index]  # torch checks the components' values


_TO_KWARGS = frozenset({"dtype", "copy"})


def _to(x: Tensor, *args: object, **kwargs: object) -> Tensor:
    """``x.to(dtype)``; the only device that may be named is ``"cpu"``."""
    bad_kwargs = sorted(set(kwargs) - _TO_KWARGS)
    if bad_kwargs:
        raise BadRequest(
            f"op 'to' accepts the keywords dtype and copy only, not {bad_kwargs[0][:64]!r}",
            {"op": "to", "keyword": bad_kwargs[0][:64]},
        )
    dtypes: list[torch.dtype] = []
    for arg in (*args, kwargs.get("dtype")):
        if isinstance(arg, torch.dtype):
            dtypes.append(arg)
        elif not (arg is None or (isinstance(arg, str) and arg == "cpu")):
            raise BadRequest("op 'to' accepts a dtype and the device 'cpu' only", {"op": "to"})
    if len(dtypes) > 1:
        raise BadRequest("op 'to' accepts one dtype at most", {"op": "to"})
    copy = kwargs.get("copy", False)
    if not isinstance(copy, bool):
        raise BadRequest("op 'to': copy must be a bool", {"op": "to"})
    return x.to(dtype=dtypes[0] if dtypes else x.dtype, copy=copy)


def _where(condition: Tensor, x: Any, y: Any) -> Tensor:
    """Three-argument ``torch.where`` only (the one-argument form is nonzero)."""
    return torch.where(condition, x, y)


def _zeros_like(x: Tensor, *, dtype: torch.dtype | None = None) -> Tensor:
    return torch.zeros_like(x, dtype=dtype)


def _ones_like(x: Tensor, *, dtype: torch.dtype | None = None) -> Tensor:
    return torch.ones_like(x, dtype=dtype)


def _full_like(x: Tensor, fill_value: float, *, dtype: torch.dtype | None = None) -> Tensor:
    return torch.full_like(x, fill_value, dtype=dtype)


def _softmax(x: Tensor, dim: int, dtype: torch.dtype | None = None) -> Tensor:
    return torch.softmax(x, dim, dtype=dtype)


def _log_softmax(x: Tensor, dim: int, dtype: torch.dtype | None = None) -> Tensor:
    return torch.log_softmax(x, dim, dtype=dtype)


def _norm(
    x: Tensor,
    p: float | str | None = "fro",
    dim: int | list[int] | None = None,
    keepdim: bool = False,
    *,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """``torch.norm`` without its positional ``out``."""
    return cast(Tensor, torch.norm(x, p, dim, keepdim, dtype=dtype))


def _refuse_inplace(op: str, inplace: object) -> None:
    """``torch.nn`` modules pass ``inplace`` positionally; only False is allowed."""
    if inplace is not False:
        raise BadRequest(f"op {op!r}: in-place operation is not allowed", {"op": op})


def _normalize(
    x: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out: None = None
) -> Tensor:
    """``F.normalize`` whose positional ``out`` may only be None."""
    if out is not None:
        raise BadRequest("op 'normalize' does not accept out", {"op": "normalize"})
    return F.normalize(x, p, dim, eps)


def _silu(x: Tensor, inplace: bool = False) -> Tensor:
    _refuse_inplace("silu", inplace)
    return F.silu(x)


def _elu(x: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    _refuse_inplace("elu", inplace)
    return F.elu(x, alpha)


def _leaky_relu(x: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    _refuse_inplace("leaky_relu", inplace)
    return F.leaky_relu(x, negative_slope)


def _hardtanh(
    x: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False
) -> Tensor:
    _refuse_inplace("hardtanh", inplace)
    return F.hardtanh(x, min_val, max_val)


def _relu(x: Tensor, inplace: bool = False) -> Tensor:
    _refuse_inplace("relu", inplace)
    return torch.relu(x)


def _dropout(x: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Random when ``training`` is true (torch's default): not reproducible."""
    _refuse_inplace("dropout", inplace)
    return F.dropout(x, p, training)


def _max_pool2d(
    x: Tensor,
    kernel_size: int | list[int],
    stride: int | list[int] | None = None,
    padding: int | list[int] = 0,
    dilation: int | list[int] = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor:
    """``F.max_pool2d`` with one output: ``return_indices=True`` is refused."""
    if return_indices is not False:
        raise BadRequest(
            "op 'max_pool2d' does not allow return_indices", {"op": "max_pool2d"}
        )
    return F.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode=ceil_mode)


def _leaf(x: Tensor, requires_grad: bool = True) -> Tensor:
    """A new leaf with ``x``'s data (no copy) and ``requires_grad``; ``x`` is left as it was.

    ``requires_grad`` must be a real bool: a tensor there would be read as
    a number, and its value would decide the outcome.
    """
    if not isinstance(requires_grad, bool):
        raise BadRequest("op 'leaf': requires_grad must be a bool", {"op": "leaf"})
    return x.detach().requires_grad_(requires_grad)


def _tensors(value: object) -> bool:
    """Whether ``value`` is a tensor or a non-empty list of tensors."""
    if isinstance(value, list):
        return bool(value) and all(isinstance(item, Tensor) for item in value)
    return isinstance(value, Tensor)


def _grad(
    outputs: Tensor | list[Tensor],
    inputs: list[Tensor],
    grad_outputs: Tensor | list[Tensor] | None = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    only_inputs: bool = True,
    allow_unused: bool | None = None,
    is_grads_batched: bool = False,
    materialize_grads: bool = False,
) -> tuple[Tensor, ...]:
    """``torch.autograd.grad(outputs, inputs)``: one new gradient per input.

    What ``loss.backward()`` becomes on a node: nothing is written into the
    inputs (no ``.grad``); the client keeps the gradients as pointers.  The
    history is freed unless ``retain_graph``.  An input the output does not
    depend on is torch's error, as ``backward`` would leave it without a
    gradient.  The keywords ``torch.autograd.grad`` forwards through
    ``__torch_function__`` are accepted at their defaults only:
    ``create_graph`` would store gradients with histories of their own,
    ``allow_unused`` would produce ``None`` where a tensor is promised.
    """
    if not isinstance(inputs, list) or not _tensors(inputs):
        raise BadRequest("op 'grad': inputs must be a list of tensors", {"op": "grad"})
    if not _tensors(outputs) or not (grad_outputs is None or _tensors(grad_outputs)):
        raise BadRequest("op 'grad': outputs and grad_outputs must be tensors", {"op": "grad"})
    if not (retain_graph is None or isinstance(retain_graph, bool)):
        raise BadRequest("op 'grad': retain_graph must be a bool", {"op": "grad"})
    if (create_graph, only_inputs, bool(allow_unused), is_grads_batched, materialize_grads) != (
        False, True, False, False, False
    ):
        raise BadRequest(
            "op 'grad' accepts create_graph, only_inputs, allow_unused, is_grads_batched "
            "and materialize_grads at their defaults only",
            {"op": "grad"},
        )
    return torch.autograd.grad(outputs, inputs, grad_outputs=grad_outputs, retain_graph=retain_graph)


OP_TABLE: Mapping[str, Callable[..., object]] = MappingProxyType(
    {
        # Arithmetic.
        "add": torch.add,
        "sub": torch.sub,
        "mul": torch.mul,
        "div": torch.div,
        "floor_divide": torch.floor_divide,
        "remainder": torch.remainder,
        "fmod": torch.fmod,
        "pow": torch.pow,
        "matmul": torch.matmul,
        "mm": torch.mm,
        "bmm": torch.bmm,
        "dot": torch.dot,
        "outer": torch.outer,
        "maximum": torch.maximum,
        "minimum": torch.minimum,
        # Reflected: a is the target (right operand), b the left operand.
        "radd": lambda a, b: b + a,
        "rsub": torch.rsub,
        "rmul": lambda a, b: b * a,
        "rtruediv": lambda a, b: b / a,
        "rfloordiv": lambda a, b: b // a,
        "rmod": lambda a, b: b % a,
        "rpow": lambda a, b: b**a,
        "rmatmul": lambda a, b: b @ a,
        # Comparisons and tests.
        "eq": torch.eq,
        "ne": torch.ne,
        "lt": torch.lt,
        "le": torch.le,
        "gt": torch.gt,
        "ge": torch.ge,
        "isclose": torch.isclose,
        "isnan": torch.isnan,
        "isinf": torch.isinf,
        "isfinite": torch.isfinite,
        # Logical and bitwise.
        "logical_and": torch.logical_and,
        "logical_or": torch.logical_or,
        "logical_xor": torch.logical_xor,
        "logical_not": torch.logical_not,
        "bitwise_and": torch.bitwise_and,
        "bitwise_or": torch.bitwise_or,
        "bitwise_xor": torch.bitwise_xor,
        "bitwise_not": torch.bitwise_not,
        # Unary elementwise.
        "neg": torch.neg,
        "abs": torch.abs,
        "sign": torch.sign,
        "exp": torch.exp,
        "log": torch.log,
        "log2": torch.log2,
        "log10": torch.log10,
        "log1p": torch.log1p,
        "expm1": torch.expm1,
        "sqrt": torch.sqrt,
        "rsqrt": torch.rsqrt,
        "square": torch.square,
        "sin": torch.sin,
        "cos": torch.cos,
        "tan": torch.tan,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "relu": _relu,
        "floor": torch.floor,
        "ceil": torch.ceil,
        "round": torch.round,
        "trunc": torch.trunc,
        "reciprocal": torch.reciprocal,
        "erf": torch.erf,
        "clamp": torch.clamp,
        # Reductions and scans.
        "sum": torch.sum,
        "mean": torch.mean,
        "prod": torch.prod,
        "max": torch.max,
        "min": torch.min,
        "median": torch.median,
        "mode": torch.mode,
        "aminmax": torch.aminmax,
        "amax": torch.amax,
        "amin": torch.amin,
        "argmax": torch.argmax,
        "argmin": torch.argmin,
        "std": torch.std,
        "var": torch.var,
        "std_mean": torch.std_mean,
        "var_mean": torch.var_mean,
        "norm": _norm,
        "all": torch.all,
        "any": torch.any,
        "count_nonzero": torch.count_nonzero,
        "cumsum": torch.cumsum,
        "cumprod": torch.cumprod,
        "cummax": torch.cummax,
        "cummin": torch.cummin,
        "logsumexp": torch.logsumexp,
        "sort": torch.sort,
        "argsort": torch.argsort,
        "topk": torch.topk,
        "kthvalue": torch.kthvalue,
        # Shapes and views.
        "reshape": lambda x, *a, **k: x.reshape(*a, **k),
        "view": lambda x, *a, **k: x.view(*a, **k),
        "view_as": lambda x, other: x.view_as(other),
        "reshape_as": lambda x, other: x.reshape_as(other),
        "flatten": torch.flatten,
        "unflatten": torch.unflatten,
        "squeeze": torch.squeeze,
        "unsqueeze": torch.unsqueeze,
        "transpose": torch.transpose,
        "permute": lambda x, *a, **k: x.permute(*a, **k),
        "movedim": torch.movedim,
        "t": torch.t,
        "mT": lambda x: x.mT,
        "expand": lambda x, *a, **k: x.expand(*a, **k),
        "expand_as": lambda x, other: x.expand_as(other),
        "repeat": lambda x, *a, **k: x.repeat(*a, **k),
        "contiguous": lambda x, **k: x.contiguous(**k),
        "clone": torch.clone,
        "detach": torch.detach,
        "narrow": torch.narrow,
        "flip": lambda x, *a, **k: x.flip(*a, **k),
        "roll": torch.roll,
        # Indexing and selection.
        "getitem": _getitem,
        "index_select": torch.index_select,
        "gather": torch.gather,
        "masked_fill": torch.masked_fill,
        "where": _where,
        "argwhere": torch.argwhere,
        # Dtype conversions.
        "float": lambda x: x.float(),
        "double": lambda x: x.double(),
        "half": lambda x: x.half(),
        "bfloat16": lambda x: x.bfloat16(),
        "int": lambda x: x.int(),
        "long": lambda x: x.long(),
        "short": lambda x: x.short(),
        "bool": lambda x: x.bool(),
        "to": _to,
        "type_as": lambda x, other: x.type_as(other),
        # Functions of several tensors, and tensors shaped like others.
        "cat": torch.cat,
        "stack": torch.stack,
        "einsum": torch.einsum,
        "zeros_like": _zeros_like,
        "ones_like": _ones_like,
        "full_like": _full_like,
        "softmax": _softmax,
        "log_softmax": _log_softmax,
        # torch.nn.functional.
        "gelu": F.gelu,
        "silu": _silu,
        "leaky_relu": _leaky_relu,
        "elu": _elu,
        "softplus": F.softplus,
        "hardtanh": _hardtanh,
        "linear": F.linear,
        "conv1d": F.conv1d,
        "conv2d": F.conv2d,
        "max_pool2d": _max_pool2d,
        "avg_pool2d": F.avg_pool2d,
        "dropout": _dropout,
        "mse_loss": F.mse_loss,
        "l1_loss": F.l1_loss,
        "cross_entropy": F.cross_entropy,
        "binary_cross_entropy_with_logits": F.binary_cross_entropy_with_logits,
        "nll_loss": F.nll_loss,
        "one_hot": F.one_hot,
        "pad": F.pad,
        "normalize": _normalize,
        "layer_norm": F.layer_norm,
        # Autograd: both create objects, neither writes into one.
        "leaf": _leaf,
        "grad": _grad,
    }
)
"""Every wire name in ``protocol.ops.OPS``, mapped to what the node calls."""
