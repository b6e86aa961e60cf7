"""The kinds of correlated randomness a crypto provider may deal.

Its own module so that every spec class can name its kind
(``KIND: ClassVar[MaterialKind]``) without importing
:mod:`node.mpc.provider`, which imports the specs.  Must not import asyncio,
websockets, or anything of ``node.server`` / ``node.client``.
"""

from __future__ import annotations

import enum

__all__ = ["MaterialKind"]


class MaterialKind(str, enum.Enum):
    """The kinds of correlated randomness a crypto provider may deal."""

    BEAVER = "beaver"
    """Beaver triples and truncation masks (:class:`node.mpc.dealer.Dealer`)."""
    FSS = "fss"
    """Function-secret-sharing keys (distributed comparison functions) for 2-party comparisons."""
    BINARY = "binary"
    """Binary (XOR) Beaver triples and bit masks for arithmetic-to-binary comparisons, any n."""
