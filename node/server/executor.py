"""Runs command requests: resolves pointer refs, calls the op table, stores results.

Dispatch goes only through :mod:`node.server.ops` (the allowlist); nothing
here looks a name up on torch.  Pointer refs are resolved against the store
as the asking principal, so a command can only read what that principal may
see.  Must not import asyncio or the transport: the session decides which
thread this runs on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from protocol.errors import BadRequest
from protocol.ids import NodeId
from protocol.messages import CommandRequest
from protocol.ops import result_count
from protocol.values import PointerRef, Value

from .ops import estimated_cost, run_op
from .store import ObjectStore, Principal

__all__ = ["Executor", "PreparedCommand", "INLINE_COST_LIMIT"]

INLINE_COST_LIMIT = 1 << 16
"""Commands touching fewer tensor elements than this run on the event loop.

Handing a tiny op to a worker thread costs more than the op; anything
bigger goes off the loop so one client's matmul never stalls another's
small commands.
"""


class Executor:
    """Executes commands for one node against its store."""

    def __init__(self, node_id: NodeId, store: ObjectStore) -> None:
        self.node_id = node_id
        self.store = store

    def resolve(self, principal: Principal, value: Value) -> Any:
        """Replace pointer refs (at any depth) by the stored tensors they name."""
        if isinstance(value, PointerRef):
            if value.node != self.node_id:
                raise BadRequest(
                    f"pointer names node {value.node!r}, this is {self.node_id!r}",
                    {"node": value.node},
                )
            return self.store.get(principal, value.object_id).value
        if isinstance(value, list):
            return [self.resolve(principal, item) for item in value]
        if isinstance(value, dict):
            return {key: self.resolve(principal, item) for key, item in value.items()}
        return value

    def prepare(self, principal: Principal, request: CommandRequest) -> PreparedCommand:
        """Resolve inputs and check the result count; cheap, runs on the event loop."""
        target = self.resolve(principal, request.target) if request.target is not None else None
        args: list[Any] = self.resolve(principal, list(request.args))
        kwargs: dict[str, Any] = self.resolve(principal, dict(request.kwargs))
        expected = result_count(request.op, target is not None, request.args, request.kwargs)
        if expected != len(request.results):
            raise BadRequest(
                f"{request.op} produces {expected} tensor(s), "
                f"{len(request.results)} result id(s) given",
                {"expected": expected, "given": len(request.results)},
            )
        cost = estimated_cost(target, [*args, *kwargs.values()])
        return PreparedCommand(principal, request, target, args, kwargs, cost)

    def run(self, prepared: PreparedCommand) -> None:
        """Run a prepared command and store its results under the client-chosen ids."""
        request = prepared.request
        outputs = run_op(request.op, prepared.target, prepared.args, prepared.kwargs)
        for object_id, tensor in zip(request.results, outputs):
            self.store.put(prepared.principal, object_id, tensor)


@dataclass(frozen=True, slots=True)
class PreparedCommand:
    """A command with its inputs resolved, ready to run on any thread."""

    principal: Principal
    request: CommandRequest
    target: torch.Tensor | None
    args: list[Any]
    kwargs: dict[str, Any]
    cost: int

    @property
    def heavy(self) -> bool:
        return self.cost >= INLINE_COST_LIMIT
