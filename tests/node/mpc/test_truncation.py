"""Truncation: exact 1-ulp results for 2, 3 and 5 parties, and the documented failure bounds."""

from __future__ import annotations

import math

import pytest
import torch

from node.mpc.dealer import Dealer
from node.mpc.errors import MaterialError, PartyError, RingError
from node.mpc.material import (
    PartyMaterial,
    TruncationShares,
    TruncationSpec,
    as_truncation,
    expand_material,
)
from node.mpc.prg import random_ring
from node.mpc.ring import BilinearOp, arithmetic_shift
from node.mpc.shares import reconstruct, split
from node.mpc.truncation import (
    local_failure_bound,
    open_truncation,
    truncate_local,
    truncation_finish,
    truncation_mask,
)
from tests.node.mpc.parties import beaver, share_float, truncate_dealer, truncate_two_party
from tests.node.mpc.stats import chi_square_critical, looks_uniform, two_sample_chi_square

LIMIT = 1 << 62


def failures(result: torch.Tensor, x: torch.Tensor, bits: int) -> torch.Tensor:
    """Mask of elements outside {floor(x / 2^bits), floor(x / 2^bits) + 1}."""
    diff = result - arithmetic_shift(x, bits)
    return (diff != 0) & (diff != 1)


def full_range(size: int) -> torch.Tensor:
    """Values spread over [-2^62, 2^62): uniform, plus log-spread magnitudes and the edges."""
    uniform = random_ring((size,)) >> 2
    exps = torch.randint(0, 62, (size,))
    logs = (random_ring((size,)) & ((1 << exps) - 1)) * torch.where(torch.rand(size) < 0.5, -1, 1)
    edges = torch.tensor([0, 1, -1, LIMIT - 1, -LIMIT, -LIMIT + 1, 2**40, -(2**40)])
    return torch.cat([uniform, logs, edges])


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("bits", [1, 16, 32, 62])
def test_dealer_truncation_is_within_one_ulp_for_all_valid_values(n: int, bits: int) -> None:
    """For every |x| < 2^62 the result is floor(x / 2^m) or one more: never a wrap failure."""
    x = full_range(20_000)
    got = reconstruct(truncate_dealer(split(x, n), bits))
    assert int(failures(got, x, bits).sum()) == 0
    if bits <= 32:
        exact = got == arithmetic_shift(x, bits)
        assert 0 < int(exact.sum()) < x.numel()


@pytest.mark.parametrize("n", [2, 3, 5])
def test_truncated_values_decode_within_one_ulp(n: int) -> None:
    """In real terms |decode(trunc(x)) - x / 2^f| < 2^-f for fixed-point products."""
    x = torch.empty(10_000, dtype=torch.float64).uniform_(-1e4, 1e4)
    product = torch.round(x * 2.0**32).to(torch.int64)
    got = reconstruct(truncate_dealer(split(product, n), 16)).double() / 2.0**16
    assert float((got - product.double() / 2.0**32).abs().max()) < 2.0**-16


@pytest.mark.parametrize("n", [2, 3])
def test_dealer_truncation_rounds_stochastically_without_bias(n: int) -> None:
    """x = k + 1/4 ulp rounds up with probability 1/4 (over r): E[y] = x / 2^m."""
    size, bits = 1 << 16, 16
    x = torch.full((size,), (5 << bits) + (1 << (bits - 2)), dtype=torch.int64)
    got = reconstruct(truncate_dealer(split(x, n), bits))
    ups = int((got == 6).sum())
    assert int((got == 5).sum()) + ups == size
    assert abs(ups - size / 4) < 5 * math.sqrt(size * 3 / 16)


def test_local_truncation_is_within_one_ulp_when_no_wrap() -> None:
    """SecureML's scheme gives floor or floor + 1 for small values (failure odds ~2^-30)."""
    x = torch.randint(-(2**33), 2**33, (100_000,))
    got = reconstruct(truncate_two_party(split(x, 2), 16))
    assert int(failures(got, x, 16).sum()) == 0


