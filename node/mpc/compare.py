"""Comparison routes: which spec class and which round protocol compute a ``drelu``/``relu`` step.

Owns the table from a wire route (:class:`protocol.mpc.CompareRoute`) to
its pure core: ``fss`` is :mod:`node.mpc.fss` (function secret sharing, 2
parties), ``a2b`` is :mod:`node.mpc.a2b` (arithmetic-to-binary conversion,
any n).  Both cores have the same shape, so the networked party
(:mod:`node.server.mpc.party`) and the wire translation
(:mod:`node.server.mpc.specs`) name a route, never a core:

- a spec class, a frozen dataclass ``(shape, width, relu)`` with a
  ``KIND`` (the :class:`~node.mpc.kinds.MaterialKind` whose provider deals
  it), ``explicit_for(party, n)`` and ``explicit_shapes(party, n)``, raising
  :class:`~node.mpc.errors.MaterialError` on bad values;
- ``party_protocol(spec, party, n, seed, explicit, x)``: validates eagerly,
  then returns the party's :data:`~node.mpc.rounds.RoundProtocol`.

Must not import asyncio, websockets, or anything of ``node.server`` /
``node.client``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Protocol


from protocol.mpc import CompareRoute

from .a2b import BinarySpec
from .a2b import party_protocol as a2b_protocol
from .fss import FssSpec
from .fss import party_protocol as fss_protocol
from .kinds import MaterialKind
from .rounds import RoundProtocol

__all__ = ["CompareSpec", "Route", "ROUTES", "route_of", "compare_spec", "party_range"]


class CompareSpec(Protocol):
    """What both routes' spec classes offer (``FssSpec``, ``BinarySpec``)."""

    KIND: ClassVar[MaterialKind]

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def width(self) -> int: ...

    @property
    def relu(self) -> bool: ...

    def explicit_for(self, party: int, n: int) -> bool: ...

    def explicit_shapes(self, party: int, n: int) -> list[tuple[int, ...]]: ...


PartyProtocol = Callable[..., RoundProtocol]
"""``party_protocol(spec, party, n, seed, explicit, x)`` of a route's core."""


@dataclass(frozen=True, slots=True)
class Route:
    """One comparison route: its spec class and its party protocol."""

    spec_class: Callable[[tuple[int, ...], int, bool], Any]
    party_protocol: PartyProtocol


ROUTES: Mapping[CompareRoute, Route] = {
    CompareRoute.FSS: Route(FssSpec, fss_protocol),
    CompareRoute.A2B: Route(BinarySpec, a2b_protocol),
}
"""Each wire route's core."""

_PARTIES: Mapping[CompareRoute, tuple[int, int | None]] = {
    CompareRoute.FSS: (2, 2),
    CompareRoute.A2B: (2, None),
}
"""Fewest and most parties each route works for (None: any number)."""


def route_of(route: CompareRoute) -> Route:
    """The route's core."""
    return ROUTES[route]


def party_range(route: CompareRoute) -> tuple[int, int | None]:
    """Fewest and most parties the route works for (None: any number)."""
    return _PARTIES[route]


def compare_spec(route: CompareRoute, shape: tuple[int, ...], width: int, relu: bool) -> CompareSpec:
    """The core's spec of a wire ``compare`` spec (MaterialError for bad values)."""
    spec: CompareSpec = route_of(route).spec_class(tuple(shape), width, relu)
    return spec

