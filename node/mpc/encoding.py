"""Fixed-point encoding of tensors into the ring Z/2^64.

Owns :class:`FixedPointEncoder`: a float becomes round(x * 2^f) (base 2,
``f`` fractional bits, 16 by default), an integer tensor becomes x * 2^f
exactly, and decoding divides by 2^f.  :func:`encoder_for` picks ``f = 0``
for integer tensors, so they are shared exactly (scale 1).  Must not import
asyncio, websockets, or anything of ``node.server`` / ``node.client``.

Encoding error: rounding to the nearest multiple of 2^-f, so at most
2^-(f+1) per element (plus the float64 rounding of x * 2^f, which is exact
for a power-of-two scale unless the result exceeds 2^53).  A value is in
range when |x| * 2^f < 2^63; values that are not finite, or out of range,
or of a dtype without an exact encoding raise a typed
:class:`~node.mpc.errors.EncodingError` naming the problem.  Products need
far more headroom than a single value (see :mod:`node.mpc.truncation`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import InvalidPrecision, NonFiniteValue, UnsupportedDtype, ValueOutOfRange
from .ring import RING_BITS, RING_DTYPE, check_ring

__all__ = [
    "DEFAULT_PRECISION_BITS",
    "MAX_PRECISION_BITS",
    "FLOAT_DTYPES",
    "INTEGER_DTYPES",
    "FixedPointEncoder",
    "encoder_for",
]

DEFAULT_PRECISION_BITS = 16
MAX_PRECISION_BITS = 31
"""Two operands of 31 fractional bits make a 62-bit product: the truncation limit."""

FLOAT_DTYPES: frozenset[torch.dtype] = frozenset(
    {torch.float16, torch.bfloat16, torch.float32, torch.float64}
)
INTEGER_DTYPES: frozenset[torch.dtype] = frozenset(
    {torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64}
)
_LIMIT = float(2 ** (RING_BITS - 1))


@dataclass(frozen=True, slots=True)
class FixedPointEncoder:
    """Encode tensors as fixed point with ``precision_bits`` fractional bits."""

    precision_bits: int = DEFAULT_PRECISION_BITS

    def __post_init__(self) -> None:
        bits = self.precision_bits
        if not isinstance(bits, int) or not 0 <= bits <= MAX_PRECISION_BITS:
            raise InvalidPrecision.for_bits(int(bits), 0, MAX_PRECISION_BITS)

    @property
    def scale(self) -> int:
        """2^precision_bits: the ring value of 1.0."""
        return 1 << self.precision_bits

    @property
    def ulp(self) -> float:
        """The value of one unit in the last place, 2^-precision_bits."""
        return 1.0 / self.scale

    def encode(self, value: torch.Tensor | float | int) -> torch.Tensor:
        """The ring tensor round(value * 2^f); integer inputs are scaled exactly."""
        tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
        if tensor.dtype in FLOAT_DTYPES:
            return self._encode_float(tensor)
        if tensor.dtype in INTEGER_DTYPES:
            return self._encode_integer(tensor)
        raise UnsupportedDtype.for_dtype(tensor.dtype, "for ring encoding")

    def decode(self, ring: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The value a ring tensor encodes, as ``dtype``.

        Float dtypes divide by 2^f.  Integer dtypes are exact and need
        ``precision_bits == 0`` (an integer tensor's own encoder).
        """
        check_ring(ring, "decoded tensor")
        if dtype in FLOAT_DTYPES:
            return (ring.to(torch.float64) / self.scale).to(dtype)
        if dtype in INTEGER_DTYPES and self.precision_bits == 0:
            return ring.clone() if dtype == RING_DTYPE else ring.to(dtype)
        raise UnsupportedDtype.for_dtype(
            dtype, f"as a decoding target with {self.precision_bits} fractional bits"
        )

    def _encode_float(self, tensor: torch.Tensor) -> torch.Tensor:
        wide = tensor.to(torch.float64)
        bad = int((~torch.isfinite(wide)).sum())
        if bad:
            raise NonFiniteValue.for_count(bad)
        rounded = torch.round(wide * float(self.scale))
        largest = float(rounded.abs().max()) if rounded.numel() else 0.0
        if largest >= _LIMIT:
            raise ValueOutOfRange.for_value(
                largest / self.scale, _LIMIT / self.scale, self.precision_bits
            )
        return rounded.to(RING_DTYPE)

    def _encode_integer(self, tensor: torch.Tensor) -> torch.Tensor:
        ring = tensor.to(RING_DTYPE)
        if self.precision_bits == 0:
            return ring.clone() if ring is tensor else ring
        limit = 1 << (RING_BITS - 1 - self.precision_bits)
        if ring.numel():
            largest = max(-int(ring.min()), int(ring.max()))
            if largest >= limit:
                raise ValueOutOfRange.for_value(float(largest), float(limit), self.precision_bits)
        return ring * self.scale


def encoder_for(
    value: torch.Tensor, precision_bits: int = DEFAULT_PRECISION_BITS
) -> FixedPointEncoder:
    """The encoder a tensor is shared with: ``precision_bits`` for floats, 0 for integers."""
    if value.dtype in FLOAT_DTYPES:
        return FixedPointEncoder(precision_bits)
    if value.dtype in INTEGER_DTYPES:
        return FixedPointEncoder(0)
    raise UnsupportedDtype.for_dtype(value.dtype, "for ring encoding")
