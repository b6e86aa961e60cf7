"""Fixed-point encoding: rounding error, exact integers, typed errors."""

from __future__ import annotations

import pytest
import torch

from node.mpc.encoding import FixedPointEncoder, encoder_for
from node.mpc.errors import (
    EncodingError,
    InvalidPrecision,
    NonFiniteValue,
    RingError,
    UnsupportedDtype,
    ValueOutOfRange,
)
from protocol.errors import BadRequest


def _log_uniform(n: int) -> torch.Tensor:
    exponent = torch.empty(n, dtype=torch.float64).uniform_(-3.0, 3.0)
    sign = torch.where(torch.rand(n) < 0.5, -1.0, 1.0).to(torch.float64)
    return sign * 10.0**exponent


@pytest.mark.parametrize("bits", [0, 8, 16, 24, 31])
def test_round_trip_error_is_half_an_ulp(bits: int) -> None:
    """decode(encode(x)) is within 2^-(f+1) of x for magnitudes 1e-3 .. 1e3."""
    enc = FixedPointEncoder(bits)
    x = _log_uniform(10_000)
    error = (enc.decode(enc.encode(x), torch.float64) - x).abs().max().item()
    assert error <= 2.0 ** -(bits + 1)


def test_encode_scales_by_two_to_the_precision() -> None:
    """1.5 with 16 fractional bits is 1.5 * 65536; negative values round too."""
    enc = FixedPointEncoder()
    assert enc.encode(torch.tensor([1.5, -2.25, 0.0])).tolist() == [98304, -147456, 0]
    assert enc.encode(1.0).item() == 65536
    assert enc.scale == 65536 and enc.ulp == 2.0**-16


@pytest.mark.parametrize(
    "dtype", [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool]
)
def test_integers_pass_through_exactly(dtype: torch.dtype) -> None:
    """An integer tensor's own encoder has scale 1 and decodes to the same tensor."""
    top = 1 if dtype == torch.bool else 100
    value = torch.tensor([0, 1, 2, 100], dtype=torch.int64).clamp(max=top).to(dtype)
    enc = encoder_for(value)
    assert enc.precision_bits == 0
    ring = enc.encode(value)
    assert ring.dtype == torch.int64
    assert torch.equal(enc.decode(ring, dtype), value)


def test_int64_extremes_are_exact() -> None:
    """The whole int64 range round-trips with scale 1, and the result is a copy."""
    value = torch.tensor([-(2**63), 2**63 - 1, -1], dtype=torch.int64)
    enc = encoder_for(value)
    ring = enc.encode(value)
    assert torch.equal(ring, value) and ring.data_ptr() != value.data_ptr()


def test_integers_scale_exactly_with_fractional_bits() -> None:
    """An integer tensor encoded with f bits is x * 2^f, exactly."""
    enc = FixedPointEncoder(16)
    assert enc.encode(torch.tensor([3, -4], dtype=torch.int32)).tolist() == [3 << 16, -4 << 16]
    assert enc.decode(enc.encode(torch.tensor([3, -4]))).tolist() == [3.0, -4.0]


def test_floats_of_every_width_encode() -> None:
    """float16, bfloat16, float32 and float64 all encode and decode."""
    enc = FixedPointEncoder()
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        value = torch.tensor([0.5, -3.0], dtype=dtype)
        assert torch.equal(enc.decode(enc.encode(value), dtype), value)


def test_non_finite_values_raise() -> None:
    """NaN and infinities raise NonFiniteValue with their count."""
    with pytest.raises(NonFiniteValue, match="2 non-finite"):
        FixedPointEncoder().encode(torch.tensor([1.0, float("nan"), float("inf")]))


def test_out_of_range_values_raise() -> None:
    """|x| * 2^f >= 2^63 raises ValueOutOfRange, for floats and for scaled integers."""
    with pytest.raises(ValueOutOfRange, match="out of range"):
        FixedPointEncoder(16).encode(torch.tensor([2.0**47]))
    FixedPointEncoder(16).encode(torch.tensor([2.0**46]))
    with pytest.raises(ValueOutOfRange):
        FixedPointEncoder(16).encode(torch.tensor([2**47], dtype=torch.int64))
    with pytest.raises(ValueOutOfRange):
        FixedPointEncoder(16).encode(torch.tensor([-(2**63)], dtype=torch.int64))


def test_unsupported_dtypes_raise() -> None:
    """Complex tensors, and integer decoding with fractional bits, raise UnsupportedDtype."""
    with pytest.raises(UnsupportedDtype, match="complex"):
        FixedPointEncoder().encode(torch.zeros(2, dtype=torch.complex64))
    with pytest.raises(UnsupportedDtype):
        encoder_for(torch.zeros(2, dtype=torch.complex64))
    with pytest.raises(UnsupportedDtype):
        FixedPointEncoder(16).decode(torch.zeros(2, dtype=torch.int64), torch.int32)


def test_decode_needs_a_ring_tensor() -> None:
    """Decoding a float tensor raises RingError."""
    with pytest.raises(RingError):
        FixedPointEncoder().decode(torch.zeros(2))


@pytest.mark.parametrize("bits", [-1, 32, 64])
def test_precision_is_bounded(bits: int) -> None:
    """Fractional bits outside [0, 31] raise InvalidPrecision."""
    with pytest.raises(InvalidPrecision):
        FixedPointEncoder(bits)


def test_errors_are_bad_requests() -> None:
    """Encoding errors travel as BAD_REQUEST."""
    assert issubclass(EncodingError, BadRequest)
    assert issubclass(NonFiniteValue, EncodingError)
