"""The parties of a secret sharing, and the requests the client sends them.

Runs in the user's process.  A :class:`PartyGroup` is the ordered computing
parties plus the crypto provider (optional: without one, only linear ops),
each a connected synchronous node (:class:`~node.client.host.Handle`),
all reached over TLS or all VirtualNodes of this process: the node ids and
certificate fingerprints (in-process identities) the client's own
connections verified are what every node is told to pin and to accept
letters from.  It posts, without waiting (pipelined like pointer ops):

- ``mpc_deal`` to the crypto provider (one per product step, material for
  the Beaver triple and, with the dealer scheme, the truncation masks; one
  per comparison step, the ``compare`` material of the group's route,
  unless a session was dealt ahead for it: :mod:`.predealt`);
- ``mpc_step`` to every party;

and reconstructs: it fetches every party's share in parallel (each ``get``
subject to that node's read policy), failing at the first error, and adds
them up.  It never sends or receives a masked value.  Also the client's
typed errors for secret sharing.  Uses handles through the
:class:`~node.client.host.Handle` protocol only, never a handle class.
"""

from __future__ import annotations

import concurrent.futures
import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import torch

from protocol.errors import PeerUnavailable
from protocol.messages import Reply
from protocol.mpc import (
    COMPARE_OPS,
    DEFAULT_STEP_TIMEOUT,
    MAX_COMPARE_WIDTH,
    MIN_COMPARE_WIDTH,
    SESSION_BYTES,
    DealerRef,
    MpcDealRequest,
    MpcStepRequest,
    CompareRoute,
    PartyAddress,
    StepOp,
    TruncationScheme,
    WireCompare,
    WireConv,
    WireSpec,
)

from node.errors import NodeUnavailable
from node.mpc.errors import EncodingError, MpcError, PartyError
from node.mpc.shares import MAX_PARTIES

from ..host import Handle
from ..ids import new_object_id
from ..pointer import Pointer
from ..streaming import get_request
from .predealt import Predealt, pool_for

__all__ = [
    "PartyGroup",
    "SharingError",
    "MixedParties",
    "PrecisionMismatch",
    "ShapeMismatch",
    "CryptoProviderUnavailable",
    "CryptoProviderRequired",
    "MixedNetworks",
    "group_of",
    "DEFAULT_COMPARE_WIDTH",
]

DEFAULT_COMPARE_WIDTH = 32
"""Low bits a comparison reads unless told otherwise: exact for |value| < 2^(31 - precision)."""


class SharingError(MpcError):
    """A secret-sharing request the client refuses before sending anything."""


class MixedParties(SharingError, PartyError):
    """An op mixes shared tensors held by different parties or crypto providers."""


class PrecisionMismatch(SharingError, EncodingError):
    """An op mixes shared tensors encoded with different numbers of fractional bits."""


class ShapeMismatch(SharingError):
    """The operands' shapes do not fit the op (do not broadcast, inner dims differ...)."""


class CryptoProviderRequired(SharingError):
    """A product (or comparison) of values shared without a ``crypto_provider``."""


class MixedNetworks(SharingError, PartyError):
    """In-process nodes (VirtualNode) and networked nodes in one sharing: they cannot reach each other."""


class CryptoProviderUnavailable(PeerUnavailable):
    """The crypto provider cannot be reached: no product can be computed."""


