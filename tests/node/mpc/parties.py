"""In-process simulation of n parties: each party's value is one list entry.

The openings that the networked layer will do over TLS are plain sums here;
every party-local step calls the production functions of ``node.mpc``.
"""

from __future__ import annotations

from typing import Sequence

import torch

from node.mpc.beaver import finish, mask, open_masked
from node.mpc.dealer import Dealer
from node.mpc.encoding import FixedPointEncoder
from node.mpc.material import (
    PartyMaterial,
    TripleShares,
    TripleSpec,
    TruncationShares,
    TruncationSpec,
    as_triple,
    as_truncation,
    expand_material,
)
from node.mpc.ring import BilinearOp, ConvParams
from node.mpc.shares import reconstruct, split
from node.mpc.truncation import (
    open_truncation,
    truncate_local,
    truncation_finish,
    truncation_mask,
)

Shares = list[torch.Tensor]


def share_float(value: torch.Tensor, n: int, bits: int = 16) -> Shares:
    """Encode ``value`` with ``bits`` fractional bits and split it among ``n`` parties."""
    return split(FixedPointEncoder(bits).encode(value), n)


def reveal_float(shares: Sequence[torch.Tensor], bits: int = 16) -> torch.Tensor:
    """Reconstruct and decode to float64."""
    return FixedPointEncoder(bits).decode(reconstruct(shares), torch.float64)


def beaver(
    op: BilinearOp,
    xs: Sequence[torch.Tensor],
    ys: Sequence[torch.Tensor],
    conv: ConvParams | None = None,
    dealer: Dealer | None = None,
) -> Shares:
    """Shares of op(x, y) (no truncation), running all three Beaver steps."""
    n = len(xs)
    spec = TripleSpec(op, tuple(xs[0].shape), tuple(ys[0].shape), conv)
    triples = [_triple(bundle) for bundle in (dealer or Dealer()).deal([spec], n)]
    masked = [mask(x, y, t.a, t.b) for x, y, t in zip(xs, ys, triples)]
    opened = open_masked(masked, spec)
    return [finish(spec, opened, t, i, n) for i, t in enumerate(triples)]


def _triple(bundle: PartyMaterial) -> TripleShares:
    return as_triple(expand_material(bundle)[0])


def _mask_material(bundle: PartyMaterial) -> TruncationShares:
    return as_truncation(expand_material(bundle)[0])


def truncate_dealer(shares: Sequence[torch.Tensor], bits: int) -> Shares:
    """Shares of x / 2^bits by the dealer scheme (one opening)."""
    n = len(shares)
    spec = TruncationSpec(tuple(shares[0].shape), bits)
    materials = [_mask_material(bundle) for bundle in Dealer().deal([spec], n)]
    masked = [truncation_mask(s, i, m) for i, (s, m) in enumerate(zip(shares, materials))]
    opened = open_truncation(masked, spec.shape)
    return [truncation_finish(opened, i, n, m, bits) for i, m in enumerate(materials)]


def truncate_two_party(shares: Sequence[torch.Tensor], bits: int) -> Shares:
    """Shares of x / 2^bits by the local SecureML scheme."""
    return [truncate_local(s, i, len(shares), bits) for i, s in enumerate(shares)]


def fixed_product(
    op: BilinearOp,
    xs: Sequence[torch.Tensor],
    ys: Sequence[torch.Tensor],
    bits: int = 16,
    conv: ConvParams | None = None,
    local: bool = False,
) -> Shares:
    """Shares of the fixed-point op(x, y), truncated back to ``bits`` fractional bits."""
    product = beaver(op, xs, ys, conv)
    return truncate_two_party(product, bits) if local else truncate_dealer(product, bits)
