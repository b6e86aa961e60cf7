"""Secure aggregation's arithmetic: weighted updates in the ring, their shares and their sum.

Owns the pure functions both ends of a secure round use, built on the
secret-sharing core (:mod:`node.mpc`: fixed-point encoding, AES-CTR seeds,
ring sums):

- the owner: :func:`encode_update` then :func:`split_update` (one share per
  aggregation party; every party but one gets a 16-byte seed, the owner's
  own party the explicit rest);
- a party: :func:`share_tensors` (expand a seed, or take explicit values)
  and :func:`add_shares`;
- the trainer: :func:`reconstruct_sum` over the parties' summed shares and
  :func:`decode_average`, the FedAvg weighted mean.

**Encoding.** Owner ``i`` with ``n_i`` training samples contributes, per
state tensor ``t_i``, ``u_i = n_i * t_i`` in Z/2^64: floating tensors as
``round(n_i * t_i * 2^f)`` (the product in float64, ``f`` fractional bits,
:data:`~protocol.secagg.DEFAULT_SECAGG_PRECISION` = 20 by default);
integer tensors (BatchNorm's ``num_batches_tracked``) as ``n_i * t_i``
exactly.  The trainer divides the decoded sum by ``N = sum_i n_i`` and
rounds integer tensors to the nearest integer (ties to even), exactly the
rule of :mod:`node.fl.aggregate`.

**Bound (no wrap-around).** A party sums at most
:data:`~protocol.secagg.MAX_ROUND_OWNERS` = 2^8 owners, so each owner's
``|u_i|`` must stay below 2^(63-8) = 2^55 ring units: ``|n_i * t_i| <
2^(55-f)``, i.e. below 2^35 ~ 3.4e10 with ``f = 20`` (weights up to 3.4e4
with a million samples per owner).  :func:`encode_update` refuses larger
values (:class:`UpdateOutOfRange`) before any share leaves the owner, so
the true sum always lies in (-2^63, 2^63) and decodes exactly.

**Error.** Rounding costs at most 2^-(f+1) per owner and element, so the
average is off from plain FedAvg's by at most ``k * 2^-(f+1) / N`` for
``k`` owners (at most 2^-(f+1) ~ 4.8e-7, as ``k <= N``), plus the final
cast to the tensor's dtype; integer tensors are exact.

Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from protocol.errors import BadRequest
from protocol.secagg import MAX_ROUND_OWNERS, MAX_SECAGG_PRECISION

from ..mpc import FixedPointEncoder, Seed, expand_seed, fresh_seed
from ..mpc.errors import NonFiniteValue
from .spec import State

__all__ = [
    "UpdateOutOfRange",
    "Shapes",
    "SharePart",
    "HEADROOM_BITS",
    "update_limit",
    "check_precision",
    "shapes_of",
    "encode_update",
    "split_update",
    "share_tensors",
    "add_shares",
    "reconstruct_sum",
    "decode_average",
    "average_error_bound",
]

HEADROOM_BITS = (MAX_ROUND_OWNERS - 1).bit_length()
"""Bits kept free above one owner's update so a sum over every owner cannot wrap (8)."""

Shapes = Dict[str, Tuple[int, ...]]
Ring = Dict[str, torch.Tensor]


class UpdateOutOfRange(BadRequest, ValueError):
    """A sample-weighted update is too large to be summed in the ring at this precision."""

    @classmethod
    def for_key(cls, key: str, largest: float, limit: float, precision: int) -> UpdateOutOfRange:
        return cls(
            f"secure aggregation: samples x {key!r} reaches {largest:.6g}, beyond the {limit:.6g} "
            f"that {precision} fractional bits leave for a sum over {MAX_ROUND_OWNERS} owners",
            {"key": key[:80], "largest": largest, "limit": limit, "precision_bits": precision},
        )


@dataclass(frozen=True, slots=True, eq=False)
class SharePart:
    """One party's share of an update: a seed it expands, or explicit ring tensors."""

    seed: Optional[Seed]
    values: Ring


def check_precision(precision: int) -> int:
    if type(precision) is not int or not 0 <= precision <= MAX_SECAGG_PRECISION:
        raise BadRequest(
            f"secure aggregation precision must be an integer in [0, {MAX_SECAGG_PRECISION}], got {precision!r}",
            {"precision": str(precision)[:40]},
        )
    return precision


def update_limit(precision: int) -> float:
    """Largest ``|samples * value|`` an owner may contribute at ``precision`` bits (exclusive)."""
    return float(2 ** (63 - HEADROOM_BITS - check_precision(precision)))


