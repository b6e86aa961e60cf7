"""How much memory an op's results take, known before the op runs.

The quota must refuse a command before its results are allocated: one
``x.repeat(10**5, 10**5)`` must not take 40 GB first and be refused after.
Two tools, cheapest first:

- :func:`bytes_bound`: an upper bound from the inputs' shapes alone, a few
  microseconds of integer arithmetic.  Most ops' results are no larger than
  their inputs broadcast together (elementwise ops, reductions, views,
  conversions); ``cat``/``stack`` are bounded by the sum of their inputs,
  products by rows times columns.  Every element is counted at 8 bytes
  (the largest item size allowed), so a dtype conversion cannot escape.
  When the bound fits in the principal's quota, the op runs at once.
- :func:`meta_specs`: run the op on ``meta`` tensors (shapes and dtypes
  without data) to learn the exact result sizes.  Used when the bound does
  not fit, for ops with no cheap bound (:data:`BOUNDS` says ``META``:
  ``repeat``, ``pad``, ``one_hot``, ``einsum``, convolutions, advanced
  indexing...) and for restricted commands (:mod:`node.server.disclosure`),
  where a meta run also proves the shapes do not depend on hidden values.
  Costs tens of microseconds, so it is never on the common path.

Imports torch, ``protocol`` and the op table; never the store or the session.
"""

from __future__ import annotations

import enum
import math
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import torch

from protocol.errors import OpFailed

from .disclosure import tensors_in
from .ops import run_op

__all__ = ["Bound", "BOUNDS", "bytes_bound", "meta_specs", "spec_bytes", "Spec", "MAX_ITEMSIZE"]

MAX_ITEMSIZE = 8
"""Largest item size of an allowed dtype (float64, int64)."""

Spec = tuple[torch.Size, torch.dtype]


class Bound(enum.Enum):
    """How to bound an op's result size from its inputs' shapes."""

    SHAPED = "shaped"
    """Each result has at most as many elements as all tensor inputs broadcast together."""
    SUM = "sum"
    """At most the inputs' elements added up (cat, stack)."""
    MATMUL = "matmul"
    """At most the left operand's rows times the right operand's columns."""
    OUTER = "outer"
    """The product of the inputs' element counts."""
    POOL = "pool"
    """Pooling: padding at most half the kernel, so at most (H + 2) x (W + 2) per plane."""
    NONZERO = "nonzero"
    """One row of indices per element at most."""
    VIEW = "view"
    """A view of an input: allocates nothing (the store counts what it would keep alive)."""
    META = "meta"
    """No cheap bound: run on meta tensors."""


def _table() -> Mapping[str, Bound]:
    shaped = """
        add sub mul div floor_divide remainder fmod pow maximum minimum radd rsub rmul rtruediv
        rfloordiv rmod rpow eq ne lt le gt ge isclose isnan isinf isfinite logical_and logical_or
        logical_xor logical_not bitwise_and bitwise_or bitwise_xor bitwise_not neg abs sign exp
        log log2 log10 log1p expm1 sqrt rsqrt square sin cos tan tanh sigmoid relu floor ceil
        round trunc reciprocal erf clamp sum mean prod max min median mode aminmax amax amin
        argmax argmin std var std_mean var_mean norm all any count_nonzero cumsum cumprod cummax
        cummin logsumexp sort argsort topk kthvalue reshape view view_as reshape_as flatten
        unflatten squeeze unsqueeze transpose permute movedim t mT contiguous clone detach narrow
        flip roll getitem gather masked_fill where float double half bfloat16 int long short bool
        to type_as zeros_like ones_like full_like softmax log_softmax gelu silu leaky_relu elu
        softplus hardtanh dropout mse_loss l1_loss cross_entropy binary_cross_entropy_with_logits
        nll_loss normalize layer_norm
    """
    table = {name: Bound.SHAPED for name in shaped.split()}
    table.update(
        cat=Bound.SUM, stack=Bound.SUM, matmul=Bound.MATMUL, mm=Bound.MATMUL,
        bmm=Bound.MATMUL, rmatmul=Bound.MATMUL, linear=Bound.MATMUL, dot=Bound.OUTER,
        outer=Bound.OUTER, max_pool2d=Bound.POOL, avg_pool2d=Bound.POOL,
        argwhere=Bound.NONZERO, expand=Bound.VIEW, expand_as=Bound.VIEW,
        leaf=Bound.SHAPED, grad=Bound.SUM,
    )
    return MappingProxyType(table)


