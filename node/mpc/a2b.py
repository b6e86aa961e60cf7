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
2. Carry-save levels (:func:`node.mpc.adders.csa_levels`) reduce the n
   numbers to two, A + B (mod 2^w): one AND round per level, none for n = 2.
3. The carry into bit w-1 of A + B: G = A & B (one round), then
   ceil(log2(w - 1)) rounds of a carry tree (:mod:`node.mpc.adders`).  The
   top bit d = A_{w-1} ^ B_{w-1} ^ carry, XOR-shared.
4. Binary to arithmetic, one round: each party opens d_i ^ rho_i, so e =
   d ^ rho is public (rho is a uniform bit), and
   [d] = e + (1 - 2e)[rho]; party 0 adds the public e.
5. ReLU, no round of its own: x * d = e x + (1 - 2e) x rho.  The dealer
   gives (r, r rho) with r uniform; every party opens x_i - r_i in the first
   round, beside its first AND, so x - r is public and
   [x rho] = [r rho] + (x - r)[rho].

Rounds: one per AND round of :func:`node.mpc.adders.round_ands`, plus one,
for DReLU and ReLU alike (:func:`round_count`): 7 at n = 2 and w = 32, 8
at n = 3, 10 at n = 5.  The ANDs' operands are packed 64 // live bits to a
word (:func:`node.mpc.binary.pack`) and each packed word opens two words;
the bits e are packed 64 to a word; x - r (ReLU) is one word per element
(:func:`opened_words`): about 2.9 words per element at n = 2 and w = 32,
3.9 at n = 3, 4.9 for a ReLU at n = 3.

Everything opened is masked by a uniform one-time value (a, b of a binary
triple, rho, r), so the openings reveal nothing; the comparison's round
count depends on shape, width and n only.
"""

from __future__ import annotations

import math
from typing import Generator, Sequence

import torch

from .adders import (
    and_plan,
    carry_bit,
    carry_combine,
    carry_operands,
    carry_start,
    csa_finish,
    csa_levels,
    csa_operands,
    round_ands,
)
from .binary import and_finish, and_mask, bit_of, pack, packed_words, unpack, word_mask, xor_all
from .binary_material import BinaryDealer, BinaryMaterial, BinarySpec, expand_binary
from .errors import PartyError, RingError
from .prg import Seed
from .ring import RING_DTYPE, check_ring, wrap_int
from .rounds import Opened, Opening, RoundProtocol
from .shares import check_party, check_party_count

__all__ = ["BinarySpec", "BinaryDealer", "party_protocol", "round_count", "opened_words"]


def round_count(spec: BinarySpec, n_parties: int) -> int:
    """Online rounds of a comparison (or ReLU) of ``spec`` among ``n_parties``."""
    return len(and_plan(check_party_count(n_parties), spec.width, 1)) + 1


def opened_words(spec: BinarySpec, n_parties: int) -> int:
    """int64 words each party sends every other party for the whole tensor of ``spec``."""
    elements = math.prod(spec.shape)
    ands = sum(and_plan(check_party_count(n_parties), spec.width, elements))
    return 2 * ands + packed_words(elements, 1) + (elements if spec.relu else 0)


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
    party: int,
    xs: torch.Tensor,
    ys: torch.Tensor,
    live: int,
    triples: _Triples,
    extra: tuple[torch.Tensor, ...],
) -> _AndRound:
    """One round of stacked ANDs xs & ys of ``live`` bits, packed (plus ``extra``, summed)."""
    packed_x, packed_y = pack(xs, live), pack(ys, live)
    a, b, c = triples.take(packed_x.shape[0])
    mine = and_mask(packed_x, packed_y, a, b)
    opened = yield Opening((mine, *extra))
    _check_opened(opened, (mine, *extra))
    packed = and_finish(party, xor_all(values[0] for values in opened), a, b, c)
    anded = unpack(packed, tuple(xs.shape), live)
    sums = [
        sum((values[k] for values in opened[1:]), opened[0][k]) for k in range(1, len(extra) + 1)
    ]
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
                raise RingError.not_ring(
                    f"opening from party {sender}", getattr(value, "dtype", None)
                )
            if value.shape != own.shape:
                raise RingError.shape_mismatch(
                    f"opening from party {sender}", tuple(own.shape), tuple(value.shape)
                )


def _protocol(
    spec: BinarySpec, party: int, n: int, material: BinaryMaterial, x: torch.Tensor
) -> RoundProtocol:
    width = spec.width
    triples = _Triples(material)
    plan = iter(round_ands(n, width))
    # The first AND round also carries x - r for ReLU (step 5).
    product = material.product
    extra: tuple[torch.Tensor, ...] = (x - product.r,) if product is not None else ()
    opened_extra: list[torch.Tensor] = []

    offset = wrap_int(1 << (width - 1)) if party == 0 else 0
    own = (x + offset) & word_mask(width)
    zero = torch.zeros_like(own)
    numbers = [own if j == party else zero for j in range(n)]
    for adders in csa_levels(n):
        xs, ys = csa_operands(numbers, adders)
        anded, sums = yield from _and_round(party, xs, ys, next(plan)[1], triples, extra)
        opened_extra, extra = opened_extra or sums, ()
        numbers = csa_finish(numbers, adders, anded, width)

    top_a, top_b = numbers
    xs, ys, propagate = carry_start(top_a, top_b, width)
    anded, sums = yield from _and_round(party, xs, ys, next(plan)[1], triples, extra)
    opened_extra = opened_extra or sums
    generate = anded[0]
    for _, half in plan:
        xs, ys, high_generate = carry_operands(generate, propagate, half)
        anded, _ = yield from _and_round(party, xs, ys, half, triples, ())
        generate, new_propagate = carry_combine(high_generate, anded)
        propagate = new_propagate if new_propagate is not None else propagate

    d_bit = bit_of(top_a ^ top_b, width - 1) ^ carry_bit(generate)
    mine = pack(d_bit ^ material.rho_bit, 1)
    opened = yield Opening((mine,))
    _check_opened(opened, (mine,))
    e = unpack(xor_all(values[0] for values in opened), spec.shape, 1)
    flip = 1 - 2 * e
    if product is None:
        d = flip * material.rho
        return d + e if party == 0 else d
    x_rho = product.r_rho + opened_extra[0] * material.rho
    return e * x + flip * x_rho
