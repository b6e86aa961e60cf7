"""Truncation of shared fixed-point products: [x] -> [x / 2^m].

Owns the two truncation schemes and their error bounds.  A product of two
values with f fractional bits has 2f; truncating by m = f restores f.
Must not import asyncio, websockets, or anything of ``node.server`` /
``node.client``.  Throughout, x is the signed representative in
[-2^63, 2^63) and "1 ulp" is one unit of the result, 2^-f in value.

Dealer scheme, any n >= 2 (:func:`truncation_mask`, :func:`truncation_finish`)
------------------------------------------------------------------------------
Probabilistic truncation in Z/2^k with a masked top bit (Dalskov, Escudero,
Keller, "Secure Evaluation of Quantized Neural Networks", PETS 2020, 5.1).
The dealer gives shares of r (uniform over the whole ring), of its top bit
r_t, and of r' = (r mod 2^63) >> m.  Assume |x| < 2^62 and let
x' = x + 2^62, so 0 <= x' < 2^63.

1. Party i sends c_i = x_i + r_i (party 0 adds 2^62); all open c = x' + r.
   r is uniform over Z/2^64, so c is uniform whatever x: perfect hiding.
2. Write r = 2^63 r_t + r_low and c = 2^63 c_t + c_low.  As x' + r_low
   < 2^64, x' + r_low = c_low + 2^63 u with one carry bit u, and then
   c_t = r_t XOR u, i.e. u = c_t + r_t - 2 c_t r_t: linear in [r_t] since c_t
   is public.  Hence, exactly over the integers, x' = c_low - r_low + 2^63 u.
3. Party i outputs y_i = -r'_i + 2^(63-m) u_i; party 0 adds the public
   (c_low >> m) - 2^(62-m).  Summed: y = floor(c_low / 2^m) -
   floor(r_low / 2^m) + 2^(63-m) u - 2^(62-m), and since
   floor(A) - floor(B) is floor(A - B) or one more,
   y is floor(x / 2^m) or floor(x / 2^m) + 1.

Bound: for every x in [-2^62, 2^62) (a real product below 2^(62-2f) in
magnitude: 2^30 for f = 16) the result is within 1 ulp, |y - x / 2^m| < 1,
with no failure probability: the wrap-around that breaks the plain pair
([r], [r >> m]) (failure probability |x| / 2^64, and then off by
2^(64-m)) is exactly what u corrects.  Which neighbour comes out is a carry
of the low m bits: y = floor(x / 2^m) + 1 with probability
(x mod 2^m) / 2^m over r, so the rounding is stochastic and unbiased,
E[y] = x / 2^m.  Cost: one opening of a ring tensor; three dealt tensors
per element, which parties 0..n-2 expand from their batch seed and the last
party partly receives (two of the three) explicitly.

Local scheme, exactly 2 parties (:func:`truncate_local`)
-------------------------------------------------------
SecureML (Mohassel and Zhang, IEEE S&P 2017, Theorem 1): party 0 outputs
x_0 >> m, party 1 outputs -((-x_1) >> m) (arithmetic shifts).  No
communication and no dealer.  With x_0 uniform, x_0 + x_1 = x holds over the
integers unless x - x_0 leaves [-2^63, 2^63), which happens for at most
|x| + 1 of the 2^64 values of x_0.  Otherwise the output is
floor(x_0 / 2^m) + ceil(x_1 / 2^m), which is floor(x / 2^m) or one more:
within 1 ulp.  Bound: failure probability at most (|x| + 1) / 2^64 per
element (:func:`local_failure_bound`), and a failure is off by
+-2^(64-m) in the ring, a huge value.  With f = 16 and real values of
magnitude v, |x| is about v * 2^32: 2^-32 per element for v = 1, 2^-12
for v = 10^6.  With 3 or more parties the same local shifts are off by
multiples of 2^(64-m) with constant probability (the shares' integer sum
wraps: 1/4 for three parties, more for more), which is why PySyft 0.2
failed beyond two parties; :func:`truncate_local` refuses n != 2.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .errors import MaterialError, PartyError, RingError
from .material import MAX_TRUNCATION_BITS, TruncationShares
from .ring import RING_BITS, arithmetic_shift, check_ring, logical_shift, low_bits, mul_int
from .shares import check_party, check_party_count

__all__ = [
    "VALID_MAGNITUDE_BITS",
    "truncate_local",
    "local_failure_bound",
    "truncation_mask",
    "open_truncation",
    "truncation_finish",
]

VALID_MAGNITUDE_BITS = RING_BITS - 2
"""The dealer scheme is exact to 1 ulp for every |x| < 2^62."""
_OFFSET = 1 << VALID_MAGNITUDE_BITS


def _check_bits(bits: int) -> int:
    if not isinstance(bits, int) or not 1 <= bits <= MAX_TRUNCATION_BITS:
        raise MaterialError(
            f"truncation by {bits} bits is outside [1, {MAX_TRUNCATION_BITS}]", {"bits": int(bits)}
        )
    return bits


def truncate_local(share: torch.Tensor, party: int, n_parties: int, bits: int) -> torch.Tensor:
    """SecureML local truncation of this party's share; two parties only."""
    if n_parties != 2:
        raise PartyError.for_count(n_parties, "local (SecureML) truncation", 2, 2)
    check_party(party, n_parties)
    check_ring(share, "share")
    _check_bits(bits)
    if party == 0:
        return arithmetic_shift(share, bits)
    # -((-share) >> bits) with one allocation
    out = torch.neg(share)
    out >>= bits
    return out.neg_()


