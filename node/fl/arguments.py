"""Argument checkers for model specs: type and range, nothing allocated.

Owns the limits on single arguments and the small checker factories the
layer table in :mod:`node.fl.layers` is written with.  A checker takes an
untrusted value (from msgpack: int, float, bool, str, nil or a list) and
returns the normalised value (lists become tuples of ints) or raises
:class:`ArgRefused` with the reason; ``bool`` is never accepted as an int.

Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import math
from typing import Callable, Tuple, Union

__all__ = [
    "ArgValue",
    "Check",
    "ArgRefused",
    "MAX_FEATURES",
    "MAX_KERNEL",
    "MAX_DIM_INDEX",
    "integer",
    "real",
    "boolean",
    "false_only",
    "choice",
    "optional",
    "ints",
    "padding",
    "size",
]

MAX_FEATURES = 2**24
"""Largest features / channels / embeddings argument (16,777,216)."""

MAX_KERNEL = 2**10
"""Largest kernel size, stride, padding or dilation (1,024)."""

MAX_DIM_INDEX = 16
"""Largest absolute dimension index (Flatten, Softmax)."""

ArgValue = Union[int, float, bool, str, None, Tuple[int, ...]]
"""A checked argument: scalars, or a tuple of ints (a list on the wire)."""

Check = Callable[[object], ArgValue]


class ArgRefused(ValueError):
    """Raised by a checker with the reason; the caller adds layer and argument."""


# -- checkers -----------------------------------------------------------------


def integer(lo: int, hi: int) -> Check:
    def check(value: object) -> int:
        if type(value) is not int:
            raise ArgRefused("expected an integer")
        if not lo <= value <= hi:
            raise ArgRefused(f"must be between {lo} and {hi}")
        return value

    return check


def real(lo: float, hi: float, *, open_low: bool = False) -> Check:
    def check(value: object) -> float:
        if type(value) not in (int, float):
            raise ArgRefused("expected a number")
        number = float(value)  # type: ignore[arg-type]
        low_ok = number > lo if open_low else number >= lo
        if not (math.isfinite(number) and low_ok and number <= hi):
            raise ArgRefused(f"must be a finite number in {'(' if open_low else '['}{lo}, {hi}]")
        return number

    return check


def boolean(value: object) -> bool:
    if type(value) is not bool:
        raise ArgRefused("expected a boolean")
    return value


def false_only(value: object) -> bool:
    if value is not False:
        raise ArgRefused("only False is supported")
    return False


def choice(*options: str) -> Check:
    def check(value: object) -> str:
        if type(value) is not str or value not in options:
            raise ArgRefused(f"expected one of {', '.join(options)}")
        return value

    return check


def optional(inner: Check) -> Check:
    def check(value: object) -> ArgValue:
        return None if value is None else inner(value)

    return check


def ints(lengths: range, lo: int, hi: int) -> Check:
    """An int, or a list/tuple whose length is in ``lengths``, each in [lo, hi]."""
    one = integer(lo, hi)

    def check(value: object) -> ArgValue:
        if type(value) is int:
            return one(value)
        if not isinstance(value, (list, tuple)) or len(value) not in lengths:
            raise ArgRefused(f"expected an integer or {lengths.start}..{lengths.stop - 1} integers")
        return tuple(one(item) for item in value)  # type: ignore[misc]

    return check


def padding(dims: int) -> Check:
    sizes = ints(range(dims, dims + 1), 0, MAX_KERNEL)

    def check(value: object) -> ArgValue:
        if type(value) is str:
            return choice("same", "valid")(value)
        return sizes(value)

    return check


def size(dims: int, lo: int = 1) -> Check:
    return ints(range(dims, dims + 1), lo, MAX_KERNEL)
