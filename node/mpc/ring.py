"""The ring Z/2^64 on ``torch.int64``.

Owns the ring constants, the conversion of Python integers to their signed
64-bit representative, the check that a tensor is a ring tensor, shifts, and
the exact bilinear maps (elementwise product, matmul, conv2d) mod 2^64.
Must not import asyncio, websockets, or anything of ``node.server`` /
``node.client``.

Every ring element is stored as its signed representative in
[-2^63, 2^63); torch's int64 ``+``, ``-``, ``*``, ``matmul`` and ``conv2d``
wrap modulo 2^64 (two's complement), which is exactly ring arithmetic.  The
tests check this against Python integers, wrap-around included.

Why no limb-split float64 matmul: measured on the 2-core AMD EPYC (AVX-512)
this project runs on, torch's int64 matmul of 512x512 takes about 8 ms
(10 ms on one thread) and one float64 BLAS matmul 3-6 ms, but an exact
limb-split product (three 21-bit limbs, nine float64 matmuls, recombined mod
2^64) took 55 ms (69 ms on one thread) in the same run.  Likewise int64
``conv2d`` (8.5 ms for a 64x32x14x14 input and a 64x32x3x3 kernel) is within
1.6x of float64 and beats unfold + matmul (16 ms).  The native int64
kernels are the fast path.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.nn.functional as F

from .errors import MaterialError, RingError

__all__ = [
    "RING_BITS",
    "RING_DTYPE",
    "RING_MODULUS",
    "ConvParams",
    "BilinearOp",
    "apply_bilinear",
    "wrap_int",
    "check_ring",
    "ring_tensor",
    "mul_int",
    "arithmetic_shift",
    "logical_shift",
    "top_bit",
    "low_bits",
    "ring_mul",
    "ring_matmul",
    "ring_conv2d",
]

RING_BITS = 64
RING_DTYPE = torch.int64
RING_MODULUS = 1 << RING_BITS
_HALF = 1 << (RING_BITS - 1)
_LOW_MASK = _HALF - 1


class BilinearOp(str, enum.Enum):
    """The bilinear maps Beaver triples exist for."""

    MUL = "mul"
    MATMUL = "matmul"
    CONV2D = "conv2d"


@dataclass(frozen=True, slots=True)
class ConvParams:
    """The public parameters of a 2-d convolution (as in ``torch.nn.functional.conv2d``)."""

    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        pairs = {"stride": self.stride, "padding": self.padding, "dilation": self.dilation}
        for name, pair in pairs.items():
            if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
                raise MaterialError(f"conv {name} must be two integers", {"field": name})
        if min(self.stride) < 1 or min(self.dilation) < 1 or min(self.padding) < 0:
            raise MaterialError("conv stride and dilation must be >= 1, padding >= 0", {})
        if self.groups < 1:
            raise MaterialError(
                f"conv groups must be >= 1, got {self.groups}", {"groups": self.groups}
            )


def wrap_int(value: int) -> int:
    """The signed 64-bit representative of ``value`` mod 2^64."""
    return ((value + _HALF) % RING_MODULUS) - _HALF


def check_ring(tensor: torch.Tensor, what: str) -> torch.Tensor:
    """Return ``tensor`` if it is an int64 ring tensor, else raise :class:`RingError`."""
    if not isinstance(tensor, torch.Tensor) or tensor.dtype != RING_DTYPE:
        raise RingError.not_ring(what, getattr(tensor, "dtype", type(tensor).__name__))
    return tensor


def ring_tensor(values: int | torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """A ring tensor from a Python integer (wrapped mod 2^64) or an int64 tensor."""
    if isinstance(values, torch.Tensor):
        return check_ring(values, "public value")
    return torch.tensor(wrap_int(values), dtype=RING_DTYPE) if like is None else torch.full_like(
        like, wrap_int(values)
    )


def mul_int(tensor: torch.Tensor, factor: int) -> torch.Tensor:
    """``tensor * factor`` mod 2^64 for any Python integer ``factor``."""
    return tensor * wrap_int(factor)


def arithmetic_shift(tensor: torch.Tensor, bits: int) -> torch.Tensor:
    """floor(x / 2^bits) of the signed representative (sign-extending shift)."""
    return tensor >> bits


def logical_shift(tensor: torch.Tensor, bits: int) -> torch.Tensor:
    """floor(x / 2^bits) of the unsigned representative in [0, 2^64)."""
    if bits == 0:
        return tensor
    return (tensor >> bits) & ((1 << (RING_BITS - bits)) - 1)


def top_bit(tensor: torch.Tensor) -> torch.Tensor:
    """Bit 63 of each element (1 for negative signed representatives) as int64."""
    return (tensor < 0).to(RING_DTYPE)


def low_bits(tensor: torch.Tensor) -> torch.Tensor:
    """The element mod 2^63, in [0, 2^63)."""
    return tensor & _LOW_MASK


def ring_mul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Elementwise product mod 2^64, with broadcasting."""
    return torch.mul(x, y)


def ring_matmul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``torch.matmul`` mod 2^64 (batched and vector forms included)."""
    return torch.matmul(x, y)


def ring_conv2d(x: torch.Tensor, weight: torch.Tensor, params: ConvParams) -> torch.Tensor:
    """``conv2d(x, weight)`` mod 2^64, without bias."""
    return F.conv2d(
        x,
        weight,
        stride=params.stride,
        padding=params.padding,
        dilation=params.dilation,
        groups=params.groups,
    )


def _conv_of(x: torch.Tensor, y: torch.Tensor, params: ConvParams) -> torch.Tensor:
    return ring_conv2d(x, y, params)


_BILINEAR: Mapping[BilinearOp, Callable[[torch.Tensor, torch.Tensor, ConvParams], torch.Tensor]] = {
    BilinearOp.MUL: lambda x, y, _: ring_mul(x, y),
    BilinearOp.MATMUL: lambda x, y, _: ring_matmul(x, y),
    BilinearOp.CONV2D: _conv_of,
}


def apply_bilinear(
    op: BilinearOp, x: torch.Tensor, y: torch.Tensor, params: ConvParams | None = None
) -> torch.Tensor:
    """``op(x, y)`` mod 2^64; ``params`` is used by conv2d only (default: plain conv)."""
    return _BILINEAR[op](x, y, params if params is not None else ConvParams())