@dataclass(frozen=True, eq=False)
class PartyGroup:
    """Ordered parties, a crypto provider, how products are truncated and how comparisons run."""

    parties: tuple[Handle, ...]
    crypto_provider: Handle | None
    """Deals material for products; None: linear ops only (products raise CryptoProviderRequired)."""
    truncation: TruncationScheme
    timeout: float = DEFAULT_STEP_TIMEOUT
    addresses: tuple[PartyAddress, ...] = field(default=())
    dealer: DealerRef | None = None
    compare_width: int = DEFAULT_COMPARE_WIDTH
    """Low bits of the ring value a comparison reads as a signed integer (PROTOCOL.md 20.8)."""
    compare_route: CompareRoute = CompareRoute.A2B
    """``fss`` (2 parties; what :func:`group_of` picks for 2) or ``a2b`` (any number)."""

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(p.id for p in self.parties)

    def check_same(self, other: PartyGroup, op: str) -> None:
        if self.ids != other.ids:
            raise MixedParties(
                f"{op} mixes values shared between {list(self.ids)} and {list(other.ids)}; "
                "reshare one of them first",
                {"op": op},
            )
        if self.provider_id != other.provider_id:
            raise MixedParties(
                f"{op} mixes crypto providers {self.provider_id!r} and {other.provider_id!r}",
                {"op": op},
            )

    @property
    def provider_id(self) -> str | None:
        return None if self.crypto_provider is None else self.crypto_provider.id

    @property
    def predealt(self) -> Predealt:
        """Comparison sessions dealt ahead to these parties by this provider (shared by equal groups)."""
        return pool_for(self.addresses, self.dealer)

    # -- posting -----------------------------------------------------------

    def post_product(
        self,
        op: StepOp,
        x: Sequence[Pointer],
        y: Sequence[Pointer] | None,
        specs: tuple[WireSpec, ...],
        bits: int,
        conv: WireConv | None = None,
    ) -> tuple[Pointer, ...]:
        """Deal (if material is needed) and post one step to every party; the result shares."""
        return self._post_step(op, x, y, specs, bits, conv, 0, None)

    def post_compare(self, op: StepOp, x: Sequence[Pointer], spec: WireCompare) -> tuple[Pointer, ...]:
        """Deal ``spec`` and post one ``drelu``/``relu`` step on the shares ``x``; the result shares.

        ``spec``'s shape is the shares' shape; its width and route are the
        ones the parties run (normally the group's).  A session dealt ahead
        for exactly this op and spec is spent instead of dealing now.
        """
        assert op in COMPARE_OPS and spec.relu == (op is StepOp.RELU)
        session = self.predealt.take(op, spec)
        return self._post_step(op, x, None, (spec,), 0, None, spec.width, spec.route, session)

    def _post_step(
        self,
        op: StepOp,
        x: Sequence[Pointer],
        y: Sequence[Pointer] | None,
        specs: tuple[WireSpec, ...],
        bits: int,
        conv: WireConv | None,
        width: int,
        route: CompareRoute | None,
        predealt: bytes | None = None,
    ) -> tuple[Pointer, ...]:
        if predealt is not None:
            session = predealt
        else:
            session = secrets.token_bytes(SESSION_BYTES)
            if specs:
                self.deal(session, specs)
        dealer = self.dealer if specs else None
        results = []
        for index, party in enumerate(self.parties):
            result = new_object_id()
            party.post(
                lambda rid: MpcStepRequest(
                    rid, session, index, self.addresses, dealer, op, x[index].object_id,
                    None if y is None else y[index].object_id, conv, bits, self.truncation, result,
                    self.timeout, width, route,
                ),
                f"mpc_step {op.value} (party {index})",
            )
            results.append(Pointer(party, result))
        return tuple(results)

    def deal(self, session: bytes, specs: tuple[WireSpec, ...]) -> None:
        """Post ``mpc_deal`` of ``specs`` for ``session`` to the crypto provider (not awaited)."""
        provider, addresses = self.crypto_provider, self.addresses
        if provider is None:
            raise CryptoProviderRequired(
                "products and comparisons of shared values need material from a crypto provider, "
                "and these were shared without one: share them with "
                f"crypto_provider=<a node other than {', '.join(self.ids)}> "
                "(sharing, addition, subtraction and get() need none)",
                {"parties": ", ".join(self.ids)},
            )
        try:
            provider.post(
                lambda rid: MpcDealRequest(rid, session, addresses, specs), f"mpc_deal ({len(specs)} spec(s))"
            )
        except NodeUnavailable as exc:
            raise CryptoProviderUnavailable(
                f"crypto provider {provider.id} is unavailable: {exc.message}; "
                "nothing was sent to the parties",
                {"node": provider.id},
            ) from None

    # -- reconstruction ------------------------------------------------------

    def fetch(self, shares: Sequence[Pointer]) -> list[torch.Tensor]:
        """Every party's share, fetched in parallel; the first failure is raised at once."""
        futures: dict[concurrent.futures.Future[Reply], int] = {}
        for index, (party, pointer) in enumerate(zip(self.parties, shares)):
            futures[party.call_async(get_request(pointer.object_id, False))] = index
        values: list[torch.Tensor | None] = [None] * len(shares)
        for future in concurrent.futures.as_completed(futures, timeout=self.timeout + 30):
            index = futures[future]
            # A failed step is the root cause (raised first); large shares are streamed.
            description = f"get({shares[index]!r}) (party {index})"
            values[index] = self.parties[index].value_of(future.result(), description)
        # The crypto provider's own failures are not raised here: a result whose
        # parties all succeeded got its material, and a party that did not is
        # the root cause above ("no material from ..."); they surface at the
        # next synchronisation point with the provider (``sync``).
        return [v for v in values if v is not None]

    def sync(self) -> None:
        """Wait until every party (and the crypto provider) processed everything sent."""
        for handle in self.parties:
            handle.sync()
        if self.crypto_provider is not None:
            self.crypto_provider.sync()


