"""Material providers: a crypto provider's sources of correlated randomness, by kind.

Owns :class:`MaterialKind` (the closed set of kinds of material a crypto
provider deals), :class:`MaterialProvider` (the interface one kind's source
implements) and :class:`Providers` (kinds mapped to their providers: what a
node's runtime builds and injects into its secret-sharing service, which
looks a batch's provider up by the kind of its specs and never names a
provider class).  Must not import asyncio, websockets, or anything of
``node.server`` / ``node.client``.

A provider deals a batch in two phases, so that parties never wait for its
heavy work before they can start:

1. :meth:`~MaterialProvider.seeds`: one fresh seed per party, sent at once.
   Each party expands from its own seed the uniform part of its material
   and starts masking with it (a_i and b_i of a Beaver triple, r_i of a
   truncation mask: :mod:`node.mpc.material`).
2. :meth:`~MaterialProvider.dependent`: the tensors that no party's seed
   can give, because they depend on every party's seed (the last party's
   c_{n-1} = op(a, b) minus the others' c_i), computed from the seeds off
   the event loop (:meth:`~MaterialProvider.cost` sizes that work) and sent
   after, to the parties that need them.

Kinds (:class:`~node.mpc.kinds.MaterialKind`).  BEAVER is
:class:`node.mpc.dealer.Dealer`: triples for elementwise products, matmul
and conv2d, and truncation masks.  FSS (2-party comparisons: keys of
distributed comparison functions) and BINARY (comparisons among any number
of parties: binary triples for arithmetic-to-binary conversion) fit the
same two phases.  A spec class of another kind names it in a ``KIND`` class
attribute; its provider's :attr:`~MaterialProvider.kind` is the same
member; the service's ``mpc_deal`` dispatch stays as it is.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

import torch

from .errors import MaterialError
from .kinds import MaterialKind
from .material import TripleSpec, TruncationSpec
from .prg import Seed

__all__ = ["MaterialKind", "MaterialProvider", "Providers", "kind_of"]


_KINDS: Mapping[type, MaterialKind] = {
    TripleSpec: MaterialKind.BEAVER,
    TruncationSpec: MaterialKind.BEAVER,
}
"""The kind of material each Beaver spec class asks for; other spec classes name theirs (``KIND``)."""


def kind_of(spec: object) -> MaterialKind:
    """The kind of material ``spec`` asks for (its class's ``KIND``, or the Beaver table)."""
    kind = _KINDS.get(type(spec))
    if kind is None:
        kind = getattr(type(spec), "KIND", None)
    if not isinstance(kind, MaterialKind):
        raise MaterialError(f"not a material spec: {type(spec).__name__}", {})
    return kind


class MaterialProvider(Protocol):
    """A source of one kind of correlated randomness for a group of parties."""

    @property
    def kind(self) -> MaterialKind:
        """The kind of material this provider deals."""
        ...

    def seeds(self, n_parties: int) -> tuple[Seed, ...]:
        """Phase 1: one fresh seed per party (index i goes to party i), sent at once."""
        ...

    def dependent(
        self, specs: Sequence[Any], seeds: Sequence[Seed]
    ) -> Mapping[int, tuple[torch.Tensor, ...]]:
        """Phase 2: the tensors the parties cannot expand from their seeds, by party index."""
        ...

    def cost(self, specs: Sequence[Any]) -> int:
        """Tensor elements phase 2 touches for ``specs`` (where it runs: ``node.server.offload``)."""
        ...


class Providers:
    """The providers a crypto provider deals with, one per kind of material."""

    __slots__ = ("_by_kind",)

    def __init__(self, *providers: MaterialProvider) -> None:
        by_kind: dict[MaterialKind, MaterialProvider] = {}
        for provider in providers:
            # Our own wiring, not peer input: two providers of one kind is a bug.
            assert provider.kind not in by_kind, f"two providers of {provider.kind.value} material"
            by_kind[provider.kind] = provider
        self._by_kind = by_kind

    def for_specs(self, specs: Sequence[object]) -> MaterialProvider:
        """The provider of the batch ``specs`` (MaterialError for a mixed batch or a kind not dealt here)."""
        kinds = {kind_of(spec) for spec in specs}
        if len(kinds) != 1:
            raise MaterialError(
                "a deal asks for one kind of material: "
                f"got {sorted(kind.value for kind in kinds) or 'none'}",
                {},
            )
        (kind,) = kinds
        provider = self._by_kind.get(kind)
        if provider is None:
            raise MaterialError(
                f"this node deals no {kind.value} material", {"kind": kind.value}
            )
        return provider
