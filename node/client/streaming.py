"""What a ``send`` and a ``get`` become on the wire, written once for both client handles.

Pure helpers, no I/O: the synchronous handle (:mod:`node.client.handle`)
and the asyncio one (:mod:`node.client.aio`) differ only in how they wait
for a reply, so everything else about moving a tensor lives here.

Above :data:`~protocol.streams.STREAM_THRESHOLD` bytes a tensor never
travels as one message.  Uploads post ``put_chunk`` messages whose payloads
are views of the caller's tensor (no copy; the channel's writer applies
backpressure).  A ``get`` of a large object is answered with its
description only; :class:`Download` then allocates the result once and
keeps :data:`~protocol.streams.READ_WINDOW` ``read`` requests in flight,
copying each answer into place as it arrives.  So each side holds the
tensor once, plus a few chunks.
"""

from __future__ import annotations

import collections
from typing import Callable, Generic, TypeVar

import torch

from protocol.errors import BadRequest
from protocol.ids import ObjectId
from protocol.messages import DescribeReply, ErrorReply, GetReply, GetRequest, ObjectInfo, PutRequest, Reply
from protocol.streams import CHUNK_BYTES, READ_WINDOW, STREAM_THRESHOLD, PutChunkRequest, ReadReply, ReadRequest
from protocol.tensors import DTYPE_NAMES, DTYPES

from peer.client.core import Build
from peer.client.tracker import rebuild_error

__all__ = ["upload", "get_request", "get_reply_type", "fetched", "Download", "raw_bytes"]

F = TypeVar("F")


def raw_bytes(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU tensor's bytes as a flat uint8 view."""
    return tensor.reshape(-1).view(torch.uint8)


def upload(tensor: torch.Tensor, object_id: ObjectId, private: bool = False) -> list[Build]:
    """The requests that store ``tensor`` as ``object_id``: one ``put``, or ``put_chunk``\\ s (views)."""
    if tensor.numel() * tensor.element_size() <= STREAM_THRESHOLD or tensor.dtype not in DTYPE_NAMES:
        # An unknown dtype is sent whole, for the codec to refuse naming the send.
        value = tensor.detach()
        return [lambda rid: PutRequest(rid, object_id, value, private)]
    value = tensor.detach().cpu().contiguous()
    data, dtype, shape = raw_bytes(value), DTYPE_NAMES[value.dtype], tuple(value.shape)
    last = (data.numel() - 1) // CHUNK_BYTES * CHUNK_BYTES

    def chunk(offset: int) -> Build:
        piece = data[offset : offset + CHUNK_BYTES]
        return lambda rid: PutChunkRequest(rid, object_id, dtype, shape, offset, piece, offset == last, private)

    return [chunk(offset) for offset in range(0, data.numel(), CHUNK_BYTES)]


def get_request(object_id: ObjectId, delete: bool) -> Build:
    """``get``, answered with the value, or with the description of an object to stream."""
    return lambda rid: GetRequest(rid, object_id, delete, STREAM_THRESHOLD)


def get_reply_type(reply: Reply) -> type[GetReply] | type[DescribeReply]:
    """What ``reply`` must be to answer a ``get`` (to settle it): a value, or an object to stream."""
    return DescribeReply if isinstance(reply, DescribeReply) else GetReply


def fetched(reply: GetReply | DescribeReply) -> torch.Tensor | ObjectInfo:
    """A settled ``get`` reply: the value, or the object to :class:`Download`."""
    return reply.value if isinstance(reply, GetReply) else reply.objects[0]


class Download(Generic[F]):
    """An object too large for one message, fetched READ_WINDOW ranges at a time.

    ``F`` is the driver's future: a handle's loop is ``accept(wait(issue(call)))``
    until :attr:`complete`, where ``call`` sends a request and returns its
    future, and ``wait`` is ``.result()`` or ``await``.
    """

    def __init__(self, info: ObjectInfo, description: str, peer: str) -> None:
        self.result = torch.empty(info.shape, dtype=DTYPES[info.dtype])
        self._target = raw_bytes(self.result)
        self._object_id = info.object_id
        self._description = description
        self._peer = peer
        self._next = 0
        self._pending: collections.deque[tuple[int, F]] = collections.deque()

    @property
    def complete(self) -> bool:
        return self._next >= self._target.numel() and not self._pending

    def issue(self, call: Callable[[Build], F]) -> F:
        """Fill the window of ``read`` requests; the oldest one's future, to wait for."""
        total = self._target.numel()
        while self._next < total and len(self._pending) < READ_WINDOW:
            size = min(CHUNK_BYTES, total - self._next)
            self._pending.append((self._next, call(self._read(self._next, size))))
            self._next += size
        return self._pending[0][1]

    def _read(self, offset: int, size: int) -> Build:
        object_id = self._object_id
        return lambda rid: ReadRequest(rid, object_id, offset, size)

    def accept(self, reply: Reply) -> None:
        """The oldest request's reply: its bytes go into place."""
        offset, _ = self._pending.popleft()
        if isinstance(reply, ErrorReply):
            raise rebuild_error(reply, self._description, self._peer)
        if not isinstance(reply, ReadReply):
            raise BadRequest(f"{self._description}: unexpected {reply.KIND.value} reply", {})
        self._target[offset : offset + reply.data.numel()].copy_(reply.data)
