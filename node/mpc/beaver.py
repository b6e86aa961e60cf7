"""Beaver multiplication of two shared tensors, as pure per-party steps.

Owns every step of Beaver's protocol (D. Beaver, "Efficient multiparty
protocols using circuit randomization", CRYPTO 1991) that a party computes,
for any bilinear map ``op`` (elementwise product, matmul, conv2d): the
networked party (:mod:`node.server.mpc.party`) only sends, waits and calls
these, and the in-process tests call the same functions.  Must not import asyncio, websockets, or
anything of ``node.server`` / ``node.client``.

Protocol for [z] = op([x], [y]) with n parties and a triple
([a], [b], [c]) where c = op(a, b) (dealt by :mod:`node.mpc.dealer`):

1. :func:`mask` (local): party i computes eps_i = x_i - a_i and
   delta_i = y_i - b_i.  It needs a_i and b_i only, which every party
   expands from its seed (:func:`node.mpc.material.expand_triple_masks`),
   so it masks before the dealer has sent the last party its c.
2. Opening (network): every party sends (eps_i, delta_i) to every other
   party and adds up what it holds: :func:`open_masked` gives
   eps = x - a and delta = y - b.  These reveal nothing: a and b are
   uniform over the ring and used once.
3. :func:`finish` (local): z_i = c_i + op(eps, b_i) + op(a_i, delta), and
   party 0 also adds the public term op(eps, delta).  Summed over parties,
   by bilinearity: c + op(eps, b) + op(a, delta) + op(eps, delta)
   = op(a + eps, b + delta) = op(x, y).

Party 0 folds its public term in as op(eps, b_0 + delta), which saves one
product.  Fixed-point products carry the sum of both operands' fractional
bits; the caller truncates them (:mod:`node.mpc.truncation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .errors import RingError
from .material import TripleShares, TripleSpec
from .ring import BilinearOp, apply_bilinear, check_ring
from .shares import check_party, check_party_count

__all__ = ["Masked", "mask", "open_masked", "finish"]


@dataclass(frozen=True, slots=True)
class Masked:
    """Masked operands: one party's shares (eps_i, delta_i), or the opened sums."""

    epsilon: torch.Tensor
    delta: torch.Tensor


def _same_shape(tensor: torch.Tensor, like: torch.Tensor, what: str) -> torch.Tensor:
    check_ring(tensor, what)
    if tensor.shape != like.shape:
        raise RingError.shape_mismatch(what, tuple(like.shape), tuple(tensor.shape))
    return tensor


def mask(x_share: torch.Tensor, y_share: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> Masked:
    """Step 1: this party's (x_i - a_i, y_i - b_i), the values it sends to every party."""
    _same_shape(x_share, a, "x share")
    _same_shape(y_share, b, "y share")
    return Masked(x_share - a, y_share - b)


def open_masked(parts: Sequence[Masked], spec: TripleSpec) -> Masked:
    """Step 2: eps and delta from every party's masked shares (its own included).

    ``parts`` come from peers, so their dtypes and shapes are checked
    against ``spec``.
    """
    check_party_count(len(parts), "an opening")
    x_like = torch.empty(spec.x_shape, dtype=torch.int64, device="meta")
    y_like = torch.empty(spec.y_shape, dtype=torch.int64, device="meta")
    epsilons = [_same_shape(p.epsilon, x_like, f"epsilon from party {k}") for k, p in enumerate(parts)]
    deltas = [_same_shape(p.delta, y_like, f"delta from party {k}") for k, p in enumerate(parts)]
    # The first sum allocates; the rest accumulate in place (no copy of party 0's values).
    epsilon = epsilons[0] + epsilons[1]
    delta = deltas[0] + deltas[1]
    for more_epsilon, more_delta in zip(epsilons[2:], deltas[2:]):
        epsilon += more_epsilon
        delta += more_delta
    return Masked(epsilon, delta)


def finish(
    spec: TripleSpec, opened: Masked, triple: TripleShares, party: int, n_parties: int
) -> torch.Tensor:
    """Step 3: this party's share of op(x, y), given the opened eps and delta."""
    check_party(party, n_parties)
    _same_shape(opened.epsilon, triple.a, "opened epsilon")
    _same_shape(opened.delta, triple.b, "opened delta")
    b_term = triple.b + opened.delta if party == 0 else triple.b
    if spec.op is BilinearOp.MUL:
        # Fused elementwise: one allocation and two passes instead of three of each.
        z = torch.addcmul(triple.c, opened.epsilon, b_term)
        z.addcmul_(triple.a, opened.delta)
        return z
    z = apply_bilinear(spec.op, opened.epsilon, b_term, spec.conv)
    z += apply_bilinear(spec.op, triple.a, opened.delta, spec.conv)
    z += triple.c
    return z
