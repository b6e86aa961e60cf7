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

The checks before the session begins are :mod:`node.server.mpc.step_plan`.
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
from typing import Any, Callable

import torch

from protocol.errors import BadRequest, PeerUnavailable, TesseraError
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
from peer.server.auth import Caller
from node.server.mpc.mailbox import CompareRound, Mailbox, Slot
from node.server.mpc.rounds_driver import run_compare
from node.server.mpc.step_plan import StepPlan, StepPlanner
from node.server.offload import offload
from peer.server.redaction import current, screen
from node.server.store import ObjectStore
from node.server.transfers import TransferService

__all__ = ["PartyRunner"]

log = logging.getLogger("tessera.node.mpc")


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
        self.store = store
        self.mailbox = mailbox
        self.transfers = transfers
        self.clock = clock
        self.planner = StepPlanner(node_id, store, transfers, trusted_providers)

    def plan(self, caller: Caller, request: MpcStepRequest) -> StepPlan:
        """Everything that can be refused before the session starts (:mod:`.step_plan`)."""
        return self.planner.plan(caller, request, self.clock())

    # -- the step, on the loop ---------------------------------------------

    async def run(self, plan: StepPlan) -> None:
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

    async def _compute(self, plan: StepPlan) -> torch.Tensor:
        request = plan.request
        seed: Seed | None = None
        if plan.specs:
            seed = await self._seed(plan)
        if request.op in COMPARE_OPS:
            assert seed is not None
            return await run_compare(
                plan.request, plan.x, seed, plan.material[0], self._explicit_letter,
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

    async def _seed(self, plan: StepPlan) -> Seed:
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

    async def _explicit(self, plan: StepPlan) -> tuple[torch.Tensor, ...]:
        if plan.explicit is not None:
            return plan.explicit
        plan.explicit = await self._explicit_letter(plan, explicit_shapes(plan.material))
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

    async def _beaver(self, plan: StepPlan, seed: Seed, local_bits: int) -> torch.Tensor:
        request, x, y = plan.request, plan.x, plan.y
        assert y is not None
        spec = plan.material[0]
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

    async def _truncate(self, plan: StepPlan, seed: Seed, z: torch.Tensor, index: int) -> torch.Tensor:
        request = plan.request
        spec = plan.material[index]
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

    async def _send(self, plan: StepPlan, round: int, values: tuple[torch.Tensor, ...]) -> None:
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
        self, plan: StepPlan, slot: Slot | CompareRound, width: int
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

    async def _abort(self, plan: StepPlan, reason: str) -> None:
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
