"""Client side of streaming: uploading and downloading tensors in chunks.

Above :data:`~protocol.streams.STREAM_THRESHOLD` bytes a tensor never
travels as one message.  Uploads post ``put_chunk`` messages whose payloads
are views of the caller's tensor (no copy; the channel's writer applies
backpressure).  Downloads allocate the result once and keep
:data:`~protocol.streams.READ_WINDOW` ``read`` requests in flight, copying
each answer into place as it arrives.  So each side holds the tensor once,
plus a few chunks.
"""

from __future__ import annotations

import collections
import concurrent.futures
from typing import TYPE_CHECKING, Callable

import torch

from protocol.errors import BadRequest
from protocol.ids import ObjectId, RequestId
from protocol.messages import ErrorReply, ObjectInfo, Reply
from protocol.streams import CHUNK_BYTES, READ_WINDOW, PutChunkRequest, ReadReply, ReadRequest
from protocol.tensors import DTYPE_NAMES, DTYPES

from peer.client.tracker import rebuild_error

if TYPE_CHECKING:
    from .handle import NodeHandle

__all__ = ["upload_chunks", "download", "raw_bytes"]


def raw_bytes(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU tensor's bytes as a flat uint8 view."""
    return tensor.reshape(-1).view(torch.uint8)


def upload_chunks(
    tensor: torch.Tensor,
    object_id: ObjectId,
    next_id: Callable[[], RequestId],
    private: bool = False,
) -> list[PutChunkRequest]:
    """The ``put_chunk`` requests that upload ``tensor`` (views, not copies)."""
    value = tensor.detach().cpu().contiguous()
    data, dtype, shape = raw_bytes(value), DTYPE_NAMES[value.dtype], tuple(value.shape)
    offsets = list(range(0, data.numel(), CHUNK_BYTES)) or [0]
    return [
        PutChunkRequest(
            next_id(), object_id, dtype, shape, offset,
            data[offset : offset + CHUNK_BYTES], offset == offsets[-1], private,
        )
        for offset in offsets
    ]


def download(
    handle: NodeHandle,
    info: ObjectInfo,
    call_async: Callable[[ReadRequest], concurrent.futures.Future[Reply]],
    next_id: Callable[[], RequestId],
    description: str,
) -> torch.Tensor:
    """Fetch an object too large for one message, READ_WINDOW ranges at a time."""
    result = torch.empty(info.shape, dtype=DTYPES[info.dtype])
    target = raw_bytes(result)
    total = target.numel()
    pending: collections.deque[tuple[int, concurrent.futures.Future[Reply]]] = collections.deque()
    next_offset = 0
    while next_offset < total or pending:
        while next_offset < total and len(pending) < READ_WINDOW:
            size = min(CHUNK_BYTES, total - next_offset)
            request = ReadRequest(next_id(), info.object_id, next_offset, size)
            pending.append((next_offset, call_async(request)))
            next_offset += size
        offset, future = pending.popleft()
        reply = future.result()
        if isinstance(reply, ErrorReply):
            raise rebuild_error(reply, description, handle.id)
        if not isinstance(reply, ReadReply):
            raise BadRequest(f"{description}: unexpected {reply.KIND.value} reply", {})
        target[offset : offset + reply.data.numel()].copy_(reply.data)
    return result
