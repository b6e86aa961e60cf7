"""Comparison with zero and ReLU among 2..n parties by arithmetic-to-binary conversion.

Owns :func:`party_protocol`, one party's side of DReLU ([x >= 0]) or ReLU
(x * [x >= 0]) on an additively shared tensor, as a round protocol
(:mod:`node.mpc.rounds`), with the material of :mod:`node.mpc.binary_material`
(re-exported here: :class:`BinarySpec`, :class:`BinaryDealer`).  Must not
import asyncio, websockets, or anything of ``node.server`` / ``node.client``.

x is the signed value of the low ``width`` bits of the ring element; the
result is exact when -2^(width-1) <= x < 2^(width-1).  Protocol (w = width):

1. Local: party i's number u_i = x_i mod 2^w, plus 2^(w-1) for party 0, so
   sum u_i = x + 2^(w-1) (mod 2^w), whose top bit is [x >= 0].  Party i
   XOR-shares the n numbers as (0, .., u_i, .., 0): no message.
2. Carry-save levels (:func:`node.mpc.binary.csa_levels`) reduce the n
   numbers to two, A + B (mod 2^w): one AND round per level, none for n = 2.
3. The carry into bit w-1 of A + B: G = A & B (one round), then
   ceil(log2(w - 1)) prefix rounds (:mod:`node.mpc.binary`).  The top bit
   d = A_{w-1} ^ B_{w-1} ^ carry, XOR-shared.
4. Binary to arithmetic, one round: each party opens d_i ^ rho_i, so e =
   d ^ rho is public (rho is a uniform bit), and
   [d] = e + (1 - 2e)[rho]; party 0 adds the public e.
5. ReLU, no round of its own: x * d = e x + (1 - 2e) x rho.  The dealer
   gives (r, r rho) with r uniform; every party opens x_i - r_i in the first
   round, beside its first AND, so x - r is public and
   [x rho] = [r rho] + (x - r)[rho].

Rounds: len(and_plan) + 1 for DReLU and ReLU alike (:func:`round_count`):
7 at n = 2 and w = 32, 8 at n = 3, 10 at n = 5.  Each AND word opens two
words; the bit e and (ReLU) x - r one word each (:func:`opened_words`).
Everything opened is masked by a uniform one-time value (a, b of a binary
triple, rho, r), so the openings reveal nothing; the comparison's round
count depends on shape, width and n only.
"""

from __future__ import annotations

from typing import Generator, Sequence

import torch

from .binary import (
    and_finish,
    and_mask,
    and_plan,
    bit_of,
    carry_bit,
    carry_combine,
    carry_levels,
    carry_operands,
    carry_start,
    csa_finish,
    csa_levels,
    csa_operands,
    word_mask,
    xor_all,
)
from .binary_material import BinaryDealer, BinaryMaterial, BinarySpec, expand_binary
from .errors import PartyError, RingError
from .prg import Seed
from .ring import RING_DTYPE, check_ring, wrap_int
from .rounds import Opened, Opening, RoundProtocol
from .shares import check_party, check_party_count

__all__ = ["BinarySpec", "BinaryDealer", "party_protocol", "round_count", "opened_words"]


def round_count(spec: BinarySpec, n_parties: int) -> int:
    """Online rounds of a comparison (or ReLU) of ``spec`` among ``n_parties``."""
    return len(and_plan(check_party_count(n_parties), spec.width)) + 1


def opened_words(spec: BinarySpec, n_parties: int) -> int:
    """int64 words each party sends every other party, per element."""
    ands = sum(and_plan(check_party_count(n_parties), spec.width))
    return 2 * ands + 1 + (1 if spec.relu else 0)


def party_protocol(
    spec: BinarySpec,
    party: int,
    n_parties: int,
    seed: Seed,
    explicit: Sequence[torch.Tensor],
    x: torch.Tensor,
    index: int = 0,
) -> RoundProtocol:
    """Party ``party``'s side of DReLU (or ReLU if ``spec.relu``) on its share ``x``.

    ``seed`` and ``explicit`` are this party's material for spec number
    ``index`` of its batch (``explicit``: this spec's slice, empty but for
    the last party).  Inputs are checked now; the generator returns this
    party's additive share of [x >= 0] (0/1, precision 0) or of x * [x >= 0].
    """
    check_party_count(n_parties)
    check_party(party, n_parties)
    check_ring(x, "comparison input share")
    if tuple(x.shape) != spec.shape:
        raise RingError.shape_mismatch("comparison input share", spec.shape, tuple(x.shape))
    material = expand_binary(seed, spec, index, party, n_parties, explicit)
    return _protocol(spec, party, n_parties, material, x)


