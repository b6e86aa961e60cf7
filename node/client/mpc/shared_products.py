"""Products of a :class:`~node.client.mpc.shared.SharedTensor`, mixed into it.

Runs in the user's process.  Every multiplication lives here, because they
share one concern, how many fractional bits the result carries:

- with a public operand (``x * 3``, ``x * 0.25``, ``x / 4``, ``x @ w``,
  ``conv2d(x, w)``) every party computes locally, then the result is
  truncated when it carries more fractional bits than the precision;
- with another shared value (``x * y``, ``x @ y``, ``conv2d``) it is one
  Beaver step (:meth:`~node.client.mpc.group.PartyGroup.post_product`);
- a bit (precision 0) times a precision-p value has p bits already and is
  not truncated; added to one, it is first scaled by 2^p (``_aligned``).

The mixin holds no state: it works on the shares, shape and precision the
shared tensor keeps, and builds its results with ``type(self)``, so this
module never imports the shared tensor module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch

from protocol.mpc import BilinearKind, StepOp, TruncationScheme, WireConv, WireTriple, WireTruncation

from node.mpc.encoding import FLOAT_DTYPES
from node.mpc.ring import RING_DTYPE, BilinearOp, ConvParams
from node.mpc.shapes import bilinear_shape

from ..pointer import Pointer
from . import approximations
from .group import PartyGroup, PrecisionMismatch, ShapeMismatch, SharingError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Public", "SharedProducts", "command"]

Public = int | float | bool | torch.Tensor


class SharedProducts:
    """Multiplication and division of a shared tensor, by public values and by shared ones."""

    __slots__ = ()

    if TYPE_CHECKING:  # kept by SharedTensor
        group: PartyGroup
        _shares: tuple[Pointer, ...]
        shape: torch.Size
        precision: int
        dtype: torch.dtype

        def __init__(
            self, group: PartyGroup, shares: Sequence[Pointer], shape: Sequence[int], precision: int, dtype: torch.dtype
        ) -> None: ...

        def _new(self, shares: Sequence[Pointer], shape: Sequence[int]) -> Self: ...

        def _encode(self, value: Public, op: str) -> torch.Tensor: ...

        def _broadcast(self, op: str, other: Sequence[int]) -> torch.Size: ...

        def __add__(self, other: Any) -> Self: ...

        def reshape(self, *shape: Any) -> Self: ...

    def __mul__(self, other: Any) -> Self:
        if isinstance(other, type(self)):
            return self._product(other, BilinearKind.MUL)
        return self._scaled(other, "mul")

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Self:
        if isinstance(other, type(self)):
            return self._same_kind(approximations.div(self, other))
        if self.precision == 0:
            raise SharingError("division of an integer shared tensor: share floats instead", {})
        divisor = other if isinstance(other, torch.Tensor) else torch.tensor(float(other))
        if bool(torch.any(divisor == 0)):
            raise SharingError("division by zero", {})
        return self._scaled(1.0 / divisor.to(torch.float64), "div")

    def __rtruediv__(self, other: Any) -> Self:
        """``public / shared``: ``public * reciprocal(shared)`` (see :mod:`.approximations`)."""
        return self._same_kind(approximations.div(other, self))

    def __matmul__(self, other: Any) -> Self:
        if isinstance(other, type(self)):
            return self._product(other, BilinearKind.MATMUL)
        return self._public_bilinear(other, BilinearKind.MATMUL, left=False, conv=None)

    def __rmatmul__(self, other: Any) -> Self:
        return self._public_bilinear(other, BilinearKind.MATMUL, left=True, conv=None)

    def matmul(self, other: Any) -> Self:
        return self.__matmul__(other)

    def mul(self, other: Any) -> Self:
        return self.__mul__(other)

    def conv2d(
        self,
        weight: Any,
        bias: Any = None,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
    ) -> Self:
        """``F.conv2d(self, weight, bias, ...)``; ``weight`` and ``bias`` shared or public."""
        conv = WireConv(_pair(stride), _pair(padding), _pair(dilation), int(groups))
        if isinstance(weight, type(self)):
            out = self._product(weight, BilinearKind.CONV2D, conv)
        else:
            out = self._public_bilinear(weight, BilinearKind.CONV2D, left=False, conv=conv)
        if bias is not None:
            out = out + (bias.reshape(1, -1, 1, 1) if isinstance(bias, (type(self), torch.Tensor)) else bias)
        return out

    # -- helpers ---------------------------------------------------------------

    def _same_kind(self, value: Any) -> Self:
        """A division's result, which is a shared tensor (typed for mypy)."""
        assert isinstance(value, type(self))
        return value

    def _bilinear(
        self, kind: BilinearKind, x: Sequence[int], y: Sequence[int], conv: WireConv | None
    ) -> torch.Size:
        params = None if conv is None else ConvParams(conv.stride, conv.padding, conv.dilation, conv.groups)
        try:
            return torch.Size(bilinear_shape(BilinearOp(kind.value), tuple(x), tuple(y), params))
        except ValueError as exc:
            raise ShapeMismatch(f"{kind.value}: {exc}", {"op": kind.value}) from None

    def _check_shared(self, other: SharedProducts, op: str, mixes: bool = False) -> None:
        self.group.check_same(other.group, op)
        if other.precision != self.precision and not (mixes and 0 in (self.precision, other.precision)):
            raise PrecisionMismatch(
                f"{op} mixes precisions of {self.precision} and {other.precision} fractional bits",
                {"op": op, "left": self.precision, "right": other.precision},
            )

    def _truncated(self, shares: Sequence[Pointer], shape: Sequence[int], bits: int) -> Self:
        if bits == 0:
            return self._new(shares, shape)
        scheme = self.group.truncation
        specs = () if scheme is TruncationScheme.LOCAL else (WireTruncation(tuple(shape), bits),)
        out = self.group.post_product(StepOp.TRUNCATE, shares, None, specs, bits)
        return self._new(out, shape)

    def _product(self, other: Self, kind: BilinearKind, conv: WireConv | None = None) -> Self:
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
        return type(self)(
            self.group, out, shape, max(self.precision, other.precision),
            torch.bool if bools else _mixed_dtype(self.dtype, other.dtype),
        )

    def _aligned(self, other: Self, op: str) -> tuple[Self, Self]:
        """Both operands of a sum at one precision: a precision-0 one scaled by 2^p (public, local)."""
        self._check_shared(other, op, mixes=True)
        if self.precision == other.precision:
            return self, other
        low, high = (self, other) if self.precision == 0 else (other, self)
        scale = torch.tensor(1 << high.precision, dtype=RING_DTYPE)
        scaled = type(self)(
            low.group, [command("mul", s, scale) for s in low._shares], low.shape, high.precision,
            _mixed_dtype(low.dtype, high.dtype),
        )
        return (scaled, other) if low is self else (self, scaled)

    def _scaled(self, value: Public, op: str) -> Self:
        """x * public: exact for integers, encoded and truncated for reals."""
        tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
        if tensor.dtype in FLOAT_DTYPES:  # a 0-precision value takes integer-valued floats only, unscaled
            ring, bits = self._encode(tensor, op), self.precision
        else:
            ring, bits = tensor.detach().to(RING_DTYPE), 0
        shape = self._broadcast(op, ring.shape)
        return self._truncated([command("mul", s, ring) for s in self._shares], shape, bits)

    def _public_bilinear(self, weight: Public, kind: BilinearKind, left: bool, conv: WireConv | None) -> Self:
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


def command(op: str, target: Pointer, *args: Any, **kwargs: Any) -> Pointer:
    """Method-form command ``target.op(*args, **kwargs)`` on the share's node (ring arithmetic)."""
    return target.node.command_one(op, target, args, kwargs)


def _function(op: str, share: Pointer, *args: Any, **kwargs: Any) -> Pointer:
    """Function-form command ``op(*args, **kwargs)`` on ``share``'s node."""
    return share.node.command_one(op, None, args, kwargs)


def _mixed_dtype(a: torch.dtype, b: torch.dtype) -> torch.dtype:
    """What ``get`` decodes a result of operands decoded as ``a`` and ``b`` to (bits count as integers)."""
    return torch.promote_types(RING_DTYPE if a == torch.bool else a, RING_DTYPE if b == torch.bool else b)


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    items = tuple(int(v) for v in value)
    if len(items) != 2:
        raise SharingError(f"conv2d parameters must be an int or two ints, got {value!r}", {})
    return (items[0], items[1])
