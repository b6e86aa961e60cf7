"""The crypto provider's Beaver material: triples and truncation masks in batches.

Owns :class:`Dealer`, the trusted-dealer :class:`~node.mpc.provider.MaterialProvider`
of :attr:`~node.mpc.provider.MaterialKind.BEAVER` material.  The dealer sees
shapes only, never an input.  Must not import asyncio, websockets, or
anything of ``node.server`` / ``node.client``.

For each batch the dealer draws one fresh seed per party (phase 1, sent at
once) and expands, from each seed, exactly what that party will expand
(:mod:`node.mpc.material`), to compute the last party's dependent tensors
(phase 2):

- triple ``(a, b, c)``: a = sum of the parties' seeded a_i, likewise b;
  c = op(a, b); parties 0..n-2 expand c_i from their seed, the last party
  receives c_{n-1} = c - sum of the others explicitly;
- truncation ``(r, top, low)``: r = sum of the seeded r_i (uniform over the
  ring); top = bit 63 of r and low = (r mod 2^63) >> bits, both shared the
  same way (seeded for parties 0..n-2, explicit for the last party).

So a batch costs the first n-1 parties 16 bytes each, and the last party one
tensor per triple (two per truncation).

Trust: the dealer knows every party's seed, hence a, b and r.  It must
therefore never receive the opened values (eps, delta, the masked c of a
truncation) and must not collude with a computing party; it is the usual
semi-honest crypto provider of PySyft/SPDZ-style deployments, with no MACs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .material import MaterialSpec, PartyMaterial, TripleSpec, TruncationSpec, stream_of
from .prg import Seed, expand_seed, fresh_seed
from .provider import MaterialKind
from .ring import BilinearOp, apply_bilinear, logical_shift, low_bits, top_bit
from .shares import check_party_count

__all__ = ["Dealer"]


@dataclass(frozen=True, slots=True)
class Dealer:
    """The trusted crypto provider of Beaver material; ``seed_source`` defaults to the OS CSPRNG."""

    seed_source: Callable[[], Seed] = field(default=fresh_seed)

    @property
    def kind(self) -> MaterialKind:
        return MaterialKind.BEAVER

    def seeds(self, n_parties: int) -> tuple[Seed, ...]:
        """Phase 1: one fresh seed per party (index i goes to party i)."""
        check_party_count(n_parties)
        return tuple(self.seed_source() for _ in range(n_parties))

    def dependent(
        self, specs: Sequence[MaterialSpec], seeds: Sequence[Seed]
    ) -> dict[int, tuple[torch.Tensor, ...]]:
        """Phase 2: the last party's explicit tensors, in spec order (the others need none)."""
        check_party_count(len(seeds))
        explicit: list[torch.Tensor] = []
        for j, spec in enumerate(specs):
            if isinstance(spec, TripleSpec):
                explicit.append(_last_c(spec, j, seeds))
            else:
                explicit.extend(_last_truncation(spec, j, seeds))
        return {len(seeds) - 1: tuple(explicit)}

    def cost(self, specs: Sequence[MaterialSpec]) -> int:
        """The input elements of ``specs`` (a triple's x and y, a mask's shape)."""
        total = 0
        for spec in specs:
            if isinstance(spec, TripleSpec):
                total += math.prod(spec.x_shape) + math.prod(spec.y_shape)
            else:
                total += math.prod(spec.shape)
        return total

    def deal(self, specs: Sequence[MaterialSpec], n_parties: int) -> list[PartyMaterial]:
        """Both phases in one call: one bundle per party (index i goes to party i), ``specs`` in order.

        For parties in one process (tests, simulations); a node's service
        runs the phases apart, sending the seeds before computing the rest.
        """
        batch = tuple(specs)
        seeds = self.seeds(n_parties)
        dependent = self.dependent(batch, seeds)
        return [
            PartyMaterial(
                party=i,
                n_parties=n_parties,
                specs=batch,
                seed=seeds[i],
                explicit=dependent.get(i, ()),
            )
            for i in range(n_parties)
        ]


def _seeded_sum(seeds: Sequence[Seed], shape: tuple[int, ...], stream: int) -> torch.Tensor:
    """Sum of what ``seeds`` expand to (accumulated in the first, which is fresh)."""
    total = expand_seed(seeds[0], shape, stream)
    for seed in seeds[1:]:
        total += expand_seed(seed, shape, stream)
    return total


def _last_share(value: torch.Tensor, seeds: Sequence[Seed], stream: int) -> torch.Tensor:
    """value minus the shares parties 0..n-2 expand from their seeds (``value`` is consumed)."""
    shape = tuple(value.shape)
    for seed in seeds[:-1]:
        value -= expand_seed(seed, shape, stream)
    return value


def _last_c(spec: TripleSpec, j: int, seeds: Sequence[Seed]) -> torch.Tensor:
    a = _seeded_sum(seeds, spec.x_shape, stream_of(j, 0))
    b = _seeded_sum(seeds, spec.y_shape, stream_of(j, 1))
    if spec.op is BilinearOp.MUL and spec.x_shape == spec.z_shape:
        c = a.mul_(b)  # a is this function's own: no third tensor
    else:
        c = apply_bilinear(spec.op, a, b, spec.conv)
    return _last_share(c, seeds, stream_of(j, 2))


def _last_truncation(spec: TruncationSpec, j: int, seeds: Sequence[Seed]) -> list[torch.Tensor]:
    r = _seeded_sum(seeds, spec.shape, stream_of(j, 0))
    top = top_bit(r)
    low = logical_shift(low_bits(r), spec.bits)
    return [_last_share(top, seeds, stream_of(j, 1)), _last_share(low, seeds, stream_of(j, 2))]
