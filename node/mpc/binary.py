"""XOR-shared words: Beaver AND, carry-save adders, the carry tree, and their round plan.

Owns the pure, per-party steps of binary (boolean) secret sharing that
:mod:`node.mpc.a2b` composes into a comparison.  An element's bits live in
one ``int64`` word (bit k of the word is bit k of the element), so every
step is a handful of vectorised word operations, whatever the width.  Must
not import asyncio, websockets, or anything of ``node.server`` /
``node.client``.

XOR sharing: a word w is held as w_0 ^ ... ^ w_{n-1}.  XOR, shifts and AND
with a public word are local; a public constant is XORed in by party 0
only.  The AND of two shared words takes a binary Beaver triple
(a, b, c = a & b), XOR-shared, and one opening (:func:`and_mask`,
:func:`and_finish`): each party sends e_i = x_i ^ a_i and f_i = y_i ^ b_i,
everyone XORs them into e = x ^ a and f = y ^ b (uniform: a and b are), and
z_i = c_i ^ (e & b_i) ^ (f & a_i), party 0 also XORing e & f.  XORed
over the parties: ab ^ (x^a)b ^ (y^b)a ^ (x^a)(y^b) = xy.  Several ANDs of
one round are stacked along a new first dimension and opened together.

The adders (all sums mod 2^width):

- carry-save adder (:func:`csa_operands`, :func:`csa_finish`): three
  numbers A, B, C to two with A + B + C = S + K, where S = A ^ B ^ C and
  K = maj(A, B, C) << 1, maj = ((A ^ C) & (B ^ C)) ^ C: one AND, so a
  level of independent adders costs one round;
- the carry into bit ``width - 1`` of A + B (:func:`carry_start`,
  :func:`carry_operands`, :func:`carry_combine`): generate G = A & B and
  propagate P = A ^ B on bits 0..width-2, then prefix levels with shift
  s = 1, 2, 4, ...: G <- G ^ (P & (G << s)), P <- P & (P << s) (Kogge-Stone
  over whole words; the two terms of G are never both 1, so XOR is OR).
  After ceil(log2(width - 1)) levels, bit width-2 of G is the carry.  The
  last level needs no P, so it has one AND.

:func:`and_plan` is the one place that says how many AND words each round
carries; the dealer sizes its binary triples from it and the parties
consume them in that order, so they always agree.
"""

from __future__ import annotations

from functools import reduce
from typing import Iterable, Sequence

import torch

from .ring import RING_BITS

__all__ = [
    "MIN_WIDTH",
    "MAX_WIDTH",
    "word_mask",
    "bit_of",
    "xor_all",
    "and_mask",
    "and_finish",
    "csa_levels",
    "carry_levels",
    "and_plan",
    "csa_operands",
    "csa_finish",
    "carry_start",
    "carry_operands",
    "carry_combine",
    "carry_bit",
]

MIN_WIDTH = 2
"""A sign needs one bit of magnitude below it."""
MAX_WIDTH = RING_BITS
"""One word per element."""


def word_mask(bits: int) -> int:
    """The int64 word with bits 0..bits-1 set (-1 for all 64)."""
    return -1 if bits >= RING_BITS else (1 << bits) - 1


def bit_of(word: torch.Tensor, position: int) -> torch.Tensor:
    """Bit ``position`` of each word, as 0/1 int64 (sign extension is masked off)."""
    return (word >> position) & 1


def xor_all(words: Iterable[torch.Tensor]) -> torch.Tensor:
    """The XOR of ``words`` (at least one): how an opening of XOR shares is combined."""
    return reduce(torch.bitwise_xor, words)


def and_mask(
    x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """This party's stacked (x ^ a, y ^ b): what it sends for the ANDs x & y of one round."""
    return torch.stack((x ^ a, y ^ b))


def and_finish(
    party: int, opened: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor
) -> torch.Tensor:
    """This party's share of x & y, from the XOR of every party's :func:`and_mask`."""
    e, f = opened[0], opened[1]
    z = c ^ (e & b) ^ (f & a)
    if party == 0:
        z ^= e & f
    return z


def csa_levels(n_numbers: int) -> tuple[int, ...]:
    """Carry-save adders per level that reduce ``n_numbers`` numbers to two.

    Each level adds up as many disjoint triples as it can (3 -> 2 each) and
    passes the rest on: 3 -> 2 in one level, 4 and 5 in two and three.
    """
    levels: list[int] = []
    count = n_numbers
    while count > 2:
        adders = count // 3
        levels.append(adders)
        count -= adders
    return tuple(levels)


def carry_levels(width: int) -> int:
    """Prefix levels of the carry tree over the width - 1 bits below the top one."""
    return max(width - 2, 0).bit_length()


def and_plan(n_parties: int, width: int) -> tuple[int, ...]:
    """AND words per element in each AND round of a comparison of ``n_parties`` shares.

    Carry-save levels first (one AND per adder), then G = A & B (one AND),
    then the prefix levels (two ANDs each, one for the last).
    """
    levels = carry_levels(width)
    tree = (2,) * (levels - 1) + (1,) if levels else ()
    return csa_levels(n_parties) + (1,) + tree


def csa_operands(
    numbers: Sequence[torch.Tensor], adders: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The stacked AND operands (A ^ C, B ^ C) of the first ``adders`` triples of ``numbers``."""
    a = torch.stack([numbers[3 * k] for k in range(adders)])
    b = torch.stack([numbers[3 * k + 1] for k in range(adders)])
    c = torch.stack([numbers[3 * k + 2] for k in range(adders)])
    return a ^ c, b ^ c


def csa_finish(
    numbers: Sequence[torch.Tensor], adders: int, anded: torch.Tensor, width: int
) -> list[torch.Tensor]:
    """The numbers after one carry-save level: each triple's sum and carry, then the rest."""
    out: list[torch.Tensor] = []
    mask = word_mask(width)
    for k in range(adders):
        a, b, c = numbers[3 * k], numbers[3 * k + 1], numbers[3 * k + 2]
        out.append(a ^ b ^ c)
        out.append(((anded[k] ^ c) << 1) & mask)
    out.extend(numbers[3 * adders :])
    return out


def carry_start(a: torch.Tensor, b: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The AND operands of G = A & B on bits 0..width-2 (the bits whose carry reaches the top)."""
    mask = word_mask(width - 1)
    return a & mask, b & mask


def carry_operands(
    generate: torch.Tensor, propagate: torch.Tensor, shift: int, last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked AND operands of one prefix level: (P, G << s) and, unless last, (P, P << s)."""
    if last:
        return propagate.unsqueeze(0), (generate << shift).unsqueeze(0)
    return torch.stack((propagate, propagate)), torch.stack((generate << shift, propagate << shift))


def carry_combine(
    generate: torch.Tensor, anded: torch.Tensor, width: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The level's new (G, P): G ^ (P & (G << s)), and P & (P << s) when it was computed."""
    mask = word_mask(width - 1)
    new_generate = (generate ^ anded[0]) & mask
    new_propagate = anded[1] & mask if anded.shape[0] > 1 else None
    return new_generate, new_propagate


def carry_bit(generate: torch.Tensor, width: int) -> torch.Tensor:
    """The carry into bit width - 1: the top bit of the finished generate word."""
    return bit_of(generate, width - 2)
