"""XOR-shared words: bit helpers, Beaver AND and packing against plain integers."""

from __future__ import annotations

import pytest
import torch

from node.mpc.binary import (
    and_finish,
    and_mask,
    bit_of,
    pack,
    packed_words,
    unpack,
    word_mask,
    xor_all,
)
from node.mpc.prg import random_ring


def _xor_split(word: torch.Tensor, n: int) -> list[torch.Tensor]:
    shares = [random_ring(word.shape) for _ in range(n - 1)]
    return [*shares, xor_all([word, *shares])]


def test_word_masks_and_bits() -> None:
    """Masks of 1..64 bits and bit reads ignore sign extension."""
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


def test_packed_word_counts() -> None:
    """Words needed for count operands of live bits, 64 // live to a word."""
    cases = [(1, 64), (2, 64), (2, 32), (3, 32), (4, 15), (5, 15), (9, 7), (64, 1), (65, 1), (0, 5)]
    assert [packed_words(count, live) for count, live in cases] == [1, 2, 1, 2, 1, 2, 1, 1, 2, 0]


@pytest.mark.parametrize("live", [1, 2, 7, 16, 31, 32, 33, 63, 64])
@pytest.mark.parametrize("shape", [(2, 6, 7), (1, 1), (3, 0)])
def test_packing_round_trips_and_commutes_with_xor_and_and(shape: tuple[int, ...], live: int) -> None:
    """Packing round-trips any shape and commutes with XOR and AND."""
    x, y = (random_ring(shape) & word_mask(live) for _ in range(2))
    packed_x, packed_y = pack(x, live), pack(y, live)
    count = x.numel()
    assert packed_x.shape == (packed_words(count, live),)
    assert torch.equal(unpack(packed_x, shape, live), x)
    assert torch.equal(unpack(packed_x & packed_y, shape, live), x & y)
    assert torch.equal(unpack(packed_x ^ packed_y, shape, live), x ^ y)