BOUNDS: Mapping[str, Bound] = _table()
"""Ops with a cheap bound; any op missing here (repeat, pad, one_hot, einsum, conv1d,
conv2d, index_select...) is ``META``."""


def _span(dims: Sequence[int]) -> int:
    """Product of the dims, empty ones counted as 1 (so a bound never collapses to 0)."""
    return math.prod(max(d, 1) for d in dims)


_SHAPED, _META, _VIEW = Bound.SHAPED, Bound.META, Bound.VIEW


def _broadcast_elements(tensors: Sequence[torch.Tensor]) -> int:
    """Product over right-aligned dims of the largest size: at least any broadcast result."""
    first = tensors[0]
    if len(tensors) == 1 or all(t.shape == first.shape for t in tensors):
        return first.numel()
    dims: list[int] = []
    for tensor in tensors:
        shape = tensor.shape
        extra = len(shape) - len(dims)
        if extra > 0:
            dims[:0] = [1] * extra
        offset = len(dims) - len(shape)
        for i, size in enumerate(shape):
            if size > dims[offset + i]:
                dims[offset + i] = size
    return math.prod(dims)


def _matmul_elements(left: object, right: object) -> int | None:
    if not isinstance(left, torch.Tensor) or not isinstance(right, torch.Tensor):
        return None
    rows = _span(left.shape[:-1])
    cols = _span(right.shape[:-2]) * max(right.shape[-1], 1) if right.dim() >= 2 else 1
    return rows * cols


def bytes_bound(
    op: str, call_args: Sequence[object], kwargs: Mapping[str, object], outputs: int
) -> int | None:
    """Upper bound on the bytes of ``op``'s results, or None when only a meta run can tell."""
    kind = BOUNDS.get(op, _META)
    if kind is _SHAPED and op != "getitem":  # the common case, kept short
        tensors = _tensor_inputs(call_args, kwargs)
        if not tensors:
            return None
        return _broadcast_elements(tensors) * MAX_ITEMSIZE * outputs
    if kind is _META:
        return None
    if kind is _VIEW:
        return 0
    if op == "getitem" and any(
        isinstance(item, (torch.Tensor, list)) for item in _components(call_args)
    ):
        return None  # advanced indexing: as many rows as the index has
    tensors = _tensor_inputs(call_args, kwargs)
    if not tensors:
        return None
    if kind is _SHAPED:
        elements = _broadcast_elements(tensors)
    elif kind is Bound.SUM:
        elements = sum(t.numel() for t in tensors)
    elif kind is Bound.OUTER:
        elements = math.prod(_span(t.shape) for t in tensors)
    elif kind is Bound.POOL:
        elements = 9 * _broadcast_elements(tensors)
    elif kind is Bound.NONZERO:
        elements = max(t.numel() * max(t.dim(), 1) for t in tensors)
    else:
        found = _matmul_operands(op, call_args, kwargs)
        if found is None:
            return None
        elements = found
    return elements * MAX_ITEMSIZE * outputs


def _tensor_inputs(call_args: Sequence[object], kwargs: Mapping[str, object]) -> list[torch.Tensor]:
    """The tensors among the arguments (a plain loop: this runs for every command)."""
    tensors: list[torch.Tensor] = []
    for values in (call_args, kwargs.values()):
        for value in values:
            if isinstance(value, torch.Tensor):
                tensors.append(value)
            elif isinstance(value, (list, dict)):
                tensors.extend(tensors_in(value))
    return tensors


