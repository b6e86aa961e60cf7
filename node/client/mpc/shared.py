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

This module holds the shares and the ops that touch them directly (linear
ops, views, reductions, the comparison steps); products live in
:mod:`.shared_products` and the delegating comparisons, approximations and
torch dispatch in :mod:`.shared_functions`, both mixed into ``SharedTensor``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from protocol.mpc import StepOp

from node.mpc import FixedPointEncoder, reconstruct
from node.mpc.encoding import FLOAT_DTYPES
from node.mpc.ring import RING_DTYPE
from node.mpc.shapes import broadcast_shape, reduced_shape

from ..pointer import BasePointer, Pointer
from ..torch_functions import wire_index
from .compare_steps import compare
from .group import PartyGroup, ShapeMismatch, SharingError
from .shared_functions import SharedFunctions
from .shared_products import Public, SharedProducts, command

__all__ = ["SharedTensor"]


class SharedTensor(SharedProducts, SharedFunctions):
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
            own = command("neg", share) if negate_self else share
            if index == 0:
                shares.append(command("add", own, ring))
            elif shape != self.shape:
                shares.append(command("add", own, torch.zeros_like(ring)))  # broadcast like party 0
            else:
                shares.append(own)
        return self._new(shares, shape)

    # -- arithmetic --------------------------------------------------------------

    def __add__(self, other: Any) -> SharedTensor:
        if isinstance(other, SharedTensor):
            left, right = self._aligned(other, "add")
            shape = left._broadcast("add", right.shape)
            return left._new([command("add", a, b) for a, b in zip(left._shares, right._shares)], shape)
        return self._add_public(self._encode(other, "add"), "add")

    __radd__ = __add__

    def __sub__(self, other: Any) -> SharedTensor:
        if isinstance(other, SharedTensor):
            left, right = self._aligned(other, "sub")
            shape = left._broadcast("sub", right.shape)
            return left._new([command("sub", a, b) for a, b in zip(left._shares, right._shares)], shape)
        return self._add_public(-self._encode(other, "sub"), "sub")

    def __rsub__(self, other: Any) -> SharedTensor:
        return self._add_public(self._encode(other, "rsub"), "rsub", negate_self=True)

    def __neg__(self) -> SharedTensor:
        return self._each(lambda s: command("neg", s), self.shape)

    def __pos__(self) -> SharedTensor:
        return self

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

    def add(self, other: Any) -> SharedTensor:
        return self.__add__(other)

    def sub(self, other: Any) -> SharedTensor:
        return self.__sub__(other)

    def neg(self) -> SharedTensor:
        return -self

    # -- reductions and views ---------------------------------------------------------

    def sum(self, dim: int | tuple[int, ...] | None = None, keepdim: bool = False) -> SharedTensor:
        if dim is None:
            shape = self._shape_of("sum", lambda: self._meta().sum())
            return self._each(lambda s: command("sum", s), shape)
        try:
            shape = torch.Size(reduced_shape(self.shape, dim, keepdim))
        except (IndexError, ValueError) as exc:
            raise ShapeMismatch(f"sum: {exc}", {"op": "sum"}) from None
        return self._each(lambda s: command("sum", s, dim=dim, keepdim=keepdim), shape)

    def mean(self, dim: int | tuple[int, ...] | None = None, keepdim: bool = False) -> SharedTensor:
        if self.precision == 0:
            raise SharingError("mean of an integer shared tensor: share floats instead", {})
        total = self.sum(dim, keepdim)
        count = self.numel() // max(total.numel(), 1) if self.numel() else 1
        return total._scaled(torch.tensor(1.0 / max(count, 1), dtype=torch.float64), "mean")

    def reshape(self, *shape: Any) -> SharedTensor:
        dims = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)) else shape
        new = self._shape_of("reshape", lambda: self._meta().reshape(dims))
        return self._each(lambda s: command("reshape", s, list(dims)), new)

    def view(self, *shape: Any) -> SharedTensor:
        dims = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)) else shape
        new = self._shape_of("view", lambda: self._meta().view(dims))
        return self._each(lambda s: command("view", s, list(dims)), new)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> SharedTensor:
        new = self._shape_of("flatten", lambda: self._meta().flatten(start_dim, end_dim))
        return self.reshape(tuple(new))

    def transpose(self, dim0: int, dim1: int) -> SharedTensor:
        new = self._shape_of("transpose", lambda: self._meta().transpose(dim0, dim1))
        return self._each(lambda s: command("transpose", s, dim0, dim1), new)

    def t(self) -> SharedTensor:
        new = self._shape_of("t", lambda: self._meta().t())
        return self._each(lambda s: command("t", s), new)

    @property
    def T(self) -> SharedTensor:  # noqa: N802 - torch's name
        if self.dim() <= 2:
            return self.t()
        new = self._meta().permute(*reversed(range(self.dim()))).shape
        return self._each(lambda s: command("permute", s, list(reversed(range(self.dim())))), new)

    def __getitem__(self, index: Any) -> SharedTensor:
        if isinstance(index, (SharedTensor, BasePointer)):
            raise SharingError("indexes of a shared tensor must be public", {})
        new = self._shape_of("getitem", lambda: _index_probe(self.shape)[index])
        return self._each(lambda s: command("getitem", s, wire_index(index)), new)


def _index_probe(shape: Sequence[int]) -> torch.Tensor:
    """A CPU tensor of ``shape`` with no memory of its own (stride 0), to index for result shapes.

    Not a meta tensor: indexing one with a tensor goes through torch's meta
    registrations, whose first use imports sympy (0.3-0.5 s in the client,
    paid by the first minibatch).  On this probe basic indexing returns views
    and advanced indexing allocates one byte per result element; tensor
    indexes are bounds-checked here, before anything is sent.
    """
    return torch.zeros((), dtype=torch.int8).expand(tuple(shape))
