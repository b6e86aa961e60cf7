"""Runs command requests: resolves pointer refs, calls the op table, stores results.

Dispatch goes only through :mod:`node.server.ops` (the allowlist); nothing
here looks a name up on torch.  Pointer refs are resolved against the store
as the asking principal, so a command can only use what that principal may
see.  Each result gets the combined policy of every object the command used
plus the caller's own (:func:`~node.server.policy.combine`), so it is never
more readable than its inputs.  A command using data the caller may not read
is *restricted*: value-sensitive uses are refused, its shapes are checked
without data (:mod:`node.server.disclosure`), and its failures are
redacted where every request's are (:mod:`peer.server.redaction`).
Result sizes are checked against the caller's quota before anything is
allocated (:mod:`node.server.sizing`), and what a command's autograd
history saves is charged to it while the history keeps it
(:mod:`node.server.history`).  Must not import asyncio or the
transport: the session decides which thread this runs on.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from protocol.errors import BadRequest, OpFailed, QuotaExceeded
from protocol.ids import NodeId
from protocol.messages import CommandRequest
from protocol.ops import result_count
from protocol.values import PointerRef, Value

from .disclosure import check_disclosure, tensors_in
from .history import HistoryCharges
from .offload import runs_inline
from .ops import estimated_cost, run_op
from .policy import Policy, combine
from .sizing import Spec, bytes_bound, meta_specs, spec_bytes
from .store import Hold, ObjectStore, Principal, Reservation, StoredObject

__all__ = ["Executor", "PreparedCommand"]

_NONE_HIDDEN: frozenset[int] = frozenset()


class Executor:
    """Executes commands for one node against its store."""

    def __init__(self, node_id: NodeId, store: ObjectStore) -> None:
        self.node_id = node_id
        self.store = store
        self.history = HistoryCharges(store)

    def resolve(self, principal: Principal, value: Value, used: list[StoredObject] | None = None) -> Any:
        """Replace pointer refs (at any depth) by the stored tensors they name.

        Every object resolved is appended to ``used``.
        """
        if isinstance(value, PointerRef):
            if value.node != self.node_id:
                raise BadRequest(
                    f"pointer names node {value.node!r}, this is {self.node_id!r}",
                    {"node": value.node},
                )
            stored = self.store.get(principal, value.object_id)
            if used is not None:
                used.append(stored)
            return stored.value
        if isinstance(value, list):
            return [self.resolve(principal, item, used) for item in value]
        if isinstance(value, dict):
            return {key: self.resolve(principal, item, used) for key, item in value.items()}
        return value

    def prepare(self, principal: Principal, request: CommandRequest) -> PreparedCommand:
        """Resolve inputs, check the result count and disclosure rules; cheap, runs on the loop."""
        used: list[StoredObject] = []
        target = self.resolve(principal, request.target, used) if request.target is not None else None
        args: list[Any] = self.resolve(principal, list(request.args), used)
        kwargs: dict[str, Any] = self.resolve(principal, dict(request.kwargs), used)
        expected = result_count(request.op, target is not None, request.args, request.kwargs)
        if expected != len(request.results):
            raise BadRequest(
                f"{request.op} produces {expected} tensor(s), "
                f"{len(request.results)} result id(s) given",
                {"expected": expected, "given": len(request.results)},
            )
        hidden = _NONE_HIDDEN
        policies = [Policy.own(principal)]
        restricted = autograd = False
        for stored in used:  # a plain loop: this runs for every command
            policies.append(stored.policy)
            if not restricted and not stored.policy.can_read(principal):
                restricted = True
            if stored.value.requires_grad:
                autograd = True
        if restricted:
            hidden = frozenset(id(s.value) for s in used if not s.readable_by(principal))
            call_args = args if target is None else [target, *args]
            check_disclosure(request.op, call_args, kwargs, hidden)
        policy = combine(policies)
        cost = estimated_cost(target, [*args, *kwargs.values()])
        return PreparedCommand(principal, request, target, args, kwargs, cost, policy, hidden, autograd)

    def run(self, prepared: PreparedCommand) -> None:
        """Check (heavy commands: reserve) the results' size in the quota, run the command, store its results.

        A heavy command's reservation holds while the op allocates in its
        worker thread, so commands running at once on several connections of
        one principal cannot together allocate past its quota before their
        results are stored.  A light one runs on the loop, alone: a check
        is enough (and cheaper).
        """
        request = prepared.request
        specs, held = self._plan(prepared)
        with held if held is not None else contextlib.nullcontext():
            # A failure of a restricted command is screened by the session's one
            # redaction point (peer.server.redaction): the store marked it exposed.
            with self.history.charging(prepared.principal) if prepared.autograd else contextlib.nullcontext():
                outputs = run_op(request.op, prepared.target, prepared.args, prepared.kwargs)
            if specs is not None and prepared.hidden:
                if [(t.shape, t.dtype) for t in outputs] != specs:
                    raise OpFailed(f"op {request.op!r} gave results of other shapes than predicted", {})
            for object_id, tensor in zip(request.results, outputs):
                self.store.put(prepared.principal, object_id, tensor, prepared.policy, held)

    def _plan(self, prepared: PreparedCommand) -> tuple[list[Spec] | None, Reservation | None]:
        """Check or reserve the results' size, or refuse (QuotaExceeded), before allocating;
        the meta-run shapes when one was needed.

        The cheap bound decides alone when it fits the quota.  Otherwise, and
        for restricted commands where a hidden one-element tensor could stand
        for a size, the op first runs on meta tensors.
        """
        request, principal = prepared.request, prepared.principal
        count = len(request.results)
        if not prepared.needs_meta:
            call_args = prepared.args if prepared.target is None else [prepared.target, *prepared.args]
            bound = bytes_bound(request.op, call_args, prepared.kwargs, count)
            if bound is not None:
                try:
                    return None, self._hold(prepared, bound)
                except QuotaExceeded:
                    pass  # the bound is loose: measure exactly
        specs = meta_specs(request.op, prepared.target, prepared.args, prepared.kwargs)
        return specs, self._hold(prepared, spec_bytes(specs))

    def _hold(self, prepared: PreparedCommand, nbytes: int) -> Reservation | None:
        count = len(prepared.request.results)
        if prepared.heavy:
            return self.store.reserve(prepared.principal, Hold.COMMAND, nbytes, count)
        self.store.check_quota(prepared.principal, nbytes, count)
        return None


@dataclass(frozen=True, slots=True)
class PreparedCommand:
    """A command with its inputs resolved, ready to run on any thread."""

    principal: Principal
    request: CommandRequest
    target: torch.Tensor | None
    args: list[Any]
    kwargs: dict[str, Any]
    cost: int
    policy: Policy
    """The policy its results get."""
    hidden: frozenset[int] = frozenset()
    """``id`` of every input tensor the caller may not read (restricted when non-empty)."""
    autograd: bool = False
    """An input requires grad: what its history saves is charged (:mod:`node.server.history`)."""

    @property
    def heavy(self) -> bool:
        """Runs in a worker thread (:mod:`node.server.offload`), not on the event loop."""
        return not runs_inline(self.cost)

    @property
    def needs_meta(self) -> bool:
        """A hidden one-element tensor could be used as a number: check shapes without data."""
        if not self.hidden:
            return False
        inputs = (self.target, self.args, self.kwargs)
        return any(id(t) in self.hidden and t.numel() == 1 for t in tensors_in(inputs))
