"""``node.connect_async``: the same client API for asyncio code.

Ops on pointers are still plain expressions (``z = x + y`` posts a command
and returns at once); the synchronisation points are coroutines:
``await ptr.get()``, ``await remote.sync()``, ``await remote.objects()``,
``await remote.describe(ptr)``.  Everything runs on the caller's loop; no
thread is started.
"""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path
from typing import Any

import torch

from protocol.errors import BadRequest
from protocol.ids import ObjectId
from protocol.limits import DEFAULT_MAX_MESSAGE_BYTES
from protocol.messages import (
    AckReply,
    DeleteRequest,
    DescribeReply,
    DescribeRequest,
    ErrorReply,
    GetReply,
    GetRequest,
    ListReply,
    ListRequest,
    ObjectInfo,
    ReleaseRequest,
    Reply,
    SyncReply,
    SyncRequest,
)
from protocol.streams import CHUNK_BYTES, READ_WINDOW, STREAM_THRESHOLD, ReadReply, ReadRequest
from protocol.tensors import DTYPES

from peer.client.async_channel import AsyncChannel
from .handle import NodeHandle, R
from .pointer import Pointer
from .remote import endpoint_for
from .streaming import raw_bytes
from peer.client.tracker import RequestTracker, rebuild_error

__all__ = ["AsyncRemoteNode", "connect_async"]


class AsyncRemoteNode(NodeHandle):
    """A node reached over a WebSocket from asyncio code."""

    _channel: AsyncChannel  # type: ignore[assignment]

    async def _acall(self, request: Any, expected: type[R], description: str) -> R:
        self._flush_released()
        reply = await self._channel.call(request)
        self._channel.tracker.raise_failures()
        if isinstance(reply, ErrorReply):
            raise rebuild_error(reply, description, self._channel.tracker.peer)
        if not isinstance(reply, expected):
            raise BadRequest(f"{description}: unexpected {reply.KIND.value} reply", {})
        return reply

    async def _get(self, pointer: Pointer, delete: bool) -> torch.Tensor:  # type: ignore[override]
        description = f"get({pointer!r})"
        request = GetRequest(
            self._channel.tracker.next_id(), pointer.object_id, delete, STREAM_THRESHOLD
        )
        reply = await self._channel.call(request)
        self._channel.tracker.raise_failures()
        if isinstance(reply, ErrorReply):
            raise rebuild_error(reply, description, self._channel.tracker.peer)
        if isinstance(reply, GetReply):
            return reply.value
        if not isinstance(reply, DescribeReply):
            raise BadRequest(f"{description}: unexpected {reply.KIND.value} reply", {})
        value = await self._download(reply.objects[0], description)
        if delete:
            pointer.delete()
        return value

    async def _download(self, info: ObjectInfo, description: str) -> torch.Tensor:
        """Async twin of :func:`node.client.streaming.download`."""
        result = torch.empty(info.shape, dtype=DTYPES[info.dtype])
        target = raw_bytes(result)
        total, next_offset = target.numel(), 0
        loop = asyncio.get_running_loop()
        pending: collections.deque[tuple[int, asyncio.Future[Reply]]] = collections.deque()
        while next_offset < total or pending:
            while next_offset < total and len(pending) < READ_WINDOW:
                size = min(CHUNK_BYTES, total - next_offset)
                request = ReadRequest(self._channel.tracker.next_id(), info.object_id, next_offset, size)
                future: asyncio.Future[Reply] = loop.create_future()
                self._channel.submit(request, self._channel.encode(request), future)
                pending.append((next_offset, future))
                next_offset += size
            offset, waiting = pending.popleft()
            reply = await waiting
            if isinstance(reply, ErrorReply):
                raise rebuild_error(reply, description, self.id)
            if not isinstance(reply, ReadReply):
                raise BadRequest(f"{description}: unexpected {reply.KIND.value} reply", {})
            target[offset : offset + reply.data.numel()].copy_(reply.data)
        return result

    async def describe(self, pointer: Pointer) -> ObjectInfo:
        """Dtype and shape of a pointer's object; cached on the pointer."""
        request = DescribeRequest(self._channel.tracker.next_id(), (pointer.object_id,))
        reply = await self._acall(request, DescribeReply, f"describe({pointer!r})")
        pointer._info = reply.objects[0]
        return reply.objects[0]

    async def pointer(self, object_id: int) -> Pointer:  # type: ignore[override]
        """Async twin of :meth:`NodeHandle.pointer`."""
        request = DescribeRequest(self._channel.tracker.next_id(), (ObjectId(object_id),))
        reply = await self._acall(request, DescribeReply, f"pointer({object_id:#x})")
        info = reply.objects[0]
        return Pointer(self, info.object_id, info, owned=info.owner in ("", self.principal))

    async def _grant(self, pointer: Pointer, principal: str) -> None:  # type: ignore[override]
        """Async twin of :meth:`NodeHandle._grant`: ``await ptr.release(principal)``."""
        request = ReleaseRequest(self._channel.tracker.next_id(), pointer.object_id, principal)
        await self._acall(request, AckReply, f"release({pointer!r}, {principal!r})")

    def _describe(self, pointer: Pointer) -> ObjectInfo:
        raise TypeError(
            "shape and dtype need a round trip; with an async node use "
            "`await remote.describe(ptr)` first"
        )

    async def sync(self) -> None:  # type: ignore[override]
        """Wait until the node processed everything sent; raise earlier failures."""
        await self._acall(SyncRequest(self._channel.tracker.next_id()), SyncReply, "sync")

    async def objects(self) -> list[ObjectInfo]:  # type: ignore[override]
        reply = await self._acall(ListRequest(self._channel.tracker.next_id()), ListReply, "objects")
        return list(reply.objects)

    async def aclose(self) -> None:
        ids = list(self._released)
        self._released.clear()
        if ids:
            self._channel.post(DeleteRequest(self._channel.tracker.next_id(), tuple(ids)), "delete")
        await self._channel.aclose()

    def close(self) -> None:
        raise TypeError("use `await remote.aclose()` (or `async with`) for an async node")

    async def __aenter__(self) -> AsyncRemoteNode:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def connect_async(
    url: str,
    *,
    token: str | None = None,
    cafile: str | Path | None = None,
    fingerprint: str | None = None,
    known_nodes: str | Path | None = None,
    client_name: str = "client",
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    timeout: float = 10.0,
) -> AsyncRemoteNode:
    """Async twin of :func:`node.connect`; same arguments and trust rules."""
    endpoint = endpoint_for(
        url,
        cafile=cafile,
        fingerprint=fingerprint,
        known_nodes=known_nodes,
        client_name=client_name,
        max_message_bytes=max_message_bytes,
        timeout=timeout,
        token=token,
    )
    channel = AsyncChannel(endpoint, RequestTracker(url))
    await channel.open()
    return AsyncRemoteNode(channel)  # type: ignore[arg-type]
