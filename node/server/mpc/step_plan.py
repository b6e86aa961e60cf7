"""The checks of one ``mpc_step`` before it starts, and the plan they yield.

Runs on the node's event loop, on the request alone: everything that can be
refused (this node is not the named party, operands that are not shares,
fields that do not fit the op, shapes the material cannot serve, a crypto
provider the operator does not trust with restricted shares, quota, a
result id in use) is refused here, before the session begins, so no other
party waits on a step this one would never run.  The run itself, which
sends and waits, is :class:`~node.server.mpc.party.PartyRunner`.
Must not import websockets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from protocol.errors import BadRequest, PermissionDenied
from protocol.ids import NodeId
from protocol.mpc import COMPARE_OPS, MpcStepRequest, StepOp, TruncationScheme, WireSpec

from node.mpc.material import TripleSpec
from node.mpc.ring import RING_DTYPE
from peer.server.auth import Caller
from node.server.mpc.mailbox import Sender
from node.server.mpc.specs import check_parties, material_specs, step_wire_specs
from node.server.policy import Policy, combine
from node.server.store import ObjectStore
from node.server.transfers import TransferService

__all__ = ["StepPlan", "StepPlanner"]


@dataclass
class StepPlan:
    """One ``mpc_step`` as checked, with everything the run needs: operands, peers, deadline, result policy."""

    request: MpcStepRequest
    caller: Caller
    x: torch.Tensor
    y: torch.Tensor | None
    specs: tuple[WireSpec, ...]
    material: tuple[Any, ...]
    """``specs`` in the core's form (:func:`~node.server.mpc.specs.material_specs`), built once here."""
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


class StepPlanner:
    """Checks ``mpc_step`` requests for this node as a computing party and plans them."""

    def __init__(
        self,
        node_id: NodeId,
        store: ObjectStore,
        transfers: TransferService,
        trusted_providers: frozenset[str] = frozenset(),
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.transfers = transfers
        self.trusted_providers = trusted_providers
        """Fingerprints of the crypto providers the operator trusts with restricted shares."""

    def plan(self, caller: Caller, request: MpcStepRequest, now: float) -> StepPlan:
        """Everything that can be refused before the session starts; the step's deadline counts from ``now``.

        ``now`` is read from the party runner's clock, the one its waits use.
        """
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
        deadline = now + request.timeout
        return StepPlan(request, caller, x_obj.value, y, specs, tuple(material), peers, deadline, policy)

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


def _check_compare_fields(request: MpcStepRequest) -> None:
    """``width`` and ``route`` are set exactly for comparison steps, and ``conv`` never is."""
    if request.op in COMPARE_OPS:
        if request.width == 0 or request.route is None:
            raise BadRequest(
                f"a {request.op.value} step needs a width (2 to 64) and a route ('fss' or 'a2b')", {}
            )
    elif request.width or request.route is not None:
        raise BadRequest(f"width and route are for drelu and relu steps, not {request.op.value}", {})
