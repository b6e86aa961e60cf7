"""Binary material for comparisons among any number of parties: spec, expansion, dealer.

Owns :class:`BinarySpec` (what a party asks the crypto provider for, to
compare one shared tensor with zero), :class:`BinaryMaterial` (one party's
tensors of it), :func:`expand_binary` (a party's seed and explicit tensors
into its material, checked) and :class:`BinaryDealer`, the
:class:`~node.mpc.provider.MaterialProvider` of
:attr:`~node.mpc.kinds.MaterialKind.BINARY` material.  The protocol that
consumes it is :mod:`node.mpc.a2b`.  Must not import asyncio, websockets,
or anything of ``node.server`` / ``node.client``.

For spec number ``j`` of a batch, stream ``8j + k`` of a party's seed gives
component k (``k`` in 0..6, :func:`stream_of`):

0, 1. a_i and b_i of the binary triples: T uniform words,
   T = sum(:func:`~node.mpc.adders.and_plan`), one per packed AND word, in
   plan order;
2. c_i with c = a & b, XOR-shared (parties 0..n-2; the last one's is explicit);
3. rho_i, a uniform bit (the low bit of the word): rho = XOR of the rho_i;
4. [rho]_i, the same bit shared additively over Z/2^64 (parties 0..n-2);
5. for ReLU, r_i: r = sum of the r_i, uniform over the ring;
6. for ReLU, [r * rho]_i (parties 0..n-2).

So parties 0..n-2 get 16 bytes per batch and the last party, per spec,
c (T words), [rho] and, for ReLU, [r * rho].  The pair
(r, r * rho) lets a ReLU multiply x by the sign bit without a round of its
own (:mod:`node.mpc.a2b`).  Trust as for the Beaver dealer
(:mod:`node.mpc.dealer`): the dealer knows a, b, rho and r, so it must never
see an opening and must not collude with a computing party.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Sequence

import torch

from .adders import and_plan
from .binary import MAX_WIDTH, MIN_WIDTH
from .errors import MaterialError, RingError
from .kinds import MaterialKind
from .material import MAX_MATERIAL_ELEMENTS
from .prg import Seed, check_seed, expand_seed, fresh_seed
from .ring import RING_DTYPE
from .shares import check_party, check_party_count

__all__ = [
    "BinarySpec",
    "BinaryMaterial",
    "ProductMask",
    "BinaryDealer",
    "stream_of",
    "and_words",
    "expand_binary",
]

Shape = tuple[int, ...]

_COMPONENTS = 8
"""Streams reserved per spec (7 used)."""


@dataclass(frozen=True, slots=True)
class BinarySpec:
    """Material to compare a shared tensor of ``shape`` with zero, on its low ``width`` bits.

    ``relu`` asks for the extra pair that turns the comparison into x * [x >= 0].
    """

    KIND: ClassVar[MaterialKind] = MaterialKind.BINARY

    shape: Shape
    width: int
    relu: bool = False

    def __post_init__(self) -> None:
        dims = tuple(self.shape) if isinstance(self.shape, (tuple, list)) else None
        if dims is None or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims
        ):
            raise MaterialError(f"binary shape {self.shape!r} is not a shape", {})
        count = math.prod(dims)
        if count > MAX_MATERIAL_ELEMENTS:
            raise MaterialError(
                f"binary shape {list(dims)} has {count} elements, over the limit of "
                f"{MAX_MATERIAL_ELEMENTS}",
                {"count": count, "limit": MAX_MATERIAL_ELEMENTS},
            )
        object.__setattr__(self, "shape", dims)
        width = self.width
        if (
            not isinstance(width, int)
            or isinstance(width, bool)
            or not MIN_WIDTH <= width <= MAX_WIDTH
        ):
            raise MaterialError(
                f"comparison width {width!r} is outside [{MIN_WIDTH}, {MAX_WIDTH}]",
                {"width": str(width)},
            )
        if not isinstance(self.relu, bool):
            raise MaterialError(f"relu must be a bool, got {type(self.relu).__name__}", {})

    def explicit_for(self, party: int, n_parties: int) -> bool:
        """Whether ``party`` of ``n_parties`` receives tensors explicitly (the last one does)."""
        check_party_count(n_parties)
        return check_party(party, n_parties) == n_parties - 1

    def explicit_shapes(self, party: int, n_parties: int) -> list[Shape]:
        """Shapes of the tensors the provider sends ``party`` explicitly, in order."""
        if not self.explicit_for(party, n_parties):
            return []
        shapes = [(and_words(self, n_parties),), self.shape]
        if self.relu:
            shapes.append(self.shape)
        return shapes


def stream_of(spec_index: int, component: int) -> int:
    """The PRG stream of component 0..6 of spec number ``spec_index`` of a batch."""
    return _COMPONENTS * spec_index + component


def and_words(spec: BinarySpec, n_parties: int) -> int:
    """Binary triples (packed words) the comparison of ``spec`` uses, all rounds together."""
    return sum(and_plan(n_parties, spec.width, math.prod(spec.shape)))


@dataclass(frozen=True, slots=True)
class ProductMask:
    """One party's additive shares of r (uniform) and of r * rho: a ReLU's product with the sign."""

    r: torch.Tensor
    r_rho: torch.Tensor


@dataclass(frozen=True, slots=True)
class BinaryMaterial:
    """One party's binary material for one spec (``product`` for ReLU only)."""

    a: torch.Tensor
    b: torch.Tensor
    c: torch.Tensor
    rho_bit: torch.Tensor
    rho: torch.Tensor
    product: ProductMask | None


