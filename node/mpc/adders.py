"""Adders on XOR-shared words: carry-save levels, the carry tree, and their round plan.

Owns the local steps around each AND round (:mod:`node.mpc.binary` does
the ANDs) of the two adders a comparison needs, and :func:`round_ands`,
the one place that says what each round carries: the dealer sizes its
binary triples from it (:func:`and_plan`) and the parties consume them in
that order, so they always agree.  All sums are mod 2^width.  Must not
import asyncio, websockets, or anything of ``node.server`` / ``node.client``.

- Carry-save adder (:func:`csa_operands`, :func:`csa_finish`): three
  numbers A, B, C to two with A + B + C = S + K, where S = A ^ B ^ C and
  K = maj(A, B, C) << 1, maj = ((A ^ C) & (B ^ C)) ^ C: one AND, so a
  level of independent adders costs one round (:func:`csa_levels`).
- The carry into bit width - 1 of A + B (:func:`carry_start`,
  :func:`carry_operands`, :func:`carry_combine`, :func:`carry_bit`): per
  bit below the top, generate G = A & B (one round) and propagate
  P = A ^ B.  Segments of bits are then merged pairwise, one round per
  level: each pair joins a low segment and the one just above it into
  (G_hi ^ (P_hi & G_lo), P_hi & P_lo) (the two terms of G are never both
  1, so XOR is OR).  For the pairs to be plain word halves, the w - 1 bits
  are first padded below to M = 2^L bits with zeros (a zero bit neither
  generates nor propagates, and nothing is below it) and put in
  bit-reversed order of their index (:func:`reverse_index_bits`, a local
  permutation): then at every level the low segments of the pairs are
  the low half of the word's live bits and their partners the high half,
  and the merged segments come out in bit-reversed order again.  So L =
  ceil(log2(w - 1)) levels with M/2, M/4, .., 2 bits per AND (two ANDs a
  level) and one AND of G's single bit last: 2M - 3 AND bits in all (61
  at width 32), rather than 2(w - 1) per level for a Kogge-Stone prefix
  over the whole word.
"""

from __future__ import annotations

import functools
from typing import Sequence

import torch

from .binary import packed_words, word_mask
from .ring import RING_BITS, wrap_int

__all__ = [
    "csa_levels",
    "carry_levels",
    "reverse_index_bits",
    "round_ands",
    "and_plan",
    "csa_operands",
    "csa_finish",
    "carry_start",
    "carry_operands",
    "carry_combine",
    "carry_bit",
]


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
    """Levels of the carry tree: L = ceil(log2(width - 1)), for width - 1 bits padded to 2^L."""
    return max(width - 2, 0).bit_length()


@functools.lru_cache(maxsize=None)
def _index_swaps(levels: int) -> tuple[tuple[int, int], ...]:
    """(delta, mask) of the delta swaps that reverse the ``levels`` low bits of each bit index."""
    swaps = []
    for low in range(levels // 2):
        high = levels - 1 - low
        positions = [p for p in range(RING_BITS) if (p >> low) & 1 and not (p >> high) & 1]
        swaps.append(((1 << high) - (1 << low), wrap_int(sum(1 << p for p in positions))))
    return tuple(swaps)


def reverse_index_bits(word: torch.Tensor, levels: int) -> torch.Tensor:
    """Each word's bit at index p moved to index reverse(p) over ``levels`` index bits.

    The words must be zero from bit 2^levels up.  One delta swap per pair
    of index bits (3 for 64-bit words), local on XOR shares.
    """
    out = word
    for delta, mask in _index_swaps(levels):
        moved = ((out >> delta) ^ out) & mask
        out = out ^ moved ^ (moved << delta)
    return out


def round_ands(n_parties: int, width: int) -> tuple[tuple[int, int], ...]:
    """(ANDs per element, live bits of each operand) in each AND round of a comparison.

    Carry-save levels first (one AND of ``width`` bits per adder), then
    G = A & B (one AND of the 2^L padded bits), then the carry tree's L
    levels (two ANDs of 2^(L-1), 2^(L-2), .. bits, one AND of 1 bit last).
    """
    csa = tuple((adders, width) for adders in csa_levels(n_parties))
    levels = carry_levels(width)
    tree = tuple(
        (1 if level == levels - 1 else 2, 1 << (levels - 1 - level)) for level in range(levels)
    )
    return csa + ((1, 1 << levels),) + tree


def and_plan(n_parties: int, width: int, elements: int) -> tuple[int, ...]:
    """Binary triples (packed words) in each AND round for a tensor of ``elements`` elements."""
    return tuple(
        packed_words(ands * elements, live) for ands, live in round_ands(n_parties, width)
    )


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


def carry_start(
    a: torch.Tensor, b: torch.Tensor, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The AND operands of G = A & B on bits 0..width-2 (padded, reordered), and P = A ^ B."""
    levels = carry_levels(width)
    pad = (1 << levels) - (width - 1)
    mask = word_mask(width - 1)
    low_a = reverse_index_bits((a & mask) << pad, levels)
    low_b = reverse_index_bits((b & mask) << pad, levels)
    return low_a.unsqueeze(0), low_b.unsqueeze(0), low_a ^ low_b


def carry_operands(
    generate: torch.Tensor, propagate: torch.Tensor, half: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A level's AND operands (P_hi, G_lo) and, unless last (``half`` 1), (P_hi, P_lo); and G_hi.

    The level's 2 * ``half`` segments are the low bits of the words: the
    pairs' low segments in bits 0..half-1, their partners in the next ``half``.
    """
    mask = word_mask(half)
    high_propagate = (propagate >> half) & mask
    high_generate = (generate >> half) & mask
    low_generate = generate & mask
    if half == 1:
        return high_propagate.unsqueeze(0), low_generate.unsqueeze(0), high_generate
    xs = torch.stack((high_propagate, high_propagate))
    ys = torch.stack((low_generate, propagate & mask))
    return xs, ys, high_generate


def carry_combine(
    high_generate: torch.Tensor, anded: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The next level's (G, P): G_hi ^ (P_hi & G_lo), and P_hi & P_lo when it was computed."""
    generate = high_generate ^ anded[0]
    return generate, anded[1] if anded.shape[0] > 1 else None


def carry_bit(generate: torch.Tensor) -> torch.Tensor:
    """The carry into the top bit: bit 0 of the last level's G (one segment left)."""
    return generate & 1