@pytest.mark.parametrize("n", [1, 3, 5])
def test_local_truncation_refuses_other_party_counts(n: int) -> None:
    """Local truncation is wrong beyond two parties (PySyft 0.2's bug), so it refuses."""
    with pytest.raises(PartyError, match="local"):
        truncate_local(torch.zeros(2, dtype=torch.int64), 0, n, 16)


def test_failure_rate_at_large_magnitudes_matches_the_bounds() -> None:
    """With |x| ~ 2^54 the local scheme fails at the rate |x| / 2^64; the dealer scheme never."""
    size = 1 << 18
    x = (random_ring((size,)) & ((1 << 55) - 1)) | (1 << 53)
    x = x * torch.where(torch.rand(size) < 0.5, -1, 1)
    expected = float(sum(local_failure_bound(v) for v in x.abs().tolist()))
    local = int(failures(reconstruct(truncate_two_party(split(x, 2), 16)), x, 16).sum())
    assert 0.6 * expected <= local <= 1.4 * expected, (local, expected)
    assert int(failures(reconstruct(truncate_dealer(split(x, 2), 16)), x, 16).sum()) == 0


@pytest.mark.parametrize("local", [False, True])
def test_a_million_fixed_point_products(local: bool) -> None:
    """10^6 Beaver products of values in 1e-3 .. 1e3: failures stay within the documented bound."""
    size = 10**6
    mags = 10.0 ** torch.empty(2, size, dtype=torch.float64).uniform_(-3, 3)
    signs = torch.where(torch.rand(2, size) < 0.5, -1.0, 1.0).to(torch.float64)
    x, y = mags * signs
    product = beaver(BilinearOp.MUL, share_float(x, 2), share_float(y, 2))
    exact = reconstruct(product)
    truncated = truncate_two_party(product, 16) if local else truncate_dealer(product, 16)
    count = int(failures(reconstruct(truncated), exact, 16).sum())
    if local:
        expected = float((exact.abs().double() + 1).sum()) / 2.0**64
        assert count <= expected + 6 * math.sqrt(expected) + 6, (count, expected)
    else:
        assert count == 0


@pytest.mark.parametrize("n", [2, 3])
def test_opened_value_hides_the_input(n: int) -> None:
    """c = x + 2^62 + r is uniform for x = 0 and for x = 2^61 - 1, and the two look alike."""
    size = 1 << 16
    spec = TruncationSpec((size,), 16)
    opened = []
    for secret in (0, 2**61 - 1):
        shares = split(torch.full((size,), secret, dtype=torch.int64), n)
        mats = [_mask(b) for b in Dealer().deal([spec], n)]
        parts = [truncation_mask(s, i, m) for i, (s, m) in enumerate(zip(shares, mats))]
        opened.append(open_truncation(parts, (size,)))
    assert looks_uniform(opened[0]) and looks_uniform(opened[1])
    assert two_sample_chi_square(opened[0], opened[1]) < chi_square_critical(255)


def _mask(bundle: PartyMaterial) -> TruncationShares:
    (material,) = expand_material(bundle)
    return as_truncation(material)


def test_bad_arguments_raise() -> None:
    """Shape mismatches, bad bit counts and bad peers' values raise typed errors."""
    spec = TruncationSpec((3,), 16)
    mat = _mask(Dealer().deal([spec], 2)[0])
    x = torch.zeros(3, dtype=torch.int64)
    with pytest.raises(RingError):
        truncation_mask(torch.zeros(4, dtype=torch.int64), 0, mat)
    with pytest.raises(RingError, match="party 1"):
        open_truncation([x, torch.zeros(3)], (3,))
    with pytest.raises(RingError):
        truncation_finish(torch.zeros(2, dtype=torch.int64), 0, 2, mat, 16)
    with pytest.raises(MaterialError):
        truncation_finish(x, 0, 2, mat, 0)
    with pytest.raises(MaterialError):
        truncate_local(x, 0, 2, 63)
    with pytest.raises(PartyError):
        truncation_finish(x, 3, 2, mat, 16)