def local_failure_bound(magnitude: int) -> float:
    """Probability bound (|x| + 1) / 2^64 that local truncation of x fails."""
    return (abs(magnitude) + 1) / 2.0**RING_BITS


def truncation_mask(x_share: torch.Tensor, party: int, material: TruncationShares) -> torch.Tensor:
    """Step 1: this party's share of c = x + 2^62 + r, sent to every party."""
    check_ring(x_share, "share")
    if x_share.shape != material.r.shape:
        raise RingError.shape_mismatch("share", tuple(material.r.shape), tuple(x_share.shape))
    masked = x_share + material.r
    if party == 0:
        masked += _OFFSET
    return masked


def open_truncation(parts: Sequence[torch.Tensor], shape: Sequence[int]) -> torch.Tensor:
    """The opened c from every party's masked share (its own included); checks peer input."""
    check_party_count(len(parts), "an opening")
    dims = tuple(shape)
    for number, part in enumerate(parts):
        what = f"masked share from party {number}"
        check_ring(part, what)
        if tuple(part.shape) != dims:
            raise RingError.shape_mismatch(what, dims, tuple(part.shape))
    total = parts[0].clone()
    for part in parts[1:]:
        total += part
    return total


def truncation_finish(
    opened: torch.Tensor, party: int, n_parties: int, material: TruncationShares, bits: int
) -> torch.Tensor:
    """Steps 2-3: this party's share of x / 2^bits (within 1 ulp for |x| < 2^62)."""
    check_party(party, n_parties)
    check_ring(opened, "opened value")
    _check_bits(bits)
    if opened.shape != material.r.shape:
        raise RingError.shape_mismatch("opened value", tuple(material.r.shape), tuple(opened.shape))
    c_top = opened < 0
    # [u] = c_t + [r_t] - 2 c_t [r_t]: where c_t = 1 every party negates its
    # share of r_t and party 0 adds 1; elsewhere [u] = [r_t].
    u_share = torch.where(c_top, -material.r_top, material.r_top)
    if party == 0:
        u_share += c_top
    result = mul_int(u_share, 1 << (RING_BITS - 1 - bits))
    result -= material.r_low_shifted
    if party == 0:
        result += logical_shift(low_bits(opened), bits)
        result -= 1 << (VALID_MAGNITUDE_BITS - bits)
    return result
