"""Public fixed-point scalars: multiply, divide and average shared tensors.

Owns the local half of x * s, x / d and mean(x) for a public real s or d:
the scalar is encoded with p fractional bits (p = the shared value's own
precision by default), every party multiplies its share by that integer, and
the result carries p extra fractional bits that the caller truncates away
(:mod:`node.mpc.truncation`, by p bits).  For integer-encoded shares
(0 fractional bits) the product is already a fixed-point value with p bits
and needs no truncation.  Multiplying by a public integer is exact and lives
in :func:`node.mpc.shares.mul_public`.  Must not import asyncio, websockets,
or anything of ``node.server`` / ``node.client``.

Error: encoding s costs at most 2^-(p+1) in s, so the product is off by at
most |x| * 2^-(p+1) before truncation's 1 ulp; for x / d, s = 1/d.  Pick a
larger p for large |x| (the product must stay below 2^62 in the ring).
"""

from __future__ import annotations

import math

import torch

from .encoding import MAX_PRECISION_BITS
from .errors import InvalidPrecision, NonFiniteValue, ValueOutOfRange
from .ring import RING_BITS, mul_int
from .shares import sum_share

__all__ = ["encode_scalar", "mul_public_scalar", "div_public_scalar", "mean_share"]

_LIMIT = 1 << (RING_BITS - 2)


def encode_scalar(value: float, precision_bits: int) -> int:
    """round(value * 2^precision_bits), checked to be finite and below 2^62."""
    if not isinstance(precision_bits, int) or not 0 <= precision_bits <= MAX_PRECISION_BITS:
        raise InvalidPrecision.for_bits(int(precision_bits), 0, MAX_PRECISION_BITS)
    if not math.isfinite(value):
        raise NonFiniteValue.for_count(1)
    encoded = round(value * (1 << precision_bits))
    if abs(encoded) >= _LIMIT:
        raise ValueOutOfRange.for_value(
            abs(value), float(_LIMIT >> precision_bits), precision_bits
        )
    return encoded


def mul_public_scalar(share: torch.Tensor, value: float, precision_bits: int) -> torch.Tensor:
    """This party's share of x * value, carrying ``precision_bits`` extra fractional bits."""
    return mul_int(share, encode_scalar(value, precision_bits))


def div_public_scalar(share: torch.Tensor, divisor: float, precision_bits: int) -> torch.Tensor:
    """This party's share of x / divisor, carrying ``precision_bits`` extra fractional bits."""
    if divisor == 0 or not math.isfinite(divisor):
        raise ValueOutOfRange(
            f"cannot divide by the public value {divisor!r}", {"divisor": float(divisor)}
        )
    return mul_public_scalar(share, 1.0 / divisor, precision_bits)


def mean_share(
    share: torch.Tensor,
    precision_bits: int,
    dim: int | tuple[int, ...] | None = None,
    keepdim: bool = False,
) -> torch.Tensor:
    """This party's share of x.mean(dim), carrying ``precision_bits`` extra fractional bits."""
    total = sum_share(share, dim, keepdim)
    count = share.numel() // max(total.numel(), 1) if share.numel() else 0
    return div_public_scalar(total, float(count), precision_bits)
