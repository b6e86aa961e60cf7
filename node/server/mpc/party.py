"""A party's side of one ``mpc_step``: Beaver product and truncation over peer links.

For party i of n, on its shares [x]_i and [y]_i.  Every computation is a
step of :mod:`node.mpc.beaver` or :mod:`node.mpc.truncation`, on material
expanded by :mod:`node.mpc.material`; this module only sends, waits and
calls them:

1. wait for the crypto provider's seed letter (from the provider the
   client named) and expand a_i, b_i from it (``expand_triple_masks``);
2. send (eps_i, delta_i) = (x_i - a_i, y_i - b_i) (``beaver.mask``) to
   every other party as ``mpc_open`` over this node's pinned node-to-node
   links: the client never sees them;
3. take every other party's masks (each only from the node and certificate
   the client named for that index), and c_i (``expand_triple_product``,
   or for the last party the crypto provider's explicit letter); open eps
   and delta (``beaver.open_masked``) and finish z_i (``beaver.finish``);
4. truncate: SecureML locally (``truncate_local``: 2 parties, no round),
   or the dealer scheme (``truncation_mask``, one more opening of
   c_i = z_i + r_i with ``open_truncation``, ``truncation_finish``);
5. store z_i under the client's result id with the combined policy of x, y
   and the caller.

Any failure after the session began is sent to the other parties as an
abort, so they fail at once instead of waiting for their deadline.  Heavy
tensor work runs on worker threads (:mod:`node.server.offload`); waits and
sends on the event loop.
Must not import websockets.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from protocol.errors import BadRequest, PeerUnavailable, PermissionDenied, TesseraError
from protocol.ids import NodeId
from protocol.mpc import (
    COMPARE_OPS,
    MpcMaterialRequest,
    MpcOpenRequest,
    MpcStepRequest,
    COMPARE_ROUND_BASE,
    OpenRound,
    StepOp,
    TruncationScheme,
    WireSpec,
)

from node.mpc import (
    Masked,
    MaterialError,
    TripleShares,
    TruncationShares,
    expand_triple_masks,
    expand_triple_product,
    expand_truncation,
    finish,
    mask,
    open_masked,
    open_truncation,
    truncate_local,
    truncation_finish,
    truncation_mask,
)
from node.mpc.material import TripleSpec, TruncationSpec, explicit_shapes
from node.mpc.prg import Seed, check_seed
from node.mpc.ring import RING_DTYPE
from peer.server.auth import Caller
from node.server.mpc.mailbox import CompareRound, Mailbox, Sender, Slot
from node.server.mpc.rounds_driver import run_compare
from node.server.mpc.specs import check_parties, material_specs, step_wire_specs
from node.server.offload import offload
from node.server.policy import Policy, combine
from peer.server.redaction import current, screen
from node.server.store import ObjectStore
from node.server.transfers import TransferService

__all__ = ["PartyRunner"]

log = logging.getLogger("tessera.node.mpc")


@dataclass
class _Plan:
    request: MpcStepRequest
    caller: Caller
    x: torch.Tensor
    y: torch.Tensor | None
    specs: tuple[WireSpec, ...]
    peers: dict[int, Sender]
    deadline: float
    policy: Policy
    explicit: tuple[torch.Tensor, ...] | None = None
    """The last party's explicit material, once taken."""

    @property
    def n(self) -> int:
        return len(self.request.parties)

    @property
    def last(self) -> bool:
        return self.request.party == self.n - 1