def _components(call_args: Sequence[object]) -> list[object]:
    index = call_args[1] if len(call_args) > 1 else None
    return index if isinstance(index, list) else [index]


def _matmul_operands(op: str, call_args: Sequence[object], kwargs: Mapping[str, object]) -> int | None:
    first = call_args[0] if call_args else kwargs.get("input")
    second = call_args[1] if len(call_args) > 1 else kwargs.get("other", kwargs.get("weight"))
    if op == "rmatmul":
        return _matmul_elements(second, first)
    if op == "linear":  # x @ weight.T: the weight's rows are the result's columns
        if not isinstance(first, torch.Tensor) or not isinstance(second, torch.Tensor):
            return None
        return _span(first.shape[:-1]) * _span(second.shape[:-1])
    return _matmul_elements(first, second)


def spec_bytes(specs: Sequence[Spec]) -> int:
    """Bytes the results described by ``specs`` take."""
    return sum(math.prod(shape) * torch.empty((), dtype=dtype).element_size() for shape, dtype in specs)


def meta_specs(
    op: str, target: torch.Tensor | None, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> list[Spec]:
    """Shapes and dtypes of ``op``'s results, from a run on meta tensors (no data).

    A failure is ``OP_FAILED`` with torch's message, which cannot echo
    values (meta tensors have none); when the op needed a value (a tensor
    used as a number or a size, a result sized by the data) the message says so.
    """
    if op == "grad":
        return _grad_specs(args, kwargs)
    meta_target = target.to("meta") if target is not None else None
    meta_args = [_meta(a) for a in args]
    meta_kwargs = {k: _meta(v) for k, v in kwargs.items()}
    if op == "getitem" and args:
        meta_args[0] = _meta_index(args[0])
    if op == "one_hot":
        _fix_classes(args, kwargs, meta_kwargs)
    try:
        outputs = run_op(op, meta_target, meta_args, meta_kwargs, device="meta")
    except OpFailed as exc:
        cause = exc.__cause__
        if cause is not None and "meta" in str(cause):
            raise OpFailed(
                f"op {op!r} failed: it needs the values of a tensor argument (a tensor used "
                "as a number or a size, or a result sized by the data); give numbers instead",
                {"op": op},
            ) from None
        raise
    return [(t.shape, t.dtype) for t in outputs]


def _grad_specs(args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[Spec]:
    """``grad`` gives one gradient shaped like each input (a meta copy has no history to differentiate)."""
    inputs = args[1] if len(args) > 1 else kwargs.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise OpFailed("op 'grad' failed: inputs must be a list of tensors", {"op": "grad"})
    return [(t.shape, t.dtype) for t in inputs]


def _meta(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to("meta")
    if isinstance(value, list):
        return [_meta(item) for item in value]
    if isinstance(value, dict):
        return {key: _meta(item) for key, item in value.items()}
    return value


def _meta_index(index: Any) -> Any:
    """A getitem index on meta tensors; a bool mask becomes its (data-free) nonzero indices."""
    components = index if isinstance(index, list) else [index]
    converted: list[Any] = []
    for item in components:
        if isinstance(item, torch.Tensor) and item.dtype == torch.bool and item.dim() > 0:
            converted.extend(i.to("meta") for i in item.nonzero(as_tuple=True))
        else:
            converted.append(_meta(item))
    return converted if isinstance(index, list) or len(converted) != 1 else converted[0]


def _fix_classes(args: Sequence[Any], kwargs: Mapping[str, Any], meta_kwargs: dict[str, Any]) -> None:
    """``one_hot`` without num_classes takes max + 1 from the (readable) data: do the same."""
    classes = args[1] if len(args) > 1 else kwargs.get("num_classes", -1)
    source = args[0] if args else kwargs.get("tensor")
    if classes == -1 and isinstance(source, torch.Tensor) and source.numel() and len(args) < 2:
        meta_kwargs["num_classes"] = int(source.max()) + 1

