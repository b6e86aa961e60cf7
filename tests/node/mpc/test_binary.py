"""XOR-shared words: Beaver AND, carry-save adders and the carry tree against plain integers."""

from __future__ import annotations

import pytest
import torch

from node.mpc.binary import (
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
    pack,
    packed_words,
    round_ands,
    unpack,
    word_mask,
    xor_all,
)
from node.mpc.prg import random_ring


def _xor_split(word: torch.Tensor, n: int) -> list[torch.Tensor]:
    shares = [random_ring(word.shape) for _ in range(n - 1)]
    return shares + [xor_all([word, *shares])] if shares else [word.clone()]


def _plain_and(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return x & y


def test_word_masks_and_bits() -> None:
    assert word_mask(1) == 1 and word_mask(8) == 255 and word_mask(63) == (1 << 63) - 1
    assert word_mask(64) == -1
    word = torch.tensor([-1, 1 << 62, 5], dtype=torch.int64)
    assert bit_of(word, 63).tolist() == [1, 0, 0]
    assert bit_of(word, 62).tolist() == [1, 1, 0]
    assert bit_of(word, 2).tolist() == [1, 0, 1]


@pytest.mark.parametrize("n", [2, 3, 5])
def test_beaver_and_of_xor_shares(n: int) -> None:
    """XOR of every party's and_finish is x & y, with a dealt XOR-shared triple."""
    shape = (3, 1000)
    x, y, a, b = (random_ring(shape) for _ in range(4))
    xs, ys, as_, bs, cs = (_xor_split(v, n) for v in (x, y, a, b, a & b))
    masks = [and_mask(xs[i], ys[i], as_[i], bs[i]) for i in range(n)]
    opened = xor_all(masks)
    assert torch.equal(opened[0], x ^ a) and torch.equal(opened[1], y ^ b)
    z = xor_all([and_finish(i, opened, as_[i], bs[i], cs[i]) for i in range(n)])
    assert torch.equal(z, x & y)


def test_csa_and_carry_plans() -> None:
    assert [csa_levels(n) for n in (2, 3, 4, 5, 6, 9)] == [(), (1,), (1, 1), (1, 1, 1), (2, 1, 1), (3, 2, 1, 1)]
    assert [carry_levels(w) for w in (2, 3, 4, 5, 8, 9, 32, 33, 64)] == [0, 1, 2, 2, 3, 3, 5, 5, 6]
    assert round_ands(3, 32) == ((1, 32), (1, 31), (2, 31), (2, 31), (2, 31), (2, 31), (1, 31))
    assert round_ands(6, 8) == ((2, 8), (1, 8), (1, 8), (1, 7), (2, 7), (2, 7), (1, 7))
    # Up to 32 bits, two ANDs share a word; at 64 bits each takes its own.
    assert and_plan(2, 32) == (1,) * 6
    assert and_plan(3, 32) == (1,) * 7
    assert and_plan(2, 64) == (1, 2, 2, 2, 2, 2, 1)
    assert and_plan(9, 40) == (3, 2, 1, 1, 1, 2, 2, 2, 2, 2, 1)
    assert and_plan(5, 2) == (1, 1, 1, 1)
    assert and_plan(2, 3) == (1, 1)
    assert [packed_words(k, live) for k, live in [(1, 64), (2, 32), (3, 32), (4, 15), (5, 15), (9, 7)]] == [
        1, 1, 2, 1, 2, 1,
    ]


@pytest.mark.parametrize(("count", "live"), [(1, 64), (2, 64), (2, 31), (3, 32), (5, 15), (9, 7), (20, 1)])
def test_packing_round_trips_and_commutes_with_and(count: int, live: int) -> None:
    x, y = (random_ring((count, 6, 7)) & word_mask(live) for _ in range(2))
    packed_x, packed_y = pack(x, live), pack(y, live)
    assert packed_x.shape == (packed_words(count, live), 6, 7)
    assert torch.equal(unpack(packed_x, count, live), x)
    assert torch.equal(unpack(packed_x & packed_y, count, live), x & y)
    assert torch.equal(unpack(packed_x ^ packed_y, count, live), x ^ y)


@pytest.mark.parametrize("count", [3, 4, 5, 7])
@pytest.mark.parametrize("width", [2, 5, 32, 64])
def test_carry_save_levels_keep_the_sum(count: int, width: int) -> None:
    mask = word_mask(width)
    numbers = [random_ring((500,)) & mask for _ in range(count)]
    expected = sum(numbers[1:], numbers[0].clone()) & mask
    for adders in csa_levels(count):
        left, right = csa_operands(numbers, adders)
        numbers = csa_finish(numbers, adders, _plain_and(left, right), width)
    assert len(numbers) == 2
    assert torch.equal((numbers[0] + numbers[1]) & mask, expected)
    assert all(torch.equal(number & ~mask, torch.zeros_like(number)) for number in numbers)


def _plain_carry(a: torch.Tensor, b: torch.Tensor, width: int) -> torch.Tensor:
    """The carry tree run on plain words (the AND is the plain one)."""
    left, right = carry_start(a, b, width)
    generate = left & right
    propagate = (a ^ b) & word_mask(width - 1)
    levels = carry_levels(width)
    for level in range(levels):
        xs, ys = carry_operands(generate, propagate, 1 << level, level == levels - 1, width)
        generate, new = carry_combine(generate, _plain_and(xs, ys), width)
        propagate = new if new is not None else propagate
    return carry_bit(generate, width)


@pytest.mark.parametrize("width", range(2, 9))
def test_carry_tree_exhaustive_small_widths(width: int) -> None:
    values = torch.arange(1 << width, dtype=torch.int64)
    a = values.repeat_interleave(1 << width)
    b = values.repeat(1 << width)
    low = word_mask(width - 1)
    expected = ((a & low) + (b & low)) >> (width - 1)
    assert torch.equal(_plain_carry(a, b, width), expected)


@pytest.mark.parametrize("width", [32, 63, 64])
def test_carry_tree_random_wide(width: int) -> None:
    a, b = (random_ring((20000,)) & word_mask(width) for _ in range(2))
    low = word_mask(width - 1)
    # (a mod 2^(w-1)) + (b mod 2^(w-1)) may need 64 bits: compare the carry through the top bit.
    total = (a & low) + (b & low)
    expected = bit_of(total, width - 1)
    assert torch.equal(_plain_carry(a, b, width), expected)
    edge_a = torch.tensor([low, low, 0, low], dtype=torch.int64)
    edge_b = torch.tensor([1, 0, 0, low], dtype=torch.int64)
    assert _plain_carry(edge_a, edge_b, width).tolist() == [1, 0, 0, 1]
