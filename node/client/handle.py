"""The client's handle on one node: the API behind ``RemoteNode`` and ``VirtualNode``.

Turns user calls into requests on a :class:`~peer.client.sync_channel.Channel`:
``send`` and ops are posted without waiting (pipelining; the client picks
object ids at random from a 64-bit space so results can be named before the
node answers), while ``get``, ``sync``, ``objects`` and ``describe`` wait
for their reply and first raise any failure of earlier posted requests.
"""

from __future__ import annotations

import collections
import random
import secrets
from typing import Any, Mapping, Sequence, TypeVar

import torch

from protocol.errors import BadRequest
from protocol.ids import NodeId, ObjectId
from protocol.limits import MAX_DELETE_BATCH
from protocol.messages import (
    AckReply,
    CommandRequest,
    DeleteRequest,
    DescribeReply,
    DescribeRequest,
    ErrorReply,
    ExpectRequest,
    GetReply,
    GetRequest,
    ListReply,
    ListRequest,
    ObjectInfo,
    PutRequest,
    ReleaseRequest,
    Reply,
    SyncReply,
    SyncRequest,
    TransferRequest,
)
from protocol.ops import result_count
from protocol.streams import STREAM_THRESHOLD
from protocol.tensors import DTYPE_NAMES
from protocol.transfers import TICKET_BYTES
from protocol.values import PointerRef

from ..errors import MixedNodesError
from peer.client.sync_channel import Channel
from .pointer import Pointer
from .streaming import download, upload_chunks
from peer.client.tracker import rebuild_error

__all__ = ["NodeHandle", "DELETE_BATCH"]

DELETE_BATCH = 256
"""Released objects are deleted in batches of this size (or at the next sync point)."""

R = TypeVar("R", bound=Reply)


_ids = random.Random(secrets.randbits(128))
"""Object ids need to be unique, not secret (the store checks who may see what):
a PRNG seeded from the OS avoids a system call per command."""


def new_object_id() -> ObjectId:
    """A random non-zero 64-bit id; collisions are negligible (birthday bound 2^32)."""
    return ObjectId(_ids.getrandbits(64) or 1)


