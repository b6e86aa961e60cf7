"""Correlated randomness: what a party asks the dealer for, and what it gets.

Owns the material specs (:class:`TripleSpec` for a Beaver triple of an
elementwise product, matmul or conv2d; :class:`TruncationSpec` for a
truncation mask), the per-party bundle the dealer sends
(:class:`PartyMaterial`), and the expansion of a party's seed into its
tensors: all at once (:func:`expand_material`, a whole bundle) or in the
order a networked party needs them (:func:`expand_triple_masks` before it
masks, :func:`expand_triple_product` once the opening is in,
:func:`expand_truncation`).  Specs carry shapes only: the dealer never sees
an input.  Must not import asyncio, websockets, or anything of
``node.server`` / ``node.client``.

Seeds in place of shares.  Every party gets one fresh seed per batch.  With
spec number ``j`` of the batch, stream ``3j`` of a party's seed expands to its
share of ``a`` (or ``r``), stream ``3j + 1`` to its share of ``b`` (or of
the top bit of ``r``), stream ``3j + 2`` to its share of ``c`` (or of
``(r mod 2^63) >> bits``).  Shares of ``a``, ``b`` and ``r`` are uniform, so
every party expands them from its seed; the dependent shares (``c``, the top
bit, the shifted low bits) come from seeds for all but the last party, which
receives them explicitly (``explicit``, in spec order).  So parties
``0..n-2`` receive 16 bytes per batch, whatever its size.

Each expanded triple or mask is single use: using one twice to mask two
different values reveals their difference.  A bundle's material arrives from
a peer, so :func:`expand_material` checks the explicit tensors' dtypes and
shapes, and :func:`as_triple` / :func:`as_truncation` check each item is the
kind the protocol step expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import torch

from .errors import MaterialError, RingError
from .prg import Seed, check_seed, expand_seed
from .ring import RING_BITS, RING_DTYPE, BilinearOp, ConvParams
from .shapes import bilinear_shape
from .shares import check_party, check_party_count

__all__ = [
    "MAX_MATERIAL_ELEMENTS",
    "MAX_TRUNCATION_BITS",
    "TripleSpec",
    "TruncationSpec",
    "MaterialSpec",
    "TripleShares",
    "TruncationShares",
    "Material",
    "PartyMaterial",
    "stream_of",
    "explicit_shapes",
    "expand_triple_masks",
    "expand_triple_product",
    "expand_truncation",
    "expand_material",
    "as_triple",
    "as_truncation",
]

MAX_MATERIAL_ELEMENTS = 1 << 28
"""Largest tensor (2 GiB of int64) one spec may ask for; a dealer's memory guard."""
MAX_TRUNCATION_BITS = RING_BITS - 2
"""The truncation protocol shifts x + 2^62, so at most 62 bits can be dropped."""

Shape = tuple[int, ...]


def _check_shape(shape: Sequence[int], what: str) -> Shape:
    dims = tuple(shape)
    count = 1
    for dim in dims:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise MaterialError(f"{what} {list(dims)} is not a shape", {"what": what})
        count *= dim
    if count > MAX_MATERIAL_ELEMENTS:
        raise MaterialError(
            f"{what} {list(dims)} has {count} elements, over the limit of {MAX_MATERIAL_ELEMENTS}",
            {"what": what, "count": count, "limit": MAX_MATERIAL_ELEMENTS},
        )
    return dims


def _check_conv_shapes(x_shape: Shape, w_shape: Shape, groups: int) -> None:
    """Checks torch's meta kernel skips: 4-d operands and channels that fit the groups."""
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise MaterialError("conv2d needs a 4-d input (N, C, H, W) and a 4-d weight", {})
    if x_shape[1] != w_shape[1] * groups or w_shape[0] % groups:
        raise MaterialError(
            f"conv2d with {groups} group(s) cannot take input {list(x_shape)} "
            f"and weight {list(w_shape)}",
            {"groups": groups},
        )


@dataclass(frozen=True, slots=True)
class TripleSpec:
    """A Beaver triple (a, b, c = op(a, b)) for ``op(x, y)`` with x and y of these shapes.

    ``conv`` holds conv2d's parameters (plain conv when omitted); other ops take none.
    """

    op: BilinearOp
    x_shape: Shape
    y_shape: Shape
    conv: ConvParams | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.op, BilinearOp):
            raise MaterialError(f"unknown bilinear op {self.op!r}", {})
        if self.conv is not None and self.op is not BilinearOp.CONV2D:
            raise MaterialError(f"conv params given for a {self.op.value} triple", {})
        if self.op is BilinearOp.CONV2D and self.conv is None:
            object.__setattr__(self, "conv", ConvParams())
        object.__setattr__(self, "x_shape", _check_shape(self.x_shape, "x shape"))
        object.__setattr__(self, "y_shape", _check_shape(self.y_shape, "y shape"))
        if self.conv is not None:
            _check_conv_shapes(self.x_shape, self.y_shape, self.conv.groups)
        _check_shape(self.z_shape, "product shape")

    @property
    def z_shape(self) -> Shape:
        """The shape of op(x, y), from the shapes alone (:mod:`node.mpc.shapes`)."""
        try:
            return bilinear_shape(self.op, self.x_shape, self.y_shape, self.conv)
        except ValueError as exc:
            raise MaterialError(
                f"{self.op.value} of shapes {list(self.x_shape)} and {list(self.y_shape)} "
                f"is undefined: {str(exc)[:200]}",
                {"op": self.op.value},
            ) from None