class PartyRunner:
    """Runs ``mpc_step`` requests for this node as a computing party."""

    def __init__(
        self,
        node_id: NodeId,
        store: ObjectStore,
        mailbox: Mailbox,
        transfers: TransferService,
        trusted_providers: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.mailbox = mailbox
        self.transfers = transfers
        self.trusted_providers = trusted_providers
        """Fingerprints of the crypto providers the operator trusts with restricted shares."""
        self.clock = clock

    # -- checks, on the loop, before anything happens ---------------------

    def plan(self, caller: Caller, request: MpcStepRequest) -> _Plan:
        """Everything that can be refused before the session starts."""
        parties, i = request.parties, request.party
        n = len(parties)
        if not i < n or not self.transfers.is_self(parties[i].fingerprint):
            raise BadRequest(
                f"party {i} of this step is not this node ({self.node_id} with its own certificate)", {}
            )
        self.transfers.check_recipients(parties, "parties of a step")
        _check_compare_fields(request)
        if request.op is StepOp.TRUNCATE:
            if request.y is not None or request.bits == 0:
                raise BadRequest("a truncate step takes x alone and bits > 0", {})
        elif request.op in COMPARE_OPS:
            if request.y is not None or request.bits:
                raise BadRequest(f"a {request.op.value} step takes x alone and bits 0", {})
        elif request.y is None:
            raise BadRequest(f"a {request.op.value} step needs y", {})
        if request.conv is not None and request.op is not StepOp.CONV2D:
            raise BadRequest(f"conv parameters given for a {request.op.value} step", {})
        if request.bits and request.truncation is TruncationScheme.LOCAL and n != 2:
            raise BadRequest(
                f"local truncation works for exactly 2 parties, not {n}: use the dealer scheme", {}
            )
        x_obj = self.store.get(caller.principal, request.x)
        used = [x_obj]
        if request.y is not None:
            used.append(self.store.get(caller.principal, request.y))
        for obj in used:
            if obj.value.dtype != RING_DTYPE:
                raise BadRequest(
                    f"object {obj.object_id:#x} is not a share: dtype {obj.value.dtype}, not int64", {}
                )
        y = used[1].value if len(used) > 1 else None
        specs = step_wire_specs(request, tuple(x_obj.value.shape), None if y is None else tuple(y.shape))
        check_parties(specs, n)  # route fss: exactly 2 parties
        material = material_specs(specs)  # MaterialError for shapes that do not fit
        if specs and request.dealer is None:
            raise BadRequest("this step needs material: name the crypto provider (dealer)", {})
        if specs and any(not obj.readable_by(caller.principal) for obj in used):
            self._check_provider(request)
        first = material[0] if material else None
        out_shape = first.z_shape if isinstance(first, TripleSpec) else tuple(x_obj.value.shape)
        self.store.check_quota(caller.principal, 8 * math.prod(out_shape))
        if self.store.exists(request.result):
            raise BadRequest(f"result id {request.result:#x} is already in use", {})
        peers = {j: (p.node, p.fingerprint) for j, p in enumerate(parties) if j != i}
        policy = combine([*(obj.policy for obj in used), Policy.own(caller.principal)])
        deadline = self.clock() + request.timeout
        return _Plan(request, caller, x_obj.value, y, specs, peers, deadline, policy)

    def _check_provider(self, request: MpcStepRequest) -> None:
        """PermissionDenied unless the operator trusts this step's provider with restricted shares.

        This party sends its share masked by the provider's material to the
        other parties; a provider that colludes with one of them (or a
        network member playing both roles) unmasks it, and with that party's
        own share has the value.  For shares of data the client may read,
        the client chose whom to trust; for data it may not read (another
        principal's private tensor, an operator dataset), the operator does.
        """
        assert request.dealer is not None
        fingerprint = request.dealer.fingerprint
        if self.transfers.is_self(fingerprint) or fingerprint in self.trusted_providers:
            return
        raise PermissionDenied(
            f"this step uses shares of data you may not read: {self.node_id} computes on them "
            f"only with a crypto provider its operator trusts (--trust-crypto-provider), "
            f"and {request.dealer.node!r} is not one",
            {"node": request.dealer.node},
        )

    # -- the step, on the loop ---------------------------------------------

    async def run(self, plan: _Plan) -> None:
        """Run the step; on failure tell the other parties, then re-raise."""
        request = plan.request
        self.mailbox.begin(request.session, plan.caller.principal, plan.peers)
        try:
            z = await self._compute(plan)
            self.store.put(plan.caller.principal, request.result, z, plan.policy)
        except TesseraError as exc:
            # The reason goes to other nodes: screened like any reply.
            await self._abort(plan, screen("mpc_step", exc, current()).message)
            raise
        except asyncio.CancelledError:
            await self._abort(plan, "the party stopped")
            raise
        finally:
            self.mailbox.end(request.session)

    async def _compute(self, plan: _Plan) -> torch.Tensor:
        request = plan.request
        seed: Seed | None = None
        if plan.specs:
            seed = await self._seed(plan)
        if request.op in COMPARE_OPS:
            assert seed is not None
            return await run_compare(
                plan.request, plan.x, seed, material_specs(plan.specs)[0], self._explicit_letter,
                lambda k, values: self._send(plan, COMPARE_ROUND_BASE + k, values),
                lambda k, width: self._collect(plan, CompareRound(k), width),
                plan,
            )
        z = plan.x
        spec_index = 0
        local = request.truncation is TruncationScheme.LOCAL
        if request.op is not StepOp.TRUNCATE:
            assert seed is not None and plan.y is not None
            # Local truncation runs in the same worker call as the product.
            z = await self._beaver(plan, seed, request.bits if local else 0)
            if local:
                return z
            spec_index = 1
        if request.bits:
            if local:
                z = await offload(z.numel(), truncate_local, z, request.party, 2, request.bits)
            else:
                assert seed is not None
                z = await self._truncate(plan, seed, z, spec_index)
        return z

    async def _seed(self, plan: _Plan) -> Seed:
        request = plan.request
        assert request.dealer is not None
        dealer = (request.dealer.node, request.dealer.fingerprint)
        letter = await self.mailbox.take(
            (request.session, Slot.SEED, 0), dealer, plan.deadline, "material"
        )
        assert isinstance(letter, MpcMaterialRequest)
        if (letter.party, letter.n_parties) != (request.party, plan.n) or letter.specs != plan.specs:
            raise MaterialError(
                "the crypto provider dealt material for another step than this one", {}
            )
        assert letter.seed is not None
        return check_seed(letter.seed)  # peer input: a SeedError before anything is expanded

    async def _explicit(self, plan: _Plan) -> tuple[torch.Tensor, ...]:
        if plan.explicit is not None:
            return plan.explicit
        plan.explicit = await self._explicit_letter(plan, explicit_shapes(material_specs(plan.specs)))
        return plan.explicit

    async def _explicit_letter(self, plan: Any, shapes: list[tuple[int, ...]]) -> tuple[torch.Tensor, ...]:
        """The crypto provider's explicit letter to this party, checked against the step and ``shapes``."""
        request = plan.request
        assert request.dealer is not None
        dealer = (request.dealer.node, request.dealer.fingerprint)
        letter = await self.mailbox.take(
            (request.session, Slot.EXPLICIT, 0), dealer, plan.deadline, "material"
        )
        assert isinstance(letter, MpcMaterialRequest)
        got = [tuple(t.shape) for t in letter.explicit]
        if (letter.party, letter.n_parties) != (request.party, plan.n) or letter.specs != plan.specs or got != shapes:
            raise MaterialError("the crypto provider's explicit material does not fit this step", {})
        return letter.explicit

    async def _beaver(self, plan: _Plan, seed: Seed, local_bits: int) -> torch.Tensor:
        request, x, y = plan.request, plan.x, plan.y
        assert y is not None
        spec = material_specs(plan.specs[:1])[0]
        assert isinstance(spec, TripleSpec)
        # The last party's c comes from the provider after the seed: taken while this party masks.
        explicit = asyncio.ensure_future(self._explicit(plan)) if plan.last else None
        try:
            def masks() -> tuple[torch.Tensor, torch.Tensor, Masked]:
                a, b = expand_triple_masks(seed, spec, 0)
                return a, b, mask(x, y, a, b)

            a, b, mine = await offload(x.numel() + y.numel(), masks)
            await self._send(plan, OpenRound.BEAVER, (mine.epsilon, mine.delta))
            parts = await self._collect(plan, Slot.OPEN_BEAVER, 2)
            if explicit is not None:
                c = (await explicit)[0]
            else:
                c = None

            def product() -> torch.Tensor:
                own = c if c is not None else expand_triple_product(seed, spec, 0)
                ordered = _in_order(parts, request.party, (mine.epsilon, mine.delta))
                opened = open_masked([Masked(*v) for v in ordered], spec)
                z = finish(spec, opened, TripleShares(a, b, own), request.party, plan.n)
                return truncate_local(z, request.party, 2, local_bits) if local_bits else z

            return await offload(math.prod(spec.z_shape) + x.numel() + y.numel(), product)
        finally:
            if explicit is not None and not explicit.done():
                explicit.cancel()

    async def _truncate(self, plan: _Plan, seed: Seed, z: torch.Tensor, index: int) -> torch.Tensor:
        request = plan.request
        spec = material_specs(plan.specs[index : index + 1])[0]
        assert isinstance(spec, TruncationSpec)
        explicit = None
        if plan.last:
            top, low = (await self._explicit(plan))[-2:]
            explicit = (top, low)

        def masks() -> tuple[TruncationShares, torch.Tensor]:
            shares = expand_truncation(seed, spec, index, explicit)
            return shares, truncation_mask(z, request.party, shares)

        shares, masked = await offload(3 * z.numel(), masks)
        await self._send(plan, OpenRound.TRUNCATION, (masked,))
        parts = await self._collect(plan, Slot.OPEN_TRUNCATION, 1)

        def finish_truncation() -> torch.Tensor:
            ordered = [v[0] for v in _in_order(parts, request.party, (masked,))]
            opened = open_truncation(ordered, spec.shape)
            return truncation_finish(opened, request.party, plan.n, shares, spec.bits)

        return await offload(3 * z.numel(), finish_truncation)

    # -- peers ---------------------------------------------------------------

    async def _send(self, plan: _Plan, round: int, values: tuple[torch.Tensor, ...]) -> None:
        """Post this party's masked values to every other party (not awaited: peers answer only errors)."""
        request = plan.request
        for j, peer in enumerate(request.parties):
            if j == request.party:
                continue
            link = self.transfers.pooled(peer.url, peer.fingerprint)
            try:
                if link is None:
                    link = await asyncio.wait_for(
                        self.transfers.link(peer.url, peer.fingerprint),
                        max(0.0, plan.deadline - self.clock()),
                    )
            except Exception as exc:
                log.info("cannot reach party %d (%s): %s", j, peer.node, exc)
                raise _unreachable(j, peer.node) from None
            _forget_failures(link)
            link.post(
                lambda rid: MpcOpenRequest(rid, request.session, request.party, round, values),
                f"mpc_open to {peer.node}",
            )

    async def _collect(
        self, plan: _Plan, slot: Slot | CompareRound, width: int
    ) -> dict[int, tuple[torch.Tensor, ...]]:
        request = plan.request
        takes = [
            self.mailbox.take((request.session, slot, j), sender, plan.deadline, "masked values")
            for j, sender in plan.peers.items()
        ]
        # One peer (two parties): awaited directly, without gather's task.
        letters = [await takes[0]] if len(takes) == 1 else await asyncio.gather(*takes)
        parts: dict[int, tuple[torch.Tensor, ...]] = {}
        for j, letter in zip(plan.peers, letters):
            assert isinstance(letter, MpcOpenRequest)
            if len(letter.values) != width:
                raise BadRequest(f"party {j} sent {len(letter.values)} masked tensors, not {width}", {})
            parts[j] = letter.values
        return parts

    async def _abort(self, plan: _Plan, reason: str) -> None:
        """Best effort: tell every reachable peer this party gave up."""
        request = plan.request
        for j, peer in enumerate(request.parties):
            if j == request.party:
                continue
            try:
                link = await asyncio.wait_for(self.transfers.link(peer.url, peer.fingerprint), 5.0)
                link.post(
                    lambda rid: MpcOpenRequest(
                        rid, request.session, request.party, OpenRound.BEAVER, (), reason[:500]
                    ),
                    f"mpc_open abort to {peer.node}",
                )
            except Exception as exc:  # the peer will reach its own deadline
                log.info("could not tell party %d (%s) about the abort: %s", j, peer.node, exc)


def _check_compare_fields(request: MpcStepRequest) -> None:
    """``width`` and ``route`` are set exactly for comparison steps, and ``conv`` never is."""
    if request.op in COMPARE_OPS:
        if request.width == 0 or request.route is None:
            raise BadRequest(
                f"a {request.op.value} step needs a width (2 to 64) and a route ('fss' or 'a2b')", {}
            )
    elif request.width or request.route is not None:
        raise BadRequest(f"width and route are for drelu and relu steps, not {request.op.value}", {})


def _in_order(
    parts: dict[int, tuple[torch.Tensor, ...]], own: int, mine: tuple[torch.Tensor, ...]
) -> list[tuple[torch.Tensor, ...]]:
    """Every party's masked values in party order, this party's own included."""
    return [mine if j == own else parts[j] for j in range(len(parts) + 1)]


def _unreachable(index: int, node: NodeId) -> TesseraError:
    return PeerUnavailable(
        f"cannot reach party {index} ({node}): unreachable, not in this node's network, "
        "or it did not present the expected certificate",
        {"node": node, "party": index},
    )


def _forget_failures(link: Any) -> None:
    """Errors peers answer to posted openings are logged, not kept forever."""
    failure = link.take_failure()
    if failure is not None:
        log.info("a peer refused an earlier opening: %s", failure)