def expand_binary(
    seed: Seed,
    spec: BinarySpec,
    index: int,
    party: int,
    n_parties: int,
    explicit: Sequence[torch.Tensor] = (),
) -> BinaryMaterial:
    """``party``'s material for spec number ``index``; ``explicit`` (from a peer) is checked."""
    key = check_seed(seed)
    expected = spec.explicit_shapes(party, n_parties)
    given = _checked_explicit(explicit, expected)
    words = (and_words(spec, n_parties),)
    a = expand_seed(key, words, stream_of(index, 0))
    b = expand_seed(key, words, stream_of(index, 1))
    rho_bit = expand_seed(key, spec.shape, stream_of(index, 3)) & 1
    if given:
        c, rho, r_rho = given[0], given[1], given[2:]
    else:
        c = expand_seed(key, words, stream_of(index, 2))
        rho = expand_seed(key, spec.shape, stream_of(index, 4))
        r_rho = (expand_seed(key, spec.shape, stream_of(index, 6)),) if spec.relu else ()
    product = None
    if spec.relu:
        product = ProductMask(expand_seed(key, spec.shape, stream_of(index, 5)), r_rho[0])
    return BinaryMaterial(a=a, b=b, c=c, rho_bit=rho_bit, rho=rho, product=product)


def _checked_explicit(
    explicit: Sequence[torch.Tensor], expected: list[Shape]
) -> tuple[torch.Tensor, ...]:
    tensors = tuple(explicit)
    if len(tensors) != len(expected):
        raise MaterialError(
            f"got {len(tensors)} explicit binary tensors, expected {len(expected)}",
            {"got": len(tensors), "expected": len(expected)},
        )
    for number, (tensor, shape) in enumerate(zip(tensors, expected)):
        if not isinstance(tensor, torch.Tensor) or tensor.dtype != RING_DTYPE:
            raise RingError.not_ring(
                f"explicit binary tensor {number}", getattr(tensor, "dtype", type(tensor).__name__)
            )
        if tuple(tensor.shape) != shape:
            raise RingError.shape_mismatch(
                f"explicit binary tensor {number}", shape, tuple(tensor.shape)
            )
    return tensors


@dataclass(frozen=True, slots=True)
class BinaryDealer:
    """The trusted crypto provider of binary material; ``seed_source`` defaults to the OS CSPRNG."""

    seed_source: Callable[[], Seed] = field(default=fresh_seed)

    @property
    def kind(self) -> MaterialKind:
        return MaterialKind.BINARY

    def seeds(self, n_parties: int) -> tuple[Seed, ...]:
        """Phase 1: one fresh seed per party (index i goes to party i)."""
        check_party_count(n_parties)
        return tuple(self.seed_source() for _ in range(n_parties))

    def dependent(
        self, specs: Sequence[BinarySpec], seeds: Sequence[Seed]
    ) -> dict[int, tuple[torch.Tensor, ...]]:
        """Phase 2: the last party's explicit tensors, specs in order (the others need none)."""
        n = check_party_count(len(seeds))
        explicit: list[torch.Tensor] = []
        for j, spec in enumerate(specs):
            if not isinstance(spec, BinarySpec):
                raise MaterialError(f"not a binary spec: {type(spec).__name__}", {})
            explicit.extend(_last_tensors(spec, j, seeds, n))
        return {n - 1: tuple(explicit)}

    def cost(self, specs: Sequence[BinarySpec]) -> int:
        """Words of phase 2 (sized for two parties; more parties add a carry-save round each)."""
        return sum(and_words(spec, 2) + 3 * math.prod(spec.shape) for spec in specs)

    def deal(
        self, specs: Sequence[BinarySpec], n_parties: int
    ) -> list[tuple[Seed, tuple[torch.Tensor, ...]]]:
        """Both phases in one call: (seed, explicit tensors) per party, for in-process use."""
        seeds = self.seeds(n_parties)
        dependent = self.dependent(specs, seeds)
        return [(seeds[i], dependent.get(i, ())) for i in range(n_parties)]


def _xor_seeded(seeds: Sequence[Seed], shape: Shape, stream: int) -> torch.Tensor:
    total = expand_seed(seeds[0], shape, stream)
    for seed in seeds[1:]:
        total ^= expand_seed(seed, shape, stream)
    return total


def _sum_seeded(seeds: Sequence[Seed], shape: Shape, stream: int) -> torch.Tensor:
    total = expand_seed(seeds[0], shape, stream)
    for seed in seeds[1:]:
        total += expand_seed(seed, shape, stream)
    return total


def _last_tensors(spec: BinarySpec, j: int, seeds: Sequence[Seed], n: int) -> list[torch.Tensor]:
    """The last party's c, [rho] and (ReLU) [r * rho] for spec number ``j``."""
    words = (and_words(spec, n),)
    others = seeds[:-1]
    c = _xor_seeded(seeds, words, stream_of(j, 0))
    c &= _xor_seeded(seeds, words, stream_of(j, 1))
    c ^= _xor_seeded(others, words, stream_of(j, 2))
    rho = _xor_seeded(seeds, spec.shape, stream_of(j, 3)) & 1
    out = [c, rho - _sum_seeded(others, spec.shape, stream_of(j, 4))]
    if spec.relu:
        r_rho = _sum_seeded(seeds, spec.shape, stream_of(j, 5)) * rho
        out.append(r_rho - _sum_seeded(others, spec.shape, stream_of(j, 6)))
    return out