@dataclass(frozen=True, slots=True)
class TruncationSpec:
    """Masks for truncating a tensor of ``shape`` by ``bits`` bits."""

    shape: Shape
    bits: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _check_shape(self.shape, "truncation shape"))
        if not isinstance(self.bits, int) or not 1 <= self.bits <= MAX_TRUNCATION_BITS:
            raise MaterialError(
                f"truncation by {self.bits} bits is outside [1, {MAX_TRUNCATION_BITS}]",
                {"bits": int(self.bits)},
            )


MaterialSpec = Union[TripleSpec, TruncationSpec]


@dataclass(frozen=True, slots=True)
class TripleShares:
    """One party's shares of a Beaver triple."""

    a: torch.Tensor
    b: torch.Tensor
    c: torch.Tensor


@dataclass(frozen=True, slots=True)
class TruncationShares:
    """One party's shares of r (uniform), of its top bit, and of (r mod 2^63) >> bits."""

    r: torch.Tensor
    r_top: torch.Tensor
    r_low_shifted: torch.Tensor


Material = Union[TripleShares, TruncationShares]


@dataclass(frozen=True, slots=True)
class PartyMaterial:
    """What the dealer sends one party for one batch of specs."""

    party: int
    n_parties: int
    specs: tuple[MaterialSpec, ...]
    seed: Seed
    explicit: tuple[torch.Tensor, ...] = ()

    def __post_init__(self) -> None:
        check_party_count(self.n_parties)
        check_party(self.party, self.n_parties)
        check_seed(self.seed)
        for spec in self.specs:
            if not isinstance(spec, (TripleSpec, TruncationSpec)):
                raise MaterialError(f"not a material spec: {type(spec).__name__}", {})
        expected = len(explicit_shapes(self.specs)) if self.is_last else 0
        if len(self.explicit) != expected:
            raise MaterialError(
                f"party {self.party} of {self.n_parties} got {len(self.explicit)} explicit "
                f"tensors, expected {expected}",
                {"party": self.party, "got": len(self.explicit), "expected": expected},
            )

    @property
    def is_last(self) -> bool:
        """The last party receives the dependent shares explicitly."""
        return self.party == self.n_parties - 1


def stream_of(spec_index: int, component: int) -> int:
    """The PRG stream of component 0, 1 or 2 of spec number ``spec_index``."""
    return 3 * spec_index + component


def explicit_shapes(specs: Sequence[MaterialSpec]) -> list[Shape]:
    """Shapes of the explicit tensors the last party receives, in order."""
    shapes: list[Shape] = []
    for spec in specs:
        if isinstance(spec, TripleSpec):
            shapes.append(spec.z_shape)
        else:
            shapes.extend([spec.shape, spec.shape])
    return shapes


def expand_triple_masks(seed: Seed, spec: TripleSpec, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This party's a_i and b_i of spec number ``index``: all Beaver's first step needs.

    Every party expands them from its own seed, so it can mask before the
    dealer has computed the products.
    """
    a = expand_seed(seed, spec.x_shape, stream_of(index, 0))
    b = expand_seed(seed, spec.y_shape, stream_of(index, 1))
    return a, b


def expand_triple_product(seed: Seed, spec: TripleSpec, index: int) -> torch.Tensor:
    """This party's c_i of spec number ``index`` (parties 0..n-2; the last one receives its c)."""
    return expand_seed(seed, spec.z_shape, stream_of(index, 2))


def expand_truncation(
    seed: Seed,
    spec: TruncationSpec,
    index: int,
    explicit: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> TruncationShares:
    """This party's truncation mask of spec number ``index``.

    r_i comes from the seed; the top bit's and shifted low bits' shares too,
    unless given (the last party's ``explicit`` pair, checked by the caller).
    """
    r = expand_seed(seed, spec.shape, stream_of(index, 0))
    if explicit is not None:
        top, low = explicit
    else:
        top = expand_seed(seed, spec.shape, stream_of(index, 1))
        low = expand_seed(seed, spec.shape, stream_of(index, 2))
    return TruncationShares(r, top, low)


def expand_material(material: PartyMaterial) -> list[Material]:
    """This party's tensors for each spec of the batch, in order."""
    explicit = iter(_checked_explicit(material))
    last, seed = material.is_last, material.seed
    out: list[Material] = []
    for j, spec in enumerate(material.specs):
        if isinstance(spec, TripleSpec):
            a, b = expand_triple_masks(seed, spec, j)
            c = next(explicit) if last else expand_triple_product(seed, spec, j)
            out.append(TripleShares(a, b, c))
        else:
            pair = (next(explicit), next(explicit)) if last else None
            out.append(expand_truncation(seed, spec, j, pair))
    return out


def _checked_explicit(material: PartyMaterial) -> tuple[torch.Tensor, ...]:
    if not material.is_last:
        return ()
    for number, (tensor, shape) in enumerate(
        zip(material.explicit, explicit_shapes(material.specs))
    ):
        if not isinstance(tensor, torch.Tensor) or tensor.dtype != RING_DTYPE:
            raise RingError.not_ring(f"explicit tensor {number}", getattr(tensor, "dtype", None))
        if tuple(tensor.shape) != shape:
            raise RingError.shape_mismatch(f"explicit tensor {number}", shape, tuple(tensor.shape))
    return material.explicit


def as_triple(material: Material) -> TripleShares:
    """``material`` if it is a Beaver triple, else :class:`MaterialError`."""
    if not isinstance(material, TripleShares):
        raise MaterialError(f"expected a Beaver triple, got {type(material).__name__}", {})
    return material


def as_truncation(material: Material) -> TruncationShares:
    """``material`` if it is a truncation mask, else :class:`MaterialError`."""
    if not isinstance(material, TruncationShares):
        raise MaterialError(f"expected a truncation mask, got {type(material).__name__}", {})
    return material
