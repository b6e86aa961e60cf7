"""Additive shares: reconstruction, uniformity of each share, local arithmetic."""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from node.mpc.errors import PartyError, RingError
from node.mpc.prg import random_ring
from node.mpc.shares import (
    add,
    add_public,
    index,
    mul_public,
    neg,
    public_sub,
    reconstruct,
    reshape,
    split,
    sub,
    sub_public,
    sum_share,
    transpose,
)
from node.mpc.ring import wrap_int
from tests.node.mpc.stats import (
    chi_square_critical,
    looks_uniform,
    top_byte_chi_square,
    two_sample_chi_square,
)

SAMPLES = 1 << 16
SECRETS = {
    "zero": torch.zeros(SAMPLES, dtype=torch.int64),
    "large": torch.full((SAMPLES,), 2**62 + 12345, dtype=torch.int64),
    "minus_one": torch.full((SAMPLES,), -1, dtype=torch.int64),
}
Splitter = Callable[[torch.Tensor, int], list[torch.Tensor]]


def textbook_split(value: torch.Tensor, n: int) -> list[torch.Tensor]:
    """The insecure small-range sharing of tutorials: shares drawn from [0, 2^32)."""
    shares = [torch.randint(0, 2**32, value.shape, dtype=torch.int64) for _ in range(n - 1)]
    return shares + [value - sum(shares, torch.zeros_like(value))]


@pytest.mark.parametrize("n", [2, 3, 5])
def test_split_reconstructs(n: int) -> None:
    """The n shares add up to the secret, wrap-around included."""
    value = random_ring((17, 3))
    shares = split(value, n)
    assert len(shares) == n and all(s.shape == value.shape for s in shares)
    assert torch.equal(reconstruct(shares), value)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_every_share_is_uniform(n: int, secret: str) -> None:
    """Each party's share alone passes the top-byte chi-square and bit-balance tests."""
    for share in split(SECRETS[secret], n):
        assert looks_uniform(share)


@pytest.mark.parametrize("n", [2, 3])
def test_share_distribution_does_not_depend_on_the_secret(n: int) -> None:
    """A party's share of 0 and of 2^62 + 12345 are indistinguishable (two-sample chi-square)."""
    zero, large = split(SECRETS["zero"], n), split(SECRETS["large"], n)
    for party in range(n):
        assert two_sample_chi_square(zero[party], large[party]) < chi_square_critical(255)


def test_small_range_sharing_is_detected() -> None:
    """The same tests reject the textbook randint sharing: they can fail."""
    zero = textbook_split(SECRETS["zero"], 2)
    large = textbook_split(SECRETS["large"], 2)
    assert torch.equal(reconstruct(large), SECRETS["large"])
    assert not looks_uniform(zero[0])
    assert top_byte_chi_square(large[1]) > 100 * chi_square_critical(255)
    assert two_sample_chi_square(zero[1], large[1]) > chi_square_critical(255)


@pytest.mark.parametrize("n", [1, 0, 65])
def test_party_count_is_checked(n: int) -> None:
    """Fewer than 2 or more than 64 parties raise PartyError."""
    with pytest.raises(PartyError):
        split(torch.zeros(2, dtype=torch.int64), n)


def test_split_and_reconstruct_check_their_inputs() -> None:
    """Non-ring secrets and mismatched shares raise RingError."""
    with pytest.raises(RingError):
        split(torch.zeros(2), 2)
    with pytest.raises(RingError, match="share 1 has shape"):
        reconstruct([torch.zeros(2, dtype=torch.int64), torch.zeros(3, dtype=torch.int64)])
    with pytest.raises(RingError):
        reconstruct([torch.zeros(2, dtype=torch.int64), torch.zeros(2)])


def _each(shares: list[torch.Tensor], fn: Callable[[int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    return reconstruct([fn(i, s) for i, s in enumerate(shares)])


@pytest.mark.parametrize("n", [2, 3])
def test_linear_operations(n: int) -> None:
    """+, -, negation and public constants (added by party 0 only) match the ring reference."""
    x, y, c = random_ring((4, 5)), random_ring((4, 5)), random_ring((5,))
    xs, ys = split(x, n), split(y, n)
    assert torch.equal(reconstruct([add(a, b) for a, b in zip(xs, ys)]), x + y)
    assert torch.equal(reconstruct([sub(a, b) for a, b in zip(xs, ys)]), x - y)
    assert torch.equal(reconstruct([neg(a) for a in xs]), -x)
    assert torch.equal(_each(xs, lambda i, s: add_public(s, c, i)), x + c)
    assert torch.equal(_each(xs, lambda i, s: sub_public(s, c, i)), x - c)
    assert torch.equal(_each(xs, lambda i, s: public_sub(c, s, i)), c - x)
    assert torch.equal(_each(xs, lambda i, s: add_public(s, 2**64 + 3, i)), x + 3)


@pytest.mark.parametrize("n", [2, 3])
def test_public_integer_multiplication(n: int) -> None:
    """Multiplying shares by a public integer or int64 tensor is exact mod 2^64."""
    x, k = random_ring((6,)), random_ring((6,))
    xs = split(x, n)
    assert torch.equal(reconstruct([mul_public(s, k) for s in xs]), x * k)
    big = 3 * 2**64 + 2**63 + 11
    assert torch.equal(reconstruct([mul_public(s, big) for s in xs]), x * wrap_int(big))


@pytest.mark.parametrize("n", [2, 3])
def test_views_and_sums(n: int) -> None:
    """reshape, transpose, indexing and sums commute with sharing."""
    x = random_ring((2, 3, 4))
    xs = split(x, n)
    assert torch.equal(reconstruct([reshape(s, (6, 4)) for s in xs]), x.reshape(6, 4))
    assert torch.equal(reconstruct([transpose(s, 0, 2) for s in xs]), x.transpose(0, 2))
    key = (slice(None), 1, torch.tensor([0, 3]))
    assert torch.equal(reconstruct([index(s, key) for s in xs]), x[key])
    assert torch.equal(reconstruct([sum_share(s) for s in xs]), x.sum())
    assert torch.equal(reconstruct([sum_share(s, 1, keepdim=True) for s in xs]), x.sum(1, keepdim=True))
