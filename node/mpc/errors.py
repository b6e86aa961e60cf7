"""Typed errors of the secret-sharing core.

Owns the exceptions raised by :mod:`node.mpc` on bad input: values that cannot
be encoded, tensors that are not ring tensors, bad party indices, malformed
dealer material.  All are :class:`protocol.errors.BadRequest` subclasses, so a
node that hits one while serving a peer replies ``BAD_REQUEST`` with the
message built here.  Must not import asyncio, websockets, or anything of
``node.server`` / ``node.client``.
"""

from __future__ import annotations

from protocol.errors import BadRequest

__all__ = [
    "MpcError",
    "EncodingError",
    "NonFiniteValue",
    "ValueOutOfRange",
    "UnsupportedDtype",
    "InvalidPrecision",
    "RingError",
    "PartyError",
    "MaterialError",
    "SeedError",
]


class MpcError(BadRequest):
    """Root of the secret-sharing errors."""


class EncodingError(MpcError):
    """A value cannot be encoded into (or decoded from) the ring."""


class NonFiniteValue(EncodingError):
    """A float tensor holds NaN or an infinity, which fixed point cannot represent."""

    @classmethod
    def for_count(cls, count: int) -> NonFiniteValue:
        return cls(
            f"cannot encode {count} non-finite value(s) (NaN or inf) in fixed point",
            {"count": count},
        )


class ValueOutOfRange(EncodingError):
    """A value times the scale does not fit in a signed 64-bit ring element."""

    @classmethod
    def for_value(cls, largest: float, limit: float, precision_bits: int) -> ValueOutOfRange:
        return cls(
            f"value of magnitude {largest:.6g} is out of range for fixed point with "
            f"{precision_bits} fractional bits (limit {limit:.6g})",
            {"largest": largest, "limit": limit, "precision_bits": precision_bits},
        )


class UnsupportedDtype(EncodingError):
    """The tensor's dtype has no exact ring encoding (complex, uint64, ...)."""

    @classmethod
    def for_dtype(cls, dtype: object, what: str) -> UnsupportedDtype:
        return cls(f"dtype {dtype} is not supported {what}", {"dtype": str(dtype), "what": what})


class InvalidPrecision(EncodingError):
    """The number of fractional bits is outside the supported range."""

    @classmethod
    def for_bits(cls, bits: int, low: int, high: int) -> InvalidPrecision:
        return cls(
            f"precision of {bits} fractional bits is outside [{low}, {high}]",
            {"bits": bits, "low": low, "high": high},
        )


class RingError(MpcError):
    """A tensor given as a ring element is not int64, or shapes disagree."""

    @classmethod
    def not_ring(cls, what: str, dtype: object) -> RingError:
        return cls(
            f"{what} must be a torch.int64 ring tensor, got {dtype}",
            {"what": what, "dtype": str(dtype)},
        )

    @classmethod
    def shape_mismatch(
        cls, what: str, expected: tuple[int, ...], got: tuple[int, ...]
    ) -> RingError:
        return cls(
            f"{what} has shape {list(got)}, expected {list(expected)}",
            {"what": what, "expected": str(list(expected)), "got": str(list(got))},
        )


class PartyError(MpcError):
    """A party count or party index is invalid for the scheme used."""

    @classmethod
    def for_index(cls, party: int, n_parties: int) -> PartyError:
        return cls(
            f"party index {party} is not in [0, {n_parties})",
            {"party": party, "n_parties": n_parties},
        )

    @classmethod
    def for_count(cls, n_parties: int, scheme: str, minimum: int, maximum: int) -> PartyError:
        return cls(
            f"{scheme} needs between {minimum} and {maximum} parties, got {n_parties}",
            {"n_parties": n_parties, "scheme": scheme, "minimum": minimum, "maximum": maximum},
        )


class MaterialError(MpcError):
    """Dealer material or a material request is malformed."""


class SeedError(MpcError):
    """A PRG seed has the wrong type or length."""

    @classmethod
    def for_length(cls, length: int) -> SeedError:
        return cls(
            f"a PRG seed must be 16 or 32 bytes, got {length}",
            {"length": length},
        )
