"""Public scalars: x * s, x / d and mean(x) on shares against plaintext torch."""

from __future__ import annotations

import pytest
import torch

from node.mpc.encoding import FixedPointEncoder, encoder_for
from node.mpc.errors import InvalidPrecision, NonFiniteValue, ValueOutOfRange
from node.mpc.scalars import div_public_scalar, encode_scalar, mean_share, mul_public_scalar
from node.mpc.shares import reconstruct, split
from tests.node.mpc.parties import reveal_float, share_float, truncate_dealer, truncate_two_party
from tests.node.mpc.test_beaver import log_uniform

BITS = 16
ULP = 2.0**-BITS


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("scalar", [0.5, -3.75, 1e-3, 123.456])
def test_mul_by_public_scalar(n: int, scalar: float) -> None:
    """x * s is within |x| * 2^-(p+1) + |s| * ulp/2 + 1 ulp of the float reference."""
    x = log_uniform(5000)
    shares = [mul_public_scalar(s, scalar, BITS) for s in share_float(x, n)]
    got = reveal_float(truncate_dealer(shares, BITS))
    tol = x.abs() * ULP / 2 + abs(scalar) * ULP / 2 + ULP * 1.01
    assert bool(((got - x * scalar).abs() <= tol).all())


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("divisor", [3.0, -7.0, 0.25, 1000.0])
def test_div_by_public_scalar(n: int, divisor: float) -> None:
    """x / d, computed as x * enc(1/d) then truncated, is within the derived tolerance."""
    x = log_uniform(5000)
    shares = [div_public_scalar(s, divisor, BITS) for s in share_float(x, n)]
    got = reveal_float(truncate_dealer(shares, BITS))
    tol = x.abs() * ULP / 2 + ULP / abs(divisor) / 2 + ULP * 1.01
    assert bool(((got - x / divisor).abs() <= tol).all())


@pytest.mark.parametrize("n", [2, 3])
def test_mean(n: int) -> None:
    """mean over a dim and over everything match torch within tolerance (local and dealer truncation)."""
    x = log_uniform(8, 50)
    for dim in (None, 1):
        shares = [mean_share(s, BITS, dim) for s in share_float(x, n)]
        truncated = truncate_two_party(shares, BITS) if n == 2 else truncate_dealer(shares, BITS)
        want = x.mean() if dim is None else x.mean(dim)
        total = x.abs().sum() if dim is None else x.abs().sum(dim)
        tol = total * ULP / 2 + x.shape[-1] * ULP + ULP * 1.01
        assert bool(((reveal_float(truncated) - want).abs() <= tol).all())


def test_mean_of_integers_needs_no_truncation() -> None:
    """An integer tensor's mean is fixed point at once: scale 1 times 2^p."""
    x = torch.randint(-50, 50, (7, 9))
    shares = split(encoder_for(x).encode(x), 3)
    got = FixedPointEncoder(BITS).decode(reconstruct([mean_share(s, BITS, 0) for s in shares]), torch.float64)
    assert float((got - x.double().mean(0)).abs().max()) <= x.abs().sum(0).max().item() * ULP / 2 + ULP


def test_scalar_errors() -> None:
    """Non-finite, oversized, zero divisors and bad precisions raise typed errors."""
    share = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(NonFiniteValue):
        encode_scalar(float("nan"), BITS)
    with pytest.raises(ValueOutOfRange):
        encode_scalar(2.0**47, BITS)
    with pytest.raises(ValueOutOfRange, match="divide"):
        div_public_scalar(share, 0.0, BITS)
    with pytest.raises(InvalidPrecision):
        mul_public_scalar(share, 1.0, 40)
    assert encode_scalar(-1.5, 4) == -24
