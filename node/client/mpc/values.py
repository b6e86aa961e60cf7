"""Shared or plain: the few primitives comparisons and approximations need on both kinds of value.

Runs in the user's process.  Every function of :mod:`.comparisons`,
:mod:`.approximations` and :mod:`.softmax` is written once, with operators,
and runs on a :class:`~node.client.mpc.shared.SharedTensor` (the secure
protocol) or on a ``torch.Tensor`` (the *same* approximation in plaintext,
which is what an example needs to compare encrypted with plaintext
training like with like).  Only the helpers here tell the two apart.

Bits are what ``drelu`` returns: for a shared value a precision-0 shared
tensor of 0/1 (dtype ``torch.bool``), for a plain one a bool tensor.  A
shared bit times a shared precision-p value is a precision-p product with
no truncation; it is always written ``value * bit`` so the product keeps
the value's dtype.

Never imports :mod:`.shared` (which imports the functions built on this
module): a shared value is recognised as "not a ``torch.Tensor``", and new
shared tensors are built with ``type(x)(...)``.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import torch

from .group import PrecisionMismatch, SharingError

__all__ = [
    "RangeWarning",
    "Value",
    "as_precision",
    "bit_not",
    "check_operands",
    "drelu",
    "is_plain",
    "relu",
    "retype",
    "select",
    "times_constant",
    "warn_outside",
]

Value = Any
"""A ``SharedTensor`` or a ``torch.Tensor`` (``Any``: shared.py is not imported here)."""


class RangeWarning(UserWarning):
    """A plaintext input lies outside an approximation's documented range; it was clamped into it.

    Only plaintext inputs can be checked: a shared value's range is secret,
    so shared inputs are clamped silently (the documented behaviour).
    """


def is_plain(x: Any) -> bool:
    """Whether ``x`` is a plaintext tensor (or number), as opposed to a shared tensor."""
    return isinstance(x, (torch.Tensor, int, float, bool))


def drelu(x: Value) -> Value:
    """Bits ``[x >= 0]``: one comparison round for a shared ``x`` (see ``SharedTensor.drelu``)."""
    if isinstance(x, torch.Tensor):
        return x >= 0
    return x.drelu()


def relu(x: Value) -> Value:
    """``max(x, 0)``: two rounds for a shared ``x``."""
    if isinstance(x, torch.Tensor):
        return torch.relu(x)
    return x.relu()


def bit_not(bits: Value) -> Value:
    """``1 - bits`` (local for shared bits; still bits, decoded as bool)."""
    if isinstance(bits, torch.Tensor):
        return ~bits
    return retype(1 - bits, torch.bool)


def select(bits: Value, a: Any, b: Any) -> Any:
    """``a`` where ``bits`` else ``b``: ``b + (a - b) * bits``, one product when both sides are shared.

    A plaintext selection uses ``torch.where`` (the same value, exactly).
    """
    if isinstance(bits, torch.Tensor) and is_plain(a) and is_plain(b):
        return torch.where(bits, a, b)
    diff = a - b
    if is_plain(diff) and not isinstance(bits, torch.Tensor):
        return b + times_public(bits, diff)
    return b + diff * bits


def times_public(bits: Value, value: Any, precision: int | None = None) -> Value:
    """Shared bits times a public value, locally: the value is encoded and the bits relabelled.

    A bit (precision 0) times a public real would need the real encoded at
    precision 0, which loses it; instead the bits become a precision-p value
    first (``as_precision``), exactly.
    """
    tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    if not tensor.is_floating_point():
        return bits * tensor
    p = 16 if precision is None else precision
    return as_precision(bits, p, tensor.dtype if tensor.dtype != torch.float16 else torch.float32) * tensor


def as_precision(bits: Value, precision: int, dtype: torch.dtype) -> Value:
    """A precision-0 shared integer as the same numbers at ``precision`` fractional bits, with ``dtype``.

    Exact and local: every share is multiplied by 2^precision (a public integer).
    """
    if isinstance(bits, torch.Tensor):
        return bits.to(dtype)
    if bits.precision != 0:
        raise PrecisionMismatch(
            f"only a precision-0 shared tensor can be rescaled, not one of {bits.precision} fractional bits",
            {"op": "as_precision", "left": bits.precision, "right": precision},
        )
    scaled = bits * (1 << precision)
    return type(bits)(bits.group, list(scaled.shares.values()), scaled.shape, precision, dtype)


def times_constant(x: Value, factor: float) -> Value:
    """``x * factor`` for a real constant such as 1/N, with 2^-25 relative precision instead of 2^-17 / factor.

    A public real is encoded with ``x``'s 16 fractional bits, so 1/200
    becomes 328/65536 (0.1% off).  Here the shares are multiplied by the
    integer round(factor * 2^24) (exact), then by 2^-16 and 2^-8 (both
    exactly encoded; two truncations, local for 2 parties).  The largest
    intermediate is |x * factor| * 2^40, so a 2-party truncation fails with
    probability about |x * factor| / 2^24.
    """
    if isinstance(x, torch.Tensor):
        return x * factor
    scaled = x * int(round(factor * 2**24))
    return scaled * 2.0**-16 * 2.0**-8


def retype(x: Value, dtype: torch.dtype) -> Value:
    """The same shared numbers decoded as ``dtype`` by ``get()`` (indices: int64; one-hot: int64)."""
    if isinstance(x, torch.Tensor):
        return x.to(dtype)
    return type(x)(x.group, list(x.shares.values()), x.shape, x.precision, dtype)


def check_operands(op: str, *values: Any) -> None:
    """Refuse shared operands of different parties, crypto providers or (non-zero) precisions.

    Precision 0 (bits, indices) mixes with any precision, as products and
    sums of shared tensors allow.
    """
    shared = [v for v in values if not is_plain(v)]
    for other in shared[1:]:
        shared[0].group.check_same(other.group, op)
    precisions = {v.precision for v in shared if v.precision}
    if len(precisions) > 1:
        left, right = sorted(precisions)[:2]
        raise PrecisionMismatch(
            f"{op} mixes precisions of {left} and {right} fractional bits",
            {"op": op, "left": left, "right": right},
        )


def warn_outside(x: Value, low: float, high: float, name: str) -> None:
    """One :class:`RangeWarning` when a plaintext ``x`` has values outside ``[low, high]``.

    Shared values are never inspected (their range is secret).
    """
    if not isinstance(x, torch.Tensor) or x.numel() == 0:
        return
    outside = int(((x < low) | (x > high)).sum())
    if outside:
        warnings.warn(
            f"{name}: {outside} of {x.numel()} values lie outside [{low:g}, {high:g}] "
            "and were clamped into it",
            RangeWarning,
            stacklevel=_caller_level(),
        )


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside this package: the user's call."""
    here = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here + os.sep):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level


def require_float(x: Value, name: str) -> None:
    """Refuse an integer shared tensor (precision 0) where a real-valued function is asked for."""
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise TypeError(f"{name} needs a floating-point tensor, got {x.dtype}")
        return
    if x.precision == 0:
        raise SharingError(f"{name} of an integer shared tensor: share floats instead", {"op": name})