def group_of(
    parties: Sequence[Handle],
    crypto_provider: Handle | None,
    truncation: str | TruncationScheme | None = None,
    timeout: float = DEFAULT_STEP_TIMEOUT,
    compare_width: int = DEFAULT_COMPARE_WIDTH,
    comparison: str | CompareRoute | None = None,
    also: Sequence[Handle] = (),
) -> PartyGroup:
    """Check the parties and provider, and pin what the client verified of each.

    Without a crypto provider the group shares and runs linear ops; its
    first product or comparison raises :class:`CryptoProviderRequired`.
    ``compare_width``: low bits a comparison reads (2 to 64, default 32);
    ``comparison``: its route, ``"fss"`` (2 parties only, their default) or
    ``"a2b"`` (any number, the default for 3 or more).  ``also``: other
    nodes the request involves (a data owner), checked for mixing too.
    """
    if not 2 <= len(parties) <= MAX_PARTIES:
        raise PartyError.for_count(len(parties), "secret sharing", 2, MAX_PARTIES)
    handles = (*parties, *(() if crypto_provider is None else (crypto_provider,)))
    for handle in handles:
        if not _is_handle(handle):
            raise SharingError(
                f"parties and the crypto provider must be connected nodes, not {type(handle).__name__}",
                {},
            )
    ids = [p.id for p in parties]
    if len(set(ids)) != len(ids):
        raise PartyError(f"the parties must be distinct nodes, got {ids}", {})
    check_one_network((*handles, *also))
    if crypto_provider is not None and crypto_provider.id in ids:
        raise PartyError(
            f"the crypto provider {crypto_provider.id!r} must not be a party: it knows every "
            "party's masks",
            {},
        )
    scheme = _scheme(truncation, len(parties))
    route = _route(comparison, len(parties))
    width = _width(compare_width)
    addresses = tuple(_address(p) for p in parties)
    provider = None if crypto_provider is None else _address(crypto_provider)
    return PartyGroup(
        tuple(parties),
        crypto_provider,
        scheme,
        float(timeout),
        addresses,
        None if provider is None else DealerRef(provider.node, provider.fingerprint),
        width,
        route,
    )


def _scheme(truncation: str | TruncationScheme | None, n: int) -> TruncationScheme:
    if truncation is None:
        return TruncationScheme.LOCAL if n == 2 else TruncationScheme.DEALER
    try:
        scheme = TruncationScheme(truncation)
    except ValueError:
        raise SharingError(
            f"truncation must be 'local' or 'dealer', not {truncation!r}", {}
        ) from None
    if scheme is TruncationScheme.LOCAL and n != 2:
        raise PartyError.for_count(n, "local (SecureML) truncation", 2, 2)
    return scheme


def _route(comparison: str | CompareRoute | None, n: int) -> CompareRoute:
    if comparison is None:
        return CompareRoute.FSS if n == 2 else CompareRoute.A2B
    try:
        route = CompareRoute(comparison)
    except ValueError:
        raise SharingError(f"comparison must be 'fss' or 'a2b', not {comparison!r}", {}) from None
    if route is CompareRoute.FSS and n != 2:
        raise PartyError(
            f"the fss comparison route works for exactly 2 parties, not {n}: use comparison='a2b'",
            {"parties": n, "route": route.value},
        )
    return route


def _width(width: int) -> int:
    if isinstance(width, bool) or not isinstance(width, int) or not MIN_COMPARE_WIDTH <= width <= MAX_COMPARE_WIDTH:
        raise SharingError(
            f"compare_width must be an integer in [{MIN_COMPARE_WIDTH}, {MAX_COMPARE_WIDTH}], not {width!r}", {}
        )
    return width


def _is_handle(value: Any) -> bool:
    """A connected synchronous node (an async node, a pointer or a name is not one)."""
    return callable(getattr(type(value), "call_async", None)) and callable(getattr(type(value), "post", None))


def check_one_network(handles: Sequence[Handle]) -> None:
    """MixedNetworks unless the nodes are all in-process or all networked (before anything is sent).

    In-process nodes link to each other inside this process and have no
    sockets; networked nodes cannot reach into this process.
    """
    local = [h.id for h in handles if h.in_process]
    remote = [h.id for h in handles if not h.in_process]
    if local and remote:
        raise MixedNetworks(
            f"secret sharing cannot mix in-process nodes ({', '.join(local)}) with networked "
            f"nodes ({', '.join(remote)}): they cannot reach each other. Use VirtualNodes only "
            "(one process) or connected nodes only",
            {"in_process": ", ".join(local), "networked": ", ".join(remote)},
        )


@runtime_checkable
class InProcess(Protocol):
    """A handle on an in-process node: where its in-process peers reach it."""

    @property
    def in_process_url(self) -> str: ...


def _address(handle: Handle) -> PartyAddress:
    """The node as the client verified it: id, URL to dial, certificate (or in-process identity)."""
    fingerprint = handle.fingerprint
    if fingerprint is None:
        raise SharingError(
            f"{handle.id}: secret sharing needs TLS connections to every node (an --insecure "
            "node cannot vouch for its certificate)",
            {"node": handle.id},
        )
    if handle.in_process:
        if not isinstance(handle, InProcess):
            raise SharingError(f"{handle.id}: this in-process node cannot be reached by other nodes", {})
        return PartyAddress(handle.id, handle.in_process_url, fingerprint)
    return PartyAddress(handle.id, handle.url, fingerprint)
