"""The pipelined half of a client handle: sends, commands and deletes, posted without waiting.

Shared by composition between the synchronous handle
(:class:`~node.client.handle.NodeHandle`) and the asyncio one
(:class:`~node.client.aio.AsyncRemoteNode`): posting is the same on both
(the channel's ``post`` never waits), only their synchronisation points
differ.  A :class:`Pipeline` picks object ids (so ``c = a + b`` names ``c``
before the node answers), puts arguments in their wire form, refuses
pointers of another node (:class:`~node.errors.MixedNodesError`) and
batches the deletes of dropped pointers.  No I/O of its own: it posts
through the callable its handle gives it.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Generic, Mapping, Sequence, TypeVar

import torch

from protocol.ids import ObjectId
from protocol.limits import MAX_DELETE_BATCH
from protocol.messages import CommandRequest, DeleteRequest, ObjectInfo
from protocol.ops import result_count
from protocol.tensors import DTYPE_NAMES
from protocol.values import PointerRef

from peer.client.core import Build

from ..errors import MixedNodesError
from .host import Host
from .ids import new_object_id
from .pointer import BasePointer
from .streaming import upload

__all__ = ["Pipeline", "DELETE_BATCH"]

DELETE_BATCH = 256
"""Released objects are deleted in batches of this size (or at the next sync point)."""

P = TypeVar("P", bound=BasePointer)

Post = Callable[[Build, str], None]
MakePointer = Callable[[ObjectId, "ObjectInfo | None", bool], P]


class Pipeline(Generic[P]):
    """Posting for one handle (``host``), whose pointers are ``P``\\ s."""

    def __init__(self, host: Host, post: Post, kind: type[P], make: MakePointer[P]) -> None:
        self._host = host
        self._post = post
        self._kind = kind
        self._make = make
        self._dropped: collections.deque[ObjectId] = collections.deque()

    def send(self, tensor: object, private: bool) -> P:
        """Post ``tensor`` (in chunks when large); a pointer to it at once."""
        if isinstance(tensor, BasePointer):
            if tensor.node is self._host and isinstance(tensor, self._kind):
                return tensor
            raise MixedNodesError.for_nodes("send", tensor.node.id, self._host.id)
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"send() takes a torch.Tensor, not {type(tensor).__name__}")
        object_id = new_object_id()
        description = f"send({_short(tensor)}{', private=True' if private else ''})"
        for build in upload(tensor, object_id, private):
            self.post(build, description)
        return self._make(object_id, _info_of(object_id, tensor, self._host.principal, private), True)

    def adopt(self, info: ObjectInfo) -> P:
        """A pointer to an object described by the node; dropping it frees only what we own."""
        return self._make(info.object_id, info, info.owner in ("", self._host.principal))

    def command(
        self, op: str, target: BasePointer | None, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> P | tuple[P, ...]:
        """Post op ``op``; pointers to its results, named here."""
        wire_target = self._wire(op, target) if target is not None else None
        wire_args = tuple(self._wire(op, a) for a in args)
        wire_kwargs = {str(k): self._wire(op, v) for k, v in kwargs.items()}
        count = result_count(op, target is not None, wire_args, wire_kwargs)
        results = tuple(new_object_id() for _ in range(count))
        self.post(
            lambda rid: CommandRequest(rid, op, wire_target, wire_args, wire_kwargs, results),
            _describe_command(op, target, args),
        )
        pointers = tuple(self._make(object_id, None, True) for object_id in results)
        return pointers[0] if count == 1 else pointers

    def command_one(
        self, op: str, target: BasePointer | None, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> P:
        result = self.command(op, target, args, kwargs)
        assert not isinstance(result, tuple), f"{op} yields one tensor"
        return result

    def _wire(self, op: str, value: Any) -> Any:
        """Convert an argument to the wire grammar, checking pointers are ours."""
        if isinstance(value, BasePointer):
            if value.node is not self._host:
                raise MixedNodesError.for_nodes(op, self._host.id, value.node.id)
            return PointerRef(self._host.id, value.object_id)
        if isinstance(value, torch.Size):
            return [int(d) for d in value]
        if isinstance(value, (list, tuple)):
            return [self._wire(op, item) for item in value]
        if isinstance(value, dict):
            return {str(k): self._wire(op, v) for k, v in value.items()}
        if isinstance(value, torch.Tensor):
            return value.detach()
        return value

    def post(self, build: Build, description: str) -> None:
        """Post, first flushing the deletes of dropped pointers when a batch is due."""
        if len(self._dropped) >= DELETE_BATCH:
            self.flush_drops()
        self._post(build, description)

    def drop(self, object_id: ObjectId) -> None:
        """Called by a pointer's ``__del__`` (any thread): queue the delete."""
        self._dropped.append(object_id)

    def flush_drops(self) -> None:
        """Post deletes for dropped pointers, at most MAX_DELETE_BATCH ids each."""
        while self._dropped:
            ids: list[ObjectId] = []
            while self._dropped and len(ids) < MAX_DELETE_BATCH:
                try:
                    ids.append(self._dropped.popleft())
                except IndexError:  # drained by another thread meanwhile
                    break
            if ids:
                batch = tuple(ids)
                self._post(lambda rid: DeleteRequest(rid, batch), f"delete({len(batch)} objects)")


def _info_of(object_id: ObjectId, tensor: torch.Tensor, owner: str, private: bool) -> ObjectInfo | None:
    name = DTYPE_NAMES.get(tensor.dtype)
    if name is None:
        return None
    return ObjectInfo(object_id, name, tuple(tensor.shape), owner, True, private)


def _short(value: Any) -> str:
    if isinstance(value, BasePointer):
        return f"<{value.object_id:#x}>"
    if isinstance(value, torch.Tensor):
        return f"tensor{list(value.shape)}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_short(v) for v in value[:4]) + (", ...]" if len(value) > 4 else "]")
    text = repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


def _describe_command(op: str, target: BasePointer | None, args: Sequence[Any]) -> str:
    shown = ", ".join(_short(a) for a in args[:4]) + (", ..." if len(args) > 4 else "")
    if target is not None:
        return f"{_short(target)}.{op}({shown})"
    return f"{op}({shown})"
