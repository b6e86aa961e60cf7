"""A party's side of a comparison step: drives its route's round protocol over peer links.

A comparison (``drelu``, ``relu``) is a pure sans-I/O generator of its
route (:mod:`node.mpc.compare`, :mod:`node.mpc.rounds`): it yields the
masked values of each round and is resumed with every party's values of
that round, in party order.  This module only moves those values:

1. take the explicit letter when the route deals this party one
   (``spec.explicit_for``), checked against ``spec.explicit_shapes``;
2. build the generator (it validates the share and the material eagerly);
3. for round k: send this party's values as ``mpc_open`` round
   ``COMPARE_ROUND_BASE + k`` to every other party, take each peer's
   round-k letter (same number, shapes and dtypes of tensors as this
   party's, else ``BAD_REQUEST``) and resume the generator with all of them;
4. return the generator's result share.

Every resumption runs on a worker thread (:mod:`node.server.offload`);
sends and waits run on the loop.  The number of rounds is the route's,
fixed by public parameters; more than :data:`protocol.mpc.MAX_COMPARE_ROUNDS`
is a bug of the route, refused.  Must not import websockets.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import torch

from protocol.errors import BadRequest
from protocol.mpc import MAX_COMPARE_ROUNDS, MpcStepRequest

from node.mpc.compare import CompareSpec, route_of
from node.mpc.errors import PartyError
from node.mpc.prg import Seed
from node.mpc.rounds import Opened, Opening, RoundProtocol
from node.server.offload import offload

__all__ = ["run_compare"]

Values = tuple[torch.Tensor, ...]
ExplicitLetter = Callable[[Any, list[tuple[int, ...]]], Awaitable[Values]]
Send = Callable[[int, Values], Awaitable[None]]
Collect = Callable[[int, int], Awaitable[dict[int, Values]]]


async def run_compare(
    request: MpcStepRequest,
    x: torch.Tensor,
    seed: Seed,
    spec: CompareSpec,
    explicit_letter: ExplicitLetter,
    send: Send,
    collect: Collect,
    plan: Any,
) -> torch.Tensor:
    """This party's result share of the comparison step ``request`` on its share ``x``."""
    assert request.route is not None
    party, n = request.party, len(request.parties)
    route = route_of(request.route)
    explicit: Values = ()
    if spec.explicit_for(party, n):
        explicit = await explicit_letter(plan, spec.explicit_shapes(party, n))
    cost = x.numel()
    protocol = await offload(cost, route.party_protocol, spec, party, n, seed, explicit, x)
    opened: Opened | None = None
    for k in range(MAX_COMPARE_ROUNDS + 1):
        step = await offload(cost, _advance, protocol, opened)
        if not isinstance(step, Opening):
            return step
        if k == MAX_COMPARE_ROUNDS:
            protocol.close()
            raise PartyError(
                f"the {request.route.value} comparison asked for more than {MAX_COMPARE_ROUNDS} rounds", {}
            )
        mine = step.values
        await send(k, mine)
        parts = await collect(k, len(mine))
        for j, values in parts.items():
            _check_like(j, k, values, mine)
        opened = [mine if j == party else parts[j] for j in range(n)]
    raise AssertionError("unreachable")  # the loop returns or raises


def _advance(protocol: RoundProtocol, opened: Opened | None) -> Opening | torch.Tensor:
    """The generator's next opening, or its result once it returned."""
    try:
        return next(protocol) if opened is None else protocol.send(opened)
    except StopIteration as stop:
        result = stop.value
        assert isinstance(result, torch.Tensor), "a round protocol returns its result share"
        return result


def _check_like(j: int, k: int, values: Values, mine: Values) -> None:
    """A peer's round-k tensors have the shapes and dtypes of this party's (peer input)."""
    theirs = [(tuple(t.shape), t.dtype) for t in values]
    ours = [(tuple(t.shape), t.dtype) for t in mine]
    if theirs != ours:
        raise BadRequest(
            f"party {j} sent round {k} tensors of shapes {[s for s, _ in theirs]}, "
            f"not {[s for s, _ in ours]}",
            {"party": j, "round": k},
        )
