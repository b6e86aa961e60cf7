"""Carry-save levels and the carry tree, run on plain words, against integer sums."""

from __future__ import annotations

import pytest
import torch

from node.mpc.adders import (
    and_plan,
    carry_bit,
    carry_combine,
    carry_levels,
    carry_operands,
    carry_start,
    csa_finish,
    csa_levels,
    csa_operands,
    reverse_index_bits,
    round_ands,
)
from node.mpc.binary import bit_of, word_mask
from node.mpc.prg import random_ring


def test_csa_and_carry_plans() -> None:
    """The round plan: carry-save levels, carry tree levels, live bits and packed words."""
    assert [csa_levels(n) for n in (2, 3, 4, 5, 6, 9)] == [(), (1,), (1, 1), (1, 1, 1), (2, 1, 1), (3, 2, 1, 1)]
    assert [carry_levels(w) for w in (2, 3, 4, 5, 8, 9, 32, 33, 64)] == [0, 1, 2, 2, 3, 3, 5, 5, 6]
    assert round_ands(3, 32) == ((1, 32), (1, 32), (2, 16), (2, 8), (2, 4), (2, 2), (1, 1))
    assert round_ands(6, 8) == ((2, 8), (1, 8), (1, 8), (1, 8), (2, 4), (2, 2), (1, 1))
    assert round_ands(2, 2) == ((1, 1),)
    # Words per round for 64 elements: operands packed 64 // live to a word.
    assert and_plan(2, 32, 64) == (32, 32, 16, 8, 4, 1)
    assert and_plan(3, 64, 1) == (1, 1, 1, 1, 1, 1, 1, 1)
    assert and_plan(5, 32, 10**5) == (50000,) * 4 + (50000, 25000, 12500, 6250, 1563)


def test_reverse_index_bits_is_the_bit_reversal_permutation() -> None:
    """Each single bit lands at the reversed index, for 0..6 index bits."""
    for levels in range(7):
        positions = torch.arange(1 << levels, dtype=torch.int64)
        words = torch.ones_like(positions) << positions
        moved = reverse_index_bits(words, levels)
        expected = [int(f"{p:0{levels}b}"[::-1] or "0", 2) for p in range(1 << levels)]
        assert [int(w).bit_length() - 1 if int(w) > 0 else 63 for w in moved.tolist()] == expected


@pytest.mark.parametrize("count", [3, 4, 5, 7])
@pytest.mark.parametrize("width", [2, 5, 32, 64])
def test_carry_save_levels_keep_the_sum(count: int, width: int) -> None:
    """Carry-save levels reduce to two numbers with the same sum mod 2^width."""
    mask = word_mask(width)
    numbers = [random_ring((500,)) & mask for _ in range(count)]
    expected = sum(numbers[1:], numbers[0].clone()) & mask
    for adders in csa_levels(count):
        left, right = csa_operands(numbers, adders)
        numbers = csa_finish(numbers, adders, left & right, width)
    assert len(numbers) == 2
    assert torch.equal((numbers[0] + numbers[1]) & mask, expected)
    assert all(torch.equal(number & ~mask, torch.zeros_like(number)) for number in numbers)


def _plain_carry(a: torch.Tensor, b: torch.Tensor, width: int) -> torch.Tensor:
    """The carry tree run on plain words (the AND is the plain one), live bits checked."""
    rounds = round_ands(2, width)
    xs, ys, propagate = carry_start(a, b, width)
    assert bool(((xs & ~word_mask(rounds[0][1])) == 0).all())
    generate = (xs & ys)[0]
    levels = carry_levels(width)
    for level, (ands, live) in zip(range(levels), rounds[1:]):
        xs, ys, high = carry_operands(generate, propagate, 1 << (levels - 1 - level))
        assert xs.shape[0] == ands and bool((((xs | ys) & ~word_mask(live)) == 0).all())
        generate, new = carry_combine(high, xs & ys)
        propagate = new if new is not None else propagate
    return carry_bit(generate)


@pytest.mark.parametrize("width", range(2, 10))
def test_carry_tree_exhaustive_small_widths(width: int) -> None:
    """The carry into the top bit of every pair of numbers up to width 9."""
    values = torch.arange(1 << width, dtype=torch.int64)
    a = values.repeat_interleave(1 << width)
    b = values.repeat(1 << width)
    low = word_mask(width - 1)
    expected = ((a & low) + (b & low)) >> (width - 1)
    assert torch.equal(_plain_carry(a, b, width), expected)


@pytest.mark.parametrize("width", [17, 32, 33, 63, 64])
def test_carry_tree_random_wide(width: int) -> None:
    """The carry into the top bit for random and all-ones numbers at wide widths."""
    a, b = (random_ring((20000,)) & word_mask(width) for _ in range(2))
    low = word_mask(width - 1)
    # (a mod 2^(w-1)) + (b mod 2^(w-1)) may need 64 bits: read its bit w - 1.
    expected = bit_of((a & low) + (b & low), width - 1)
    assert torch.equal(_plain_carry(a, b, width), expected)
    edge_a = torch.tensor([low, low, 0, low], dtype=torch.int64)
    edge_b = torch.tensor([1, 0, 0, low], dtype=torch.int64)
    assert _plain_carry(edge_a, edge_b, width).tolist() == [1, 0, 0, 1]