def encode_update(state: Mapping[str, torch.Tensor], samples: int, precision: int) -> Ring:
    """The owner's ``samples * state`` in the ring (see the module docstring for the rule)."""
    limit = update_limit(precision)
    encoder = FixedPointEncoder(precision)
    ring: Ring = {}
    for key, tensor in state.items():
        if tensor.is_floating_point():
            weighted = tensor.detach().to(torch.float64) * float(samples)
            largest = float(weighted.abs().max()) if weighted.numel() else 0.0
            if not math.isfinite(largest):
                raise NonFiniteValue.for_count(int((~torch.isfinite(weighted)).sum()))
            if largest >= limit:  # before encoding, whose own (2^63) bound is far looser
                raise UpdateOutOfRange.for_key(key, largest, limit, precision)
            ring[key] = encoder.encode(weighted)
        elif tensor.dtype in (torch.bool,) or tensor.is_complex():
            raise BadRequest(f"secure aggregation: {key!r} has dtype {tensor.dtype}, which is not averaged", {})
        else:
            exact = tensor.detach().to(torch.int64)
            largest = float(exact.abs().max()) * samples if exact.numel() else 0.0
            if largest >= limit * 2**precision:
                raise UpdateOutOfRange.for_key(key, largest, limit * 2**precision, 0)
            ring[key] = exact * samples
    return ring


def shapes_of(ring: Mapping[str, torch.Tensor]) -> Shapes:
    return {key: tuple(value.shape) for key, value in ring.items()}


def share_tensors(shapes: Mapping[str, Tuple[int, ...]], part: SharePart) -> Ring:
    """The ring tensors of a share: tensor ``k`` of a seed is AES-CTR stream ``k``."""
    if part.seed is None:
        return dict(part.values)
    return {key: expand_seed(part.seed, shape, stream) for stream, (key, shape) in enumerate(shapes.items())}


def split_update(ring: Mapping[str, torch.Tensor], parties: int, explicit: int) -> List[SharePart]:
    """``parties`` additive shares of ``ring``: fresh seeds, party ``explicit`` the rest.

    Each seeded share is pseudo-uniform over the ring; the explicit one is
    the update minus their sum, so any ``parties - 1`` shares are
    independent of the update (:func:`node.mpc.split`, with seeds in place
    of the uniform tensors).
    """
    if not 2 <= parties <= MAX_ROUND_OWNERS + 1 or not 0 <= explicit < parties:
        raise BadRequest(f"cannot split an update among {parties} parties (explicit share {explicit})", {})
    shapes = shapes_of(ring)
    parts: List[SharePart] = []
    rest = {key: value.clone() for key, value in ring.items()}
    for index in range(parties):
        if index == explicit:
            parts.append(SharePart(None, {}))
            continue
        part = SharePart(fresh_seed(), {})
        for key, value in share_tensors(shapes, part).items():
            rest[key] -= value  # int64 arithmetic wraps: the ring Z/2^64
        parts.append(part)
    parts[explicit] = SharePart(None, rest)
    return parts


def add_shares(shares: Sequence[Mapping[str, torch.Tensor]]) -> Ring:
    """Sum of ring tensors key by key (mod 2^64); all shares have the first one's keys and shapes."""
    if not shares:
        raise BadRequest("no shares to add", {})
    total = {key: value.clone() for key, value in shares[0].items()}
    for share in shares[1:]:
        if list(share) != list(total) or any(share[k].shape != total[k].shape for k in total):
            raise BadRequest("the shares to add have different tensors or shapes", {})
        for key, value in share.items():
            total[key] += value
    return total


def reconstruct_sum(party_sums: Sequence[Mapping[str, torch.Tensor]]) -> Ring:
    """The ring sum of the owners' updates, from every party's summed share."""
    if len(party_sums) < 2:
        raise BadRequest("reconstruction needs every party's sum (at least 2)", {})
    return add_shares(party_sums)


def decode_average(total: Mapping[str, torch.Tensor], reference: State, samples: int, precision: int) -> State:
    """The weighted average ``total / samples``, with ``reference``'s keys, shapes and dtypes."""
    if list(total) != list(reference):
        raise BadRequest("the reconstructed sum does not have the model's tensors", {})
    scale = float(2**precision)
    averaged: State = {}
    for key, ref in reference.items():
        ring = total[key]
        if tuple(ring.shape) != tuple(ref.shape):
            raise BadRequest(f"the reconstructed sum of {key!r} has shape {list(ring.shape)}", {})
        if ref.is_floating_point():
            value = ring.to(torch.float64).div_(scale).div_(samples)
        else:
            value = ring.to(torch.float64).div_(samples).round_()
        averaged[key] = value.to(ref.dtype)
    return averaged


def average_error_bound(owners: int, samples: int, precision: int) -> float:
    """Largest difference from plain FedAvg's float64 average due to the encoding."""
    return owners * 2.0 ** -(precision + 1) / samples