class _Triples:
    """The party's binary triples, handed out in plan order."""

    def __init__(self, material: BinaryMaterial) -> None:
        self._material = material
        self._next = 0

    def take(self, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        start, self._next = self._next, self._next + count
        m = self._material
        return m.a[start : self._next], m.b[start : self._next], m.c[start : self._next]


_AndRound = Generator[Opening, Opened, tuple[torch.Tensor, list[torch.Tensor]]]


def _and_round(
    party: int, xs: torch.Tensor, ys: torch.Tensor, triples: _Triples, extra: tuple[torch.Tensor, ...]
) -> _AndRound:
    """One round of stacked ANDs xs & ys (plus ``extra`` arithmetic openings, summed)."""
    a, b, c = triples.take(xs.shape[0])
    mine = and_mask(xs, ys, a, b)
    opened = yield Opening((mine, *extra))
    _check_opened(opened, (mine, *extra))
    anded = and_finish(party, xor_all(values[0] for values in opened), a, b, c)
    sums = [sum((values[k] for values in opened[1:]), opened[0][k]) for k in range(1, len(extra) + 1)]
    return anded, sums


def _check_opened(opened: Opened, mine: tuple[torch.Tensor, ...]) -> None:
    """Every party's values of a round must be int64 tensors shaped like this party's."""
    for sender, values in enumerate(opened):
        if len(values) != len(mine):
            raise PartyError(
                f"party {sender} opened {len(values)} tensors, expected {len(mine)}",
                {"party": sender},
            )
        for value, own in zip(values, mine):
            if not isinstance(value, torch.Tensor) or value.dtype != RING_DTYPE:
                raise RingError.not_ring(f"opening from party {sender}", getattr(value, "dtype", None))
            if value.shape != own.shape:
                raise RingError.shape_mismatch(
                    f"opening from party {sender}", tuple(own.shape), tuple(value.shape)
                )


def _protocol(
    spec: BinarySpec, party: int, n: int, material: BinaryMaterial, x: torch.Tensor
) -> RoundProtocol:
    width = spec.width
    triples = _Triples(material)
    # The first AND round also carries x - r for ReLU (step 5).
    extra: tuple[torch.Tensor, ...] = (x - material.r,) if material.r is not None else ()
    opened_extra: list[torch.Tensor] = []

    offset = wrap_int(1 << (width - 1)) if party == 0 else 0
    own = (x + offset) & word_mask(width)
    zero = torch.zeros_like(own)
    numbers = [own if j == party else zero for j in range(n)]
    for adders in csa_levels(n):
        xs, ys = csa_operands(numbers, adders)
        anded, sums = yield from _and_round(party, xs, ys, triples, extra)
        opened_extra, extra = opened_extra or sums, ()
        numbers = csa_finish(numbers, adders, anded, width)

    top_a, top_b = numbers
    xs, ys = carry_start(top_a, top_b, width)
    anded, sums = yield from _and_round(party, xs.unsqueeze(0), ys.unsqueeze(0), triples, extra)
    opened_extra = opened_extra or sums
    generate = anded[0]
    propagate = (top_a ^ top_b) & word_mask(width - 1)
    levels = carry_levels(width)
    for level in range(levels):
        last = level == levels - 1
        xs, ys = carry_operands(generate, propagate, 1 << level, last)
        anded, _ = yield from _and_round(party, xs, ys, triples, ())
        generate, new_propagate = carry_combine(generate, anded, width)
        propagate = new_propagate if new_propagate is not None else propagate

    d_bit = bit_of(top_a ^ top_b, width - 1) ^ carry_bit(generate, width)
    mine = d_bit ^ material.rho_bit
    opened = yield Opening((mine,))
    _check_opened(opened, (mine,))
    e = xor_all(values[0] for values in opened) & 1
    flip = 1 - 2 * e
    if material.r is None:
        d = flip * material.rho
        return d + e if party == 0 else d
    assert material.r_rho is not None  # expand_binary gives r and r_rho together
    x_rho = material.r_rho + opened_extra[0] * material.rho
    return e * x + flip * x_rho
