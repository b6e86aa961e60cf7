"""SPDZ-style secret sharing over Z/2^64: the pure, network-free core.

Modules, one concept each (none imports asyncio, websockets, ``node.server``
or ``node.client``):

- :mod:`.ring`: ring constants, shifts, exact int64 product/matmul/conv2d.
- :mod:`.encoding`: :class:`FixedPointEncoder` (floats to fixed point,
  integers exactly).
- :mod:`.prg`: AES-CTR random ring tensors from fresh or shared seeds.
- :mod:`.shares`: split, reconstruct, and local share arithmetic.
- :mod:`.scalars`: multiplication and division by public reals, mean.
- :mod:`.material`: what parties ask the dealer for and what they receive.
- :mod:`.provider`: kinds of material, the :class:`MaterialProvider`
  interface, and :class:`Providers` (kinds mapped to providers).
- :mod:`.dealer`: the trusted :class:`Dealer` of Beaver material.
- :mod:`.beaver`: Beaver's mask / open / finish steps for mul, matmul, conv2d.
- :mod:`.truncation`: truncating fixed-point products, with error bounds.

A party holds one share per secret; the networked layer calls these
functions around its openings (sending masked shares, summing received ones).
"""

from __future__ import annotations

from .beaver import Masked, finish, mask, open_masked
from .dealer import Dealer
from .encoding import DEFAULT_PRECISION_BITS, FixedPointEncoder, encoder_for
from .errors import (
    EncodingError,
    InvalidPrecision,
    MaterialError,
    MpcError,
    NonFiniteValue,
    PartyError,
    RingError,
    SeedError,
    UnsupportedDtype,
    ValueOutOfRange,
)
from .material import (
    PartyMaterial,
    TripleShares,
    TripleSpec,
    TruncationShares,
    TruncationSpec,
    as_triple,
    as_truncation,
    expand_material,
    expand_triple_masks,
    expand_triple_product,
    expand_truncation,
)
from .prg import Seed, expand_seed, fresh_seed, random_ring
from .kinds import MaterialKind
from .provider import MaterialProvider, Providers, kind_of
from .ring import RING_BITS, RING_DTYPE, BilinearOp, ConvParams
from .shares import reconstruct, split
from .truncation import (
    open_truncation,
    truncate_local,
    truncation_finish,
    truncation_mask,
)

__all__ = [
    "BilinearOp",
    "ConvParams",
    "DEFAULT_PRECISION_BITS",
    "Dealer",
    "EncodingError",
    "FixedPointEncoder",
    "InvalidPrecision",
    "Masked",
    "MaterialError",
    "MaterialKind",
    "MaterialProvider",
    "MpcError",
    "NonFiniteValue",
    "PartyError",
    "PartyMaterial",
    "Providers",
    "RING_BITS",
    "RING_DTYPE",
    "RingError",
    "Seed",
    "SeedError",
    "TripleShares",
    "TripleSpec",
    "TruncationShares",
    "TruncationSpec",
    "UnsupportedDtype",
    "ValueOutOfRange",
    "as_triple",
    "as_truncation",
    "encoder_for",
    "expand_material",
    "expand_triple_masks",
    "expand_triple_product",
    "expand_truncation",
    "expand_seed",
    "finish",
    "fresh_seed",
    "kind_of",
    "mask",
    "open_masked",
    "open_truncation",
    "random_ring",
    "reconstruct",
    "split",
    "truncate_local",
    "truncation_finish",
    "truncation_mask",
]
