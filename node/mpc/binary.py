"""XOR-shared words: local word operations, Beaver AND, and packing.

Owns the pure, per-party steps of binary (boolean) secret sharing that
:mod:`node.mpc.adders` builds adders from and :mod:`node.mpc.a2b` composes
into a comparison.  An element's bits live in one ``int64`` word (bit k of
the word is bit k of the element), so every step is a handful of
vectorised word operations, whatever the width.  Must not import asyncio,
websockets, or anything of ``node.server`` / ``node.client``.

XOR sharing: a word w is held as w_0 ^ ... ^ w_{n-1}.  XOR, shifts, bit
permutations and AND with a public word are local; a
public constant is XORed in by party 0 only.  The AND of two shared words
takes a binary Beaver triple (a, b, c = a & b), XOR-shared, and one
opening (:func:`and_mask`, :func:`and_finish`): each party sends
e_i = x_i ^ a_i and f_i = y_i ^ b_i, everyone XORs them into e = x ^ a and
f = y ^ b (uniform: a and b are), and z_i = c_i ^ (e & b_i) ^ (f & a_i),
party 0 also XORing e & f.  XORed over the parties:
ab ^ (x^a)b ^ (y^b)a ^ (x^a)(y^b) = xy.

Packing: an AND of operands of ``live`` bits uses only those bits, and AND
and XOR act bit by bit, so the operands of one round (all its ANDs, all
elements) are packed 64 // live to a word before they are masked
(:func:`pack`, :func:`unpack`): a round opens and consumes one triple per
packed word, not per operand.
"""

from __future__ import annotations

from functools import reduce
import math
from typing import Iterable

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
    "packed_words",
    "pack",
    "unpack",
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


def packed_words(count: int, live: int) -> int:
    """Words that hold ``count`` operands of ``live`` bits, 64 // live to a word."""
    per_word = RING_BITS // live
    return -(-count // per_word)


def pack(values: torch.Tensor, live: int) -> torch.Tensor:
    """Operands of ``live`` bits (any shape, zero above bit live - 1) packed into a 1-d word tensor.

    Slot j of word t holds operand ``j * words + t`` (the flattened operands
    in blocks), so packing and unpacking are one shift per slot, vectorised.
    """
    flat = values.reshape(-1)
    per_word = RING_BITS // live
    if per_word == 1:
        return flat
    words = packed_words(flat.numel(), live)
    padded = flat.new_zeros(words * per_word)
    padded[: flat.numel()] = flat
    shifts = torch.arange(0, per_word * live, live, dtype=flat.dtype).view(per_word, 1)
    # The slots' bits are disjoint, so their sum is their OR (and never carries).
    return (padded.view(per_word, words) << shifts).sum(0)


def unpack(packed: torch.Tensor, shape: tuple[int, ...], live: int) -> torch.Tensor:
    """The operands of ``shape`` that :func:`pack` put into ``packed``."""
    per_word = RING_BITS // live
    if per_word == 1:
        return packed.view(shape)
    shifts = torch.arange(0, per_word * live, live, dtype=packed.dtype).view(per_word, 1)
    slots = (packed.unsqueeze(0) >> shifts) & word_mask(live)
    return slots.reshape(-1)[: math.prod(shape)].view(shape)
