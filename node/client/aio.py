"""``node.connect_async``: the same client API for asyncio code.

Ops on pointers are still plain expressions (``z = x + y`` posts a command
and returns at once); the synchronisation points are coroutines:
``await ptr.get()``, ``await ptr.release(p)``, ``await remote.sync()``,
``await remote.objects()``, ``await remote.describe(ptr)``.  Everything runs
on the caller's loop; no thread is started.

:class:`AsyncRemoteNode` is not a synchronous handle: it wraps an
:class:`~peer.client.async_channel.AsyncChannel` (the same channel core as
``node.connect``'s) and shares with the synchronous handle, by composition,
the posting half (:class:`~node.client.pipeline.Pipeline`) and the pure
``get``/download helpers (:mod:`node.client.streaming`).  Its pointers,
:class:`AsyncPointer`, await where a synchronous pointer blocks.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import torch

from protocol.ids import NodeId, ObjectId
from protocol.limits import DEFAULT_MAX_MESSAGE_BYTES
from protocol.messages import (
    AckReply,
    DescribeReply,
    DescribeRequest,
    ListReply,
    ListRequest,
    ObjectInfo,
    ReleaseRequest,
    Reply,
    SyncReply,
    SyncRequest,
)

from peer.client.async_channel import AsyncChannel
from peer.client.core import Build

from .pipeline import Pipeline
from .pointer import BasePointer
from .remote import endpoint_for
from .streaming import Download, fetched, get_reply_type, get_request

__all__ = ["AsyncRemoteNode", "AsyncPointer", "connect_async"]

R = TypeVar("R", bound=Reply)


class AsyncPointer(BasePointer):
    """A pointer on an asyncio node: ``get`` and ``release`` are awaited."""

    __slots__ = ()

    node: AsyncRemoteNode

    def __init__(
        self, node: AsyncRemoteNode, object_id: ObjectId, info: ObjectInfo | None = None, owned: bool = True
    ) -> None:
        super().__init__(node, object_id, info, owned)

    async def get(self, delete: bool = False) -> torch.Tensor:
        """Bring the value back.  ``delete=True`` frees it on the node."""
        return await self.node.fetch(self, delete)

    async def release(self, principal: str) -> None:
        """Let ``principal`` read the object (PermissionDenied unless our data is in it)."""
        await self.node.grant(self, principal)


class AsyncRemoteNode:
    """A node reached over a WebSocket from asyncio code."""

    def __init__(self, channel: AsyncChannel) -> None:
        self._channel = channel
        self._pipeline: Pipeline[AsyncPointer] = Pipeline(
            self, channel.post, AsyncPointer,
            lambda object_id, info, owned: AsyncPointer(self, object_id, info, owned),
        )

    @property
    def id(self) -> NodeId:
        """The node's id, as it announced itself in the handshake."""
        return self._channel.node_id

    @property
    def fingerprint(self) -> str | None:
        """Fingerprint of the certificate this connection verified (None without TLS)."""
        return self._channel.peer_fingerprint

    @property
    def principal(self) -> str:
        """Who this node thinks we are."""
        return self._channel.principal

    @property
    def url(self) -> str:
        """The URL this client dialed."""
        return self._channel.url

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"

    # -- posting (as on a synchronous handle) ---------------------------------

    def send(self, tensor: torch.Tensor, private: bool = False) -> AsyncPointer:
        """Store ``tensor`` on the node; returns a pointer at once (see ``RemoteNode.send``)."""
        return self._pipeline.send(tensor, private)

    def command(
        self, op: str, target: BasePointer | None, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> AsyncPointer | tuple[AsyncPointer, ...]:
        """Post op ``op`` (pointers' ops come here); pointers to its results at once."""
        return self._pipeline.command(op, target, args, kwargs)

    def drop(self, object_id: ObjectId) -> None:
        """A pointer we own was dropped: queue the delete."""
        self._pipeline.drop(object_id)

    def flush_drops(self) -> None:
        """Post the deletes of dropped pointers now."""
        self._pipeline.flush_drops()

    def object_info(self, pointer: BasePointer) -> ObjectInfo:
        raise TypeError(
            "shape and dtype need a round trip; with an async node use "
            "`await remote.describe(ptr)` first"
        )

    # -- synchronisation points --------------------------------------------

    async def call(self, build: Build, expected: type[R], description: str) -> R:
        """A synchronisation point: wait, raise earlier failures, then this request's error."""
        self.flush_drops()
        return self._channel.settle(await self._channel.call(build), expected, description)

    async def fetch(self, pointer: BasePointer, delete: bool) -> torch.Tensor:
        """The value; objects above STREAM_THRESHOLD come back in chunks (no flush of deletes)."""
        description = f"get({pointer!r})"
        reply = await self._channel.call(get_request(pointer.object_id, delete))
        outcome = fetched(self._channel.settle(reply, get_reply_type(reply), description))
        if isinstance(outcome, torch.Tensor):
            return outcome
        download: Download[asyncio.Future[Reply]] = Download(outcome, description, self.id)
        while not download.complete:
            download.accept(await download.issue(self._channel.submit))
        if delete:  # a streamed object stays on the node for the reads
            pointer.delete()
        return download.result

    async def grant(self, pointer: BasePointer, principal: str) -> None:
        """Let ``principal`` read the object: ``await ptr.release(principal)``."""
        object_id = pointer.object_id
        await self.call(
            lambda rid: ReleaseRequest(rid, object_id, principal), AckReply, f"release({pointer!r}, {principal!r})"
        )

    async def describe(self, pointer: BasePointer) -> ObjectInfo:
        """Dtype and shape of a pointer's object; cached on the pointer."""
        objects = (pointer.object_id,)
        reply = await self.call(lambda rid: DescribeRequest(rid, objects), DescribeReply, f"describe({pointer!r})")
        pointer.remember(reply.objects[0])
        return reply.objects[0]

    async def pointer(self, object_id: int) -> AsyncPointer:
        """A pointer to an object we can see but did not create (see ``RemoteNode.pointer``)."""
        objects = (ObjectId(object_id),)
        reply = await self.call(lambda rid: DescribeRequest(rid, objects), DescribeReply, f"pointer({object_id:#x})")
        return self._pipeline.adopt(reply.objects[0])

    async def sync(self) -> None:
        """Wait until the node processed everything sent; raise earlier failures."""
        await self.call(SyncRequest, SyncReply, "sync")

    async def objects(self) -> list[ObjectInfo]:
        """What this client can see on the node (see ``RemoteNode.objects``)."""
        return list((await self.call(ListRequest, ListReply, "objects")).objects)

    # -- closing -------------------------------------------------------------

    async def aclose(self) -> None:
        """Send pending deletes, then close the connection."""
        self.flush_drops()
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
    channel = AsyncChannel(endpoint)
    await channel.open()
    return AsyncRemoteNode(channel)