class NodeHandle:
    """Synchronous client API over one channel to one node."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._released: collections.deque[ObjectId] = collections.deque()

    @property
    def id(self) -> NodeId:
        """The node's id, as it announced itself in the handshake."""
        return self._channel.node_id

    @property
    def fingerprint(self) -> str | None:
        """Fingerprint of the certificate this connection verified (None in-process or without TLS)."""
        fingerprint: str | None = getattr(self._channel, "peer_fingerprint", None)
        return fingerprint

    @property
    def principal(self) -> str:
        """Who this node thinks we are."""
        return self._channel.principal

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"

    # -- posting ---------------------------------------------------------

    def send(self, tensor: torch.Tensor, private: bool = False) -> Pointer:
        """Store ``tensor`` on the node; returns a pointer at once.

        ``private=True`` stores it as a private dataset: every principal on
        the node may compute on it through pointers, nobody but us may read
        it, or anything computed from it, until we release it.
        """
        if isinstance(tensor, Pointer):
            if tensor.node is self:
                return tensor
            raise MixedNodesError.for_nodes("send", tensor.node.id, self.id)
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"send() takes a torch.Tensor, not {type(tensor).__name__}")
        object_id = new_object_id()
        info = _info_of(object_id, tensor, self.principal, private)
        description = f"send({_short(tensor)}{', private=True' if private else ''})"
        if tensor.numel() * tensor.element_size() > STREAM_THRESHOLD and info is not None:
            for chunk in upload_chunks(tensor, object_id, self._channel.tracker.next_id, private):
                self._post(chunk, description)
        else:
            request = PutRequest(self._channel.tracker.next_id(), object_id, tensor.detach(), private)
            self._post(request, description)
        return Pointer(self, object_id, info)

    def pointer(self, object_id: int) -> Pointer:
        """A pointer to an object we can see on the node but did not create here.

        Another principal's private dataset, or an object released to us
        (one round trip: ``describe``).  Dropping it never deletes the
        object unless we own it.
        """
        request = DescribeRequest(self._channel.tracker.next_id(), (ObjectId(object_id),))
        reply = self._call(request, DescribeReply, f"pointer({object_id:#x})")
        info = reply.objects[0]
        return Pointer(self, info.object_id, info, owned=info.owner in ("", self.principal))

    def _command(
        self, op: str, target: Pointer | None, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> Pointer | tuple[Pointer, ...]:
        wire_target = self._wire(op, target) if target is not None else None
        wire_args = tuple(self._wire(op, a) for a in args)
        wire_kwargs = {str(k): self._wire(op, v) for k, v in kwargs.items()}
        count = result_count(op, target is not None, wire_args, wire_kwargs)
        results = tuple(new_object_id() for _ in range(count))
        request = CommandRequest(
            self._channel.tracker.next_id(), op, wire_target, wire_args, wire_kwargs, results
        )
        self._post(request, _describe_command(op, target, args))
        pointers = tuple(Pointer(self, object_id) for object_id in results)
        return pointers[0] if count == 1 else pointers

    def _command_one(
        self, op: str, target: Pointer | None, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> Pointer:
        result = self._command(op, target, args, kwargs)
        assert isinstance(result, Pointer), f"{op} yields one tensor"
        return result

    def _wire(self, op: str, value: Any) -> Any:
        """Convert an argument to the wire grammar, checking pointers are ours."""
        if isinstance(value, Pointer):
            if value.node is not self:
                raise MixedNodesError.for_nodes(op, self.id, value.node.id)
            return PointerRef(self.id, value.object_id)
        if isinstance(value, torch.Size):
            return [int(d) for d in value]
        if isinstance(value, (list, tuple)):
            return [self._wire(op, item) for item in value]
        if isinstance(value, dict):
            return {str(k): self._wire(op, v) for k, v in value.items()}
        if isinstance(value, torch.Tensor):
            return value.detach()
        return value

    def _post(self, request: Any, description: str) -> None:
        if len(self._released) >= DELETE_BATCH:
            self._flush_released()
        self._channel.post(request, description)

    def _release(self, object_id: ObjectId) -> None:
        """Called by ``Pointer.__del__`` (any thread): queue the delete."""
        self._released.append(object_id)

    def _flush_released(self) -> None:
        """Post deletes for released pointers, at most MAX_DELETE_BATCH ids each."""
        while self._released:
            ids: list[ObjectId] = []
            while self._released and len(ids) < MAX_DELETE_BATCH:
                try:
                    ids.append(self._released.popleft())
                except IndexError:  # drained by another thread meanwhile
                    break
            if ids:
                request = DeleteRequest(self._channel.tracker.next_id(), tuple(ids))
                self._channel.post(request, f"delete({len(ids)} objects)")

    # -- node to node --------------------------------------------------------

    def _transfer(self, pointer: Pointer, dest: NodeHandle, delete_source: bool) -> ObjectId:
        """Have this node send ``pointer``'s object straight to ``dest``; the new id there.

        The destination first reserves the id for us and for this node's
        certificate (``expect``); then this node delivers over its own
        pinned link (``transfer``).  Both fingerprints are the ones our own
        TLS connections verified, so neither node can be impersonated.
        """
        source_fp, dest_fp = self.fingerprint, dest.fingerprint
        if source_fp is None or dest_fp is None:
            raise BadRequest(
                "node-to-node transfers need TLS connections to both nodes "
                "(in-process and --insecure nodes cannot vouch for their certificates)",
                {},
            )
        object_id, ticket = new_object_id(), secrets.token_bytes(TICKET_BYTES)
        expect = ExpectRequest(dest._channel.tracker.next_id(), object_id, self.id, source_fp, ticket)
        dest._call(expect, AckReply, f"expect({pointer!r})")
        transfer = TransferRequest(
            self._channel.tracker.next_id(),
            pointer.object_id,
            dest.id,
            dest.url,
            dest_fp,
            object_id,
            ticket,
            delete_source,
        )
        verb = "move" if delete_source else "copy_to"
        self._call(transfer, AckReply, f"{verb}({pointer!r}, {dest.id})")
        return object_id

    @property
    def url(self) -> str:
        """The URL this client dialed (what a peer node should dial too)."""
        endpoint = getattr(self._channel, "endpoint", None)
        if endpoint is None:
            raise BadRequest(f"{self.id} is an in-process node and has no URL", {})
        return str(endpoint.url)

    # -- synchronisation points --------------------------------------------

    def _call_reply(self, request: Any, description: str, flush: bool = True) -> Reply:
        """A synchronisation point: wait, raise earlier failures, then this request's error.

        ``flush`` first sends the deletes of released pointers.  ``get`` and
        ``describe`` skip it (one message less per round trip); deletes then
        go out in batches of DELETE_BATCH, or at the next sync/objects/close.
        """
        if flush:
            self._flush_released()
        reply = self._channel.call(request)
        self._channel.tracker.raise_failures()
        if isinstance(reply, ErrorReply):
            raise rebuild_error(reply, description, self._channel.tracker.peer)
        return reply

    def _call(self, request: Any, expected: type[R], description: str) -> R:
        reply = self._call_reply(request, description)
        if not isinstance(reply, expected):
            raise BadRequest(f"{description}: unexpected {reply.KIND.value} reply", {})
        return reply

    def _get(self, pointer: Pointer, delete: bool) -> torch.Tensor:
        """The value; objects above STREAM_THRESHOLD come back in chunks."""
        description = f"get({pointer!r})"
        request = GetRequest(
            self._channel.tracker.next_id(), pointer.object_id, delete, STREAM_THRESHOLD
        )
        reply = self._call_reply(request, description, flush=False)
        return self._value_of(reply, pointer, delete, description)

    def _value_of(self, reply: Reply, pointer: Pointer, delete: bool, description: str) -> torch.Tensor:
        """A ``get``'s value: in the reply, or streamed when the reply only describes the object."""
        if isinstance(reply, GetReply):
            return reply.value
        if not isinstance(reply, DescribeReply):
            raise BadRequest(f"{description}: unexpected {reply.KIND.value} reply", {})
        value = download(
            self, reply.objects[0], self._channel.call_async, self._channel.tracker.next_id,
            description,
        )
        if delete:
            pointer.delete()
        return value

    def _grant(self, pointer: Pointer, principal: str) -> None:
        """Let ``principal`` read the object, as far as our restriction on it goes."""
        request = ReleaseRequest(self._channel.tracker.next_id(), pointer.object_id, principal)
        self._call(request, AckReply, f"release({pointer!r}, {principal!r})")

    def _describe(self, pointer: Pointer) -> ObjectInfo:
        request = DescribeRequest(self._channel.tracker.next_id(), (pointer.object_id,))
        reply = self._call(request, DescribeReply, f"describe({pointer!r})")
        return reply.objects[0]

    def sync(self) -> None:
        """Wait until the node has processed everything sent so far.

        Raises the first failure among earlier pipelined commands, naming it.
        """
        self._call(SyncRequest(self._channel.tracker.next_id()), SyncReply, "sync")

    def objects(self) -> list[ObjectInfo]:
        """What this client can see on the node; no data moves.

        Its own objects, results derived from its data, objects released to
        it and every principal's private datasets, each with dtype, shape,
        owner, whether we may ``get`` it and whether it is private.  Use
        :meth:`pointer` to compute on one we did not create.
        """
        reply = self._call(ListRequest(self._channel.tracker.next_id()), ListReply, "objects")
        return list(reply.objects)

    def close(self) -> None:
        """Flush pending deletes and close the connection."""
        try:
            self._flush_released()
        finally:
            self._channel.close()

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _info_of(
    object_id: ObjectId, tensor: torch.Tensor, owner: str, private: bool
) -> ObjectInfo | None:
    name = DTYPE_NAMES.get(tensor.dtype)
    if name is None:
        return None
    return ObjectInfo(object_id, name, tuple(tensor.shape), owner, True, private)


def _short(value: Any) -> str:
    if isinstance(value, Pointer):
        return f"<{value.object_id:#x}>"
    if isinstance(value, torch.Tensor):
        return f"tensor{list(value.shape)}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_short(v) for v in value[:4]) + (", ...]" if len(value) > 4 else "]")
    text = repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


def _describe_command(op: str, target: Pointer | None, args: Sequence[Any]) -> str:
    shown = ", ".join(_short(a) for a in args[:4]) + (", ..." if len(args) > 4 else "")
    if target is not None:
        return f"{_short(target)}.{op}({shown})"
    return f"{op}({shown})"
