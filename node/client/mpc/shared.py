"""``SharedTensor``: a value secret-shared between nodes, with PyTorch operators.

Runs in the user's process, which holds only pointers: share i of the value
lives on party i as an int64 ring tensor (:mod:`node.mpc`).  Every op is
posted and returns at once (errors surface at the next ``get``/``sync``):

- linear ops are ordinary pointer commands on every party: ``x + y``,
  ``x - y``, ``-x``, ``sum``, ``reshape``/``view``/``transpose``/``t``,
  indexing; a public constant is encoded and added by party 0 only;
- a product with a public operand (``x * 3``, ``x * 0.25``, ``x / 4``,
  ``x @ w``, ``conv2d(x, w)``, ``mean``) is computed locally by every party,
  then truncated when it carries more fractional bits than the precision;
- a product of two shared values (``x * y``, ``x @ y``, ``conv2d``) is one
  Beaver step (:mod:`node.client.mpc.group`): the crypto provider deals,
  parties open their masked values to each other, node to node, and
  truncate (locally for 2 parties, with the dealer scheme otherwise);
- ``x.drelu()`` (bits [x >= 0]: precision 0, dtype bool) and ``x.relu()``
  are comparison steps (:mod:`node.client.mpc.compare_steps`).

A bit (precision 0) meets a fixed-point value (precision p): a product has
precision p and needs no truncation; a sum first scales the bit by 2^p
(a local public multiply).  Other precision mixes are refused.

``get()`` fetches every share (each subject to its node's read policy),
adds them and decodes.  Shapes are tracked here on meta tensors, so shape
errors are raised before anything is sent.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from protocol.mpc import BilinearKind, StepOp, TruncationScheme, WireConv, WireTriple, WireTruncation

from node.mpc import FixedPointEncoder, reconstruct
from node.mpc.encoding import FLOAT_DTYPES
from node.mpc.ring import RING_DTYPE, BilinearOp, ConvParams
from node.mpc.shapes import bilinear_shape, broadcast_shape, reduced_shape

from ..pointer import BasePointer, Pointer
from ..torch_functions import wire_index
from . import approximations, comparisons, softmax
from .compare_steps import compare
from .group import PartyGroup, PrecisionMismatch, ShapeMismatch, SharingError
from .shared_torch import dispatch

__all__ = ["SharedTensor"]

Public = int | float | bool | torch.Tensor


class SharedTensor:
    """A tensor additively shared between ``parties`` (see :func:`node.share`)."""

    __slots__ = ("group", "_shares", "shape", "precision", "dtype")

    def __init__(
        self,
        group: PartyGroup,
        shares: Sequence[Pointer],
        shape: Sequence[int],
        precision: int,
        dtype: torch.dtype,
    ) -> None:
        self.group = group
        self._shares = tuple(shares)
        self.shape = torch.Size(shape)
        self.precision = precision
        """Fractional bits of the fixed-point encoding (0: an integer tensor, shared exactly)."""
        self.dtype = dtype
        """What ``get`` decodes to."""

    # -- data ----------------------------------------------------------------

    @property
    def shares(self) -> dict[str, Pointer]:
        """Party id -> pointer to that party's ring share (readable by whoever may read it)."""
        return {p.id: s for p, s in zip(self.group.parties, self._shares)}

    @property
    def parties(self) -> tuple[str, ...]:
        return self.group.ids

    @property
    def crypto_provider(self) -> str | None:
        return self.group.provider_id

    def get(self) -> torch.Tensor:
        """Reconstruct: fetch every share, add them mod 2^64, decode."""
        ring = reconstruct(self.group.fetch(self._shares))
        return FixedPointEncoder(self.precision).decode(ring, self.dtype)

    def sync(self) -> None:
        """Wait until every party has computed this value; raise earlier failures."""
        self.group.sync()

    def dim(self) -> int:
        return len(self.shape)

    def size(self, dim: int | None = None) -> torch.Size | int:
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return self.shape.numel()

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (
            f"<SharedTensor {list(self.shape)} {str(self.dtype).removeprefix('torch.')} "
            f"precision={self.precision} parties={list(self.parties)} "
            f"crypto_provider={self.crypto_provider}>"
        )

    def __bool__(self) -> bool:
        raise TypeError("the truth value of a shared tensor is secret; call .get() first")

    # -- helpers ---------------------------------------------------------------

    def _new(self, shares: Sequence[Pointer], shape: Sequence[int]) -> SharedTensor:
        # A bit tensor's linear images (-d, 3 * d, d + d) are integers, not bits.
        dtype = RING_DTYPE if self.dtype == torch.bool else self.dtype
        return SharedTensor(self.group, shares, shape, self.precision, dtype)

    def _each(self, fn: Callable[[Pointer], Pointer], shape: Sequence[int]) -> SharedTensor:
        return self._new([fn(s) for s in self._shares], shape)

    def _meta(self) -> torch.Tensor:
        return torch.empty(self.shape, dtype=RING_DTYPE, device="meta")

    def _shape_of(self, what: str, fn: Callable[[], torch.Tensor]) -> torch.Size:
        try:
            return fn().shape
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
            raise ShapeMismatch(f"{what}: {str(exc).splitlines()[0][:200]}", {"op": what}) from None

    def _broadcast(self, op: str, other: Sequence[int]) -> torch.Size:
        try:
            return torch.Size(broadcast_shape(self.shape, other))
        except ValueError as exc:
            raise ShapeMismatch(f"{op}: {exc}", {"op": op}) from None

    def _bilinear(
        self, kind: BilinearKind, x: Sequence[int], y: Sequence[int], conv: WireConv | None
    ) -> torch.Size:
        params = None if conv is None else ConvParams(conv.stride, conv.padding, conv.dilation, conv.groups)
        try:
            return torch.Size(bilinear_shape(BilinearOp(kind.value), tuple(x), tuple(y), params))
        except ValueError as exc:
            raise ShapeMismatch(f"{kind.value}: {exc}", {"op": kind.value}) from None

    def _check_shared(self, other: SharedTensor, op: str, mixes: bool = False) -> None:
        self.group.check_same(other.group, op)
        if other.precision != self.precision and not (mixes and 0 in (self.precision, other.precision)):
            raise PrecisionMismatch(
                f"{op} mixes precisions of {self.precision} and {other.precision} fractional bits",
                {"op": op, "left": self.precision, "right": other.precision},
            )

    def _encode(self, value: Public, op: str) -> torch.Tensor:
        """A public operand as a ring tensor with this value's precision."""
        if isinstance(value, BasePointer):
            raise SharingError(f"{op}: a pointer cannot meet a shared tensor; share it first", {})
        tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
        if self.precision == 0 and tensor.dtype in FLOAT_DTYPES:
            if not bool(torch.all(tensor == torch.round(tensor))):
                raise SharingError(
                    f"{op}: a non-integer public value cannot meet an integer shared tensor "
                    "(shared exactly, 0 fractional bits); share floats instead",
                    {"op": op},
                )
            tensor = tensor.to(RING_DTYPE)
        return FixedPointEncoder(self.precision).encode(tensor.detach())

    def _add_public(self, ring: torch.Tensor, op: str, negate_self: bool = False) -> SharedTensor:
        shape = self._broadcast(op, ring.shape)
        shares = []
        for index, share in enumerate(self._shares):
            own = _op("neg", share) if negate_self else share
            if index == 0:
                shares.append(_op("add", own, ring))
            elif shape != self.shape:
                shares.append(_op("add", own, torch.zeros_like(ring)))  # broadcast like party 0
            else:
                shares.append(own)
        return self._new(shares, shape)

    def _truncated(self, shares: Sequence[Pointer], shape: Sequence[int], bits: int) -> SharedTensor:
        if bits == 0:
            return self._new(shares, shape)
        scheme = self.group.truncation
        specs = () if scheme is TruncationScheme.LOCAL else (WireTruncation(tuple(shape), bits),)
        out = self.group.post_product(StepOp.TRUNCATE, shares, None, specs, bits)
        return self._new(out, shape)

    def _product(self, other: SharedTensor, kind: BilinearKind, conv: WireConv | None = None) -> SharedTensor:
        self._check_shared(other, kind.value, mixes=True)
        x_shape, y_shape = tuple(self.shape), tuple(other.shape)
        shape = self._bilinear(kind, self.shape, other.shape, conv)
        # Equal precisions p: the product has 2p bits, truncated by p.  A bit
        # (precision 0) times p bits has p bits already: no truncation.
        bits = self.precision if self.precision == other.precision else 0
        specs: tuple[Any, ...] = (WireTriple(kind, x_shape, y_shape, conv),)
        if bits and self.group.truncation is TruncationScheme.DEALER:
            specs += (WireTruncation(tuple(shape), bits),)
        out = self.group.post_product(StepOp(kind.value), self._shares, other._shares, specs, bits, conv)
        bools = self.dtype == other.dtype == torch.bool
        return SharedTensor(
            self.group, out, shape, max(self.precision, other.precision),
            torch.bool if bools else _mixed_dtype(self.dtype, other.dtype),
        )

    def _aligned(self, other: SharedTensor, op: str) -> tuple[SharedTensor, SharedTensor]:
        """Both operands of a sum at one precision: a precision-0 one scaled by 2^p (public, local)."""
        self._check_shared(other, op, mixes=True)
        if self.precision == other.precision:
            return self, other
        low, high = (self, other) if self.precision == 0 else (other, self)
        scale = torch.tensor(1 << high.precision, dtype=RING_DTYPE)
        scaled = SharedTensor(
            low.group, [_op("mul", s, scale) for s in low._shares], low.shape, high.precision,
            _mixed_dtype(low.dtype, high.dtype),
        )
        return (scaled, other) if low is self else (self, scaled)

    def _scaled(self, value: Public, op: str) -> SharedTensor:
        """x * public: exact for integers, encoded and truncated for reals."""
        tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
        if tensor.dtype in FLOAT_DTYPES:  # a 0-precision value takes integer-valued floats only, unscaled
            ring, bits = self._encode(tensor, op), self.precision
        else:
            ring, bits = tensor.detach().to(RING_DTYPE), 0
        shape = self._broadcast(op, ring.shape)
        return self._truncated([_op("mul", s, ring) for s in self._shares], shape, bits)

    def _public_bilinear(self, weight: Public, kind: BilinearKind, left: bool, conv: WireConv | None) -> SharedTensor:
        ring = self._encode(weight, kind.value)
        shapes = (ring.shape, self.shape) if left else (self.shape, ring.shape)
        shape = self._bilinear(kind, *shapes, conv)
        params: dict[str, Any] = {}
        if kind is BilinearKind.CONV2D:
            assert conv is not None
            params = {"stride": list(conv.stride), "padding": list(conv.padding),
                      "dilation": list(conv.dilation), "groups": conv.groups}
        out = []
        for share in self._shares:
            pair: tuple[Any, Any] = (ring, share) if left else (share, ring)
            out.append(_function(kind.value, share, *pair, **params))
        return self._truncated(out, shape, self.precision)

    # -- arithmetic --------------------------------------------------------------

    def __add__(self, other: Any) -> SharedTensor:
        if isinstance(other, SharedTensor):
            left, right = self._aligned(other, "add")
            shape = left._broadcast("add", right.shape)
            return left._new([_op("add", a, b) for a, b in zip(left._shares, right._shares)], shape)
        return self._add_public(self._encode(other, "add"), "add")

    __radd__ = __add__

    def __sub__(self, other: Any) -> SharedTensor:
        if isinstance(other, SharedTensor):
            left, right = self._aligned(other, "sub")
            shape = left._broadcast("sub", right.shape)
            return left._new([_op("sub", a, b) for a, b in zip(left._shares, right._shares)], shape)
        return self._add_public(-self._encode(other, "sub"), "sub")

    def __rsub__(self, other: Any) -> SharedTensor:
        return self._add_public(self._encode(other, "rsub"), "rsub", negate_self=True)

    def __neg__(self) -> SharedTensor:
        return self._each(lambda s: _op("neg", s), self.shape)

    def __pos__(self) -> SharedTensor:
        return self

    def __mul__(self, other: Any) -> SharedTensor:
        if isinstance(other, SharedTensor):
            return self._product(other, BilinearKind.MUL)
        return self._scaled(other, "mul")

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> SharedTensor:
        if isinstance(other, SharedTensor):
            return _shared(approximations.div(self, other))
        if self.precision == 0:
            raise SharingError("division of an integer shared tensor: share floats instead", {})
        divisor = other if isinstance(other, torch.Tensor) else torch.tensor(float(other))
        if bool(torch.any(divisor == 0)):
            raise SharingError("division by zero", {})
        return self._scaled(1.0 / divisor.to(torch.float64), "div")

    def __rtruediv__(self, other: Any) -> SharedTensor:
        """``public / shared``: ``public * reciprocal(shared)`` (see :mod:`.approximations`)."""
        return _shared(approximations.div(other, self))

    def __matmul__(self, other: Any) -> SharedTensor:
        if isinstance(other, SharedTensor):
            return self._product(other, BilinearKind.MATMUL)
        return self._public_bilinear(other, BilinearKind.MATMUL, left=False, conv=None)

    def __rmatmul__(self, other: Any) -> SharedTensor:
        return self._public_bilinear(other, BilinearKind.MATMUL, left=True, conv=None)

    def drelu(self) -> SharedTensor:
        """Bits [self >= 0] (precision 0, ``get`` gives a bool tensor): one comparison step.

        Exact when |value| < 2^(width - 1 - precision) (``compare_width`` of
        :func:`node.share`, 32 by default: |value| < 32768 at 16 fractional bits).
        """
        bits = compare(self.group, self._shares, self.shape, StepOp.DRELU)
        return SharedTensor(self.group, bits, self.shape, 0, torch.bool)

    def relu(self) -> SharedTensor:
        """``max(self, 0)`` with this value's precision and dtype: one comparison step."""
        return self._new(compare(self.group, self._shares, self.shape, StepOp.RELU), self.shape)

    def matmul(self, other: Any) -> SharedTensor:
        return self.__matmul__(other)

    def mul(self, other: Any) -> SharedTensor:
        return self.__mul__(other)

    def add(self, other: Any) -> SharedTensor:
        return self.__add__(other)

    def sub(self, other: Any) -> SharedTensor:
        return self.__sub__(other)

    def neg(self) -> SharedTensor:
        return -self

    def conv2d(
        self,
        weight: Any,
        bias: Any = None,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
    ) -> SharedTensor:
        """``F.conv2d(self, weight, bias, ...)``; ``weight`` and ``bias`` shared or public."""
        conv = WireConv(_pair(stride), _pair(padding), _pair(dilation), int(groups))
        if isinstance(weight, SharedTensor):
            out = self._product(weight, BilinearKind.CONV2D, conv)
        else:
            out = self._public_bilinear(weight, BilinearKind.CONV2D, left=False, conv=conv)
        if bias is not None:
            out = out + (bias.reshape(1, -1, 1, 1) if isinstance(bias, (SharedTensor, torch.Tensor)) else bias)
        return out

    # -- reductions and views ---------------------------------------------------------

    def sum(self, dim: int | tuple[int, ...] | None = None, keepdim: bool = False) -> SharedTensor:
        if dim is None:
            shape = self._shape_of("sum", lambda: self._meta().sum())
            return self._each(lambda s: _op("sum", s), shape)
        try:
            shape = torch.Size(reduced_shape(self.shape, dim, keepdim))
        except (IndexError, ValueError) as exc:
            raise ShapeMismatch(f"sum: {exc}", {"op": "sum"}) from None
        return self._each(lambda s: _op("sum", s, dim=dim, keepdim=keepdim), shape)

    def mean(self, dim: int | tuple[int, ...] | None = None, keepdim: bool = False) -> SharedTensor:
        if self.precision == 0:
            raise SharingError("mean of an integer shared tensor: share floats instead", {})
        total = self.sum(dim, keepdim)
        count = self.numel() // max(total.numel(), 1) if self.numel() else 1
        return total._scaled(torch.tensor(1.0 / max(count, 1), dtype=torch.float64), "mean")

    def reshape(self, *shape: Any) -> SharedTensor:
        dims = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)) else shape
        new = self._shape_of("reshape", lambda: self._meta().reshape(dims))
        return self._each(lambda s: _op("reshape", s, list(dims)), new)

    def view(self, *shape: Any) -> SharedTensor:
        dims = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)) else shape
        new = self._shape_of("view", lambda: self._meta().view(dims))
        return self._each(lambda s: _op("view", s, list(dims)), new)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> SharedTensor:
        new = self._shape_of("flatten", lambda: self._meta().flatten(start_dim, end_dim))
        return self.reshape(tuple(new))

    def transpose(self, dim0: int, dim1: int) -> SharedTensor:
        new = self._shape_of("transpose", lambda: self._meta().transpose(dim0, dim1))
        return self._each(lambda s: _op("transpose", s, dim0, dim1), new)

    def t(self) -> SharedTensor:
        new = self._shape_of("t", lambda: self._meta().t())
        return self._each(lambda s: _op("t", s), new)

    @property
    def T(self) -> SharedTensor:  # noqa: N802 - torch's name
        if self.dim() <= 2:
            return self.t()
        new = self._meta().permute(*reversed(range(self.dim()))).shape
        return self._each(lambda s: _op("permute", s, list(reversed(range(self.dim())))), new)

    def __getitem__(self, index: Any) -> SharedTensor:
        if isinstance(index, (SharedTensor, BasePointer)):
            raise SharingError("indexes of a shared tensor must be public", {})
        new = self._shape_of("getitem", lambda: _index_probe(self.shape)[index])
        return self._each(lambda s: _op("getitem", s, wire_index(index)), new)

    # -- comparisons and non-linear functions: .comparisons, .approximations, .softmax ------------

    def __gt__(self, other: Any) -> SharedTensor:
        return _shared(comparisons.gt(self, other))

    def __ge__(self, other: Any) -> SharedTensor:
        return _shared(comparisons.ge(self, other))

    def __lt__(self, other: Any) -> SharedTensor:
        return _shared(comparisons.lt(self, other))

    def __le__(self, other: Any) -> SharedTensor:
        return _shared(comparisons.le(self, other))

    gt, ge, lt, le = __gt__, __ge__, __lt__, __le__

    def sign(self) -> SharedTensor:
        return _shared(comparisons.sign(self))

    def abs(self) -> SharedTensor:
        return _shared(comparisons.abs_(self))

    __abs__ = abs

    def clamp(self, min: Any = None, max: Any = None) -> SharedTensor:  # noqa: A002 - torch's names
        return _shared(comparisons.clamp(self, min, max))

    clip = clamp

    def max(self, dim: Any = None, keepdim: bool = False) -> Any:
        """The largest value, ``(values, indices)`` along ``dim``, or the elementwise max with a tensor."""
        return comparisons.max_(self, dim, keepdim)

    def min(self, dim: Any = None, keepdim: bool = False) -> Any:
        return comparisons.min_(self, dim, keepdim)

    def amax(self, dim: int, keepdim: bool = False) -> SharedTensor:
        return _shared(comparisons.amax(self, dim, keepdim))

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> SharedTensor:
        """A shared one-hot of this shape marking the maximum (not an index: see ``comparisons.argmax``)."""
        return _shared(comparisons.argmax(self, dim, keepdim))

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> SharedTensor:
        return _shared(comparisons.argmin(self, dim, keepdim))

    def exp(self) -> SharedTensor:
        return _shared(approximations.exp(self))

    def log(self) -> SharedTensor:
        return _shared(approximations.log(self))

    def reciprocal(self) -> SharedTensor:
        return _shared(approximations.reciprocal(self))

    def sqrt(self) -> SharedTensor:
        return _shared(approximations.sqrt(self))

    def rsqrt(self) -> SharedTensor:
        return _shared(approximations.rsqrt(self))

    def sigmoid(self) -> SharedTensor:
        return _shared(approximations.sigmoid(self))

    def tanh(self) -> SharedTensor:
        return _shared(approximations.tanh(self))

    def softmax(self, dim: int) -> SharedTensor:
        return _shared(softmax.softmax(self, dim))

    def log_softmax(self, dim: int) -> SharedTensor:
        return _shared(softmax.log_softmax(self, dim))

    @classmethod
    def __torch_function__(
        cls, func: Callable[..., Any], types: Sequence[type], args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        """``torch.f(shared, ...)`` and ``tensor op shared`` for the ops above."""
        return dispatch(cls, func, tuple(args), kwargs or {})


def _shared(value: Any) -> SharedTensor:
    """A comparison or approximation of a shared tensor, which is a shared tensor (typed for mypy)."""
    assert isinstance(value, SharedTensor)
    return value


def _mixed_dtype(a: torch.dtype, b: torch.dtype) -> torch.dtype:
    """What ``get`` decodes a result of operands decoded as ``a`` and ``b`` to (bits count as integers)."""
    return torch.promote_types(RING_DTYPE if a == torch.bool else a, RING_DTYPE if b == torch.bool else b)


def _op(op: str, target: Pointer, *args: Any, **kwargs: Any) -> Pointer:
    """Method-form command ``target.op(*args, **kwargs)`` on the share's node (ring arithmetic)."""
    return target.node.command_one(op, target, args, kwargs)


def _function(op: str, share: Pointer, *args: Any, **kwargs: Any) -> Pointer:
    """Function-form command ``op(*args, **kwargs)`` on ``share``'s node."""
    return share.node.command_one(op, None, args, kwargs)


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    items = tuple(int(v) for v in value)
    if len(items) != 2:
        raise SharingError(f"conv2d parameters must be an int or two ints, got {value!r}", {})
    return (items[0], items[1])


def _index_probe(shape: Sequence[int]) -> torch.Tensor:
    """A CPU tensor of ``shape`` with no memory of its own (stride 0), to index for result shapes.

    Not a meta tensor: indexing one with a tensor goes through torch's meta
    registrations, whose first use imports sympy (0.3-0.5 s in the client,
    paid by the first minibatch).  On this probe basic indexing returns views
    and advanced indexing allocates one byte per result element; tensor
    indexes are bounds-checked here, before anything is sent.
    """
    return torch.zeros((), dtype=torch.int8).expand(tuple(shape))
