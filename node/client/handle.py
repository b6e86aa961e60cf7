"""The client's synchronous handle on one node: the API behind ``RemoteNode`` and ``VirtualNode``.

Turns user calls into requests on a :class:`~peer.client.sync_channel.Channel`:
``send`` and ops are posted without waiting (pipelining, through a
:class:`~node.client.pipeline.Pipeline`), while ``get``, ``sync``,
``objects`` and ``describe`` wait for their reply and first raise any
failure of earlier posted requests (the channel core's synchronisation-point
rule).  :class:`NodeHandle` implements :class:`~node.client.host.Handle`,
the interface pointers, shared tensors and jobs use; it never hands out a
request id (the channel does).
"""

from __future__ import annotations

import concurrent.futures
import secrets
from typing import Any, Mapping, Sequence, TypeVar

import torch

from protocol.errors import BadRequest
from protocol.ids import NodeId, ObjectId
from protocol.messages import (
    AckReply,
    DescribeReply,
    DescribeRequest,
    ExpectRequest,
    ListReply,
    ListRequest,
    ObjectInfo,
    ReleaseRequest,
    Reply,
    SyncReply,
    SyncRequest,
    TransferRequest,
)
from protocol.transfers import TICKET_BYTES

from peer.client.core import Build
from peer.client.sync_channel import Channel

from .host import Handle
from .ids import new_object_id
from .mpc.shared import SharedTensor
from .mpc.sharing import share_pointer
from .pipeline import Pipeline
from .pointer import BasePointer, Pointer
from .streaming import Download, fetched, get_reply_type, get_request

__all__ = ["NodeHandle"]

R = TypeVar("R", bound=Reply)


class NodeHandle:
    """Synchronous client API over one channel to one node."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._pipeline: Pipeline[Pointer] = Pipeline(
            self, channel.post, Pointer, lambda object_id, info, owned: Pointer(self, object_id, info, owned)
        )

    @property
    def id(self) -> NodeId:
        """The node's id, as it announced itself in the handshake."""
        return self._channel.node_id

    @property
    def fingerprint(self) -> str | None:
        """Fingerprint of the certificate this connection verified (a VirtualNode's in-process identity; None without TLS)."""
        return self._channel.peer_fingerprint

    @property
    def principal(self) -> str:
        """Who this node thinks we are."""
        return self._channel.principal

    @property
    def url(self) -> str:
        """The URL this client dialed (what a peer node should dial too)."""
        url = self._channel.url
        if url is None:
            raise BadRequest(f"{self.id} is an in-process node and has no URL", {})
        return url

    @property
    def in_process(self) -> bool:
        """Whether the node runs in this process (no network between us)."""
        return self._channel.url is None

    @property
    def requests_sent(self) -> int:
        """Requests sent on this connection so far (a profile's count of messages)."""
        return self._channel.requests_sent

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"

    # -- posting ---------------------------------------------------------

    def send(self, tensor: torch.Tensor, private: bool = False) -> Pointer:
        """Store ``tensor`` on the node; returns a pointer at once.

        ``private=True`` stores it as a private dataset: every principal on
        the node may compute on it through pointers, nobody but us may read
        it, or anything computed from it, until we release it.
        """
        return self._pipeline.send(tensor, private)

    def command(
        self, op: str, target: BasePointer | None, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> Pointer | tuple[Pointer, ...]:
        """Post op ``op`` (pointers' ops come here); pointers to its results at once."""
        return self._pipeline.command(op, target, args, kwargs)

    def command_one(
        self, op: str, target: BasePointer | None, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> Pointer:
        """:meth:`command` for an op with one result."""
        return self._pipeline.command_one(op, target, args, kwargs)

    def post(self, build: Build, description: str) -> None:
        """Send ``build(request_id)`` without waiting; its failure surfaces at the next sync point."""
        self._pipeline.post(build, description)

    def drop(self, object_id: ObjectId) -> None:
        """A pointer we own was dropped (any thread): queue the delete."""
        self._pipeline.drop(object_id)

    def flush_drops(self) -> None:
        """Post the deletes of dropped pointers now."""
        self._pipeline.flush_drops()

    # -- synchronisation points --------------------------------------------

    def call(self, build: Build, expected: type[R], description: str) -> R:
        """A synchronisation point: wait, raise earlier failures, then this request's error.

        First sends the deletes of dropped pointers.
        """
        self.flush_drops()
        return self._channel.settle(self._channel.call(build), expected, description)

    def call_async(self, build: Build) -> concurrent.futures.Future[Reply]:
        """Send now; the future resolves with the raw reply (settle it with :meth:`settle`)."""
        return self._channel.call_async(build)

    def settle(self, reply: Reply, expected: type[R], description: str) -> R:
        """A :meth:`call_async` reply at a synchronisation point (see :meth:`call`)."""
        return self._channel.settle(reply, expected, description)

    def fetch(self, pointer: BasePointer, delete: bool) -> torch.Tensor:
        """The value; objects above STREAM_THRESHOLD come back in chunks.

        A synchronisation point that does not flush dropped pointers' deletes
        (one message less per round trip; they go out in batches of
        DELETE_BATCH, or at the next sync/objects/close).
        """
        description = f"get({pointer!r})"
        reply = self._channel.call(get_request(pointer.object_id, delete))
        value = self.value_of(reply, description)
        if delete and isinstance(reply, DescribeReply):  # streamed: the object stayed for the reads
            pointer.delete()
        return value

    def value_of(self, reply: Reply, description: str) -> torch.Tensor:
        """A ``get``'s reply (from :meth:`call_async`) settled into the value, streamed if large."""
        outcome = fetched(self.settle(reply, get_reply_type(reply), description))
        return outcome if isinstance(outcome, torch.Tensor) else self._download(outcome, description)

    def _download(self, info: ObjectInfo, description: str) -> torch.Tensor:
        download: Download[concurrent.futures.Future[Reply]] = Download(info, description, self.id)
        while not download.complete:
            download.accept(download.issue(self._channel.call_async).result())
        return download.result

    def grant(self, pointer: BasePointer, principal: str) -> None:
        """Let ``principal`` read the object, as far as our restriction on it goes."""
        object_id = pointer.object_id
        self.call(
            lambda rid: ReleaseRequest(rid, object_id, principal), AckReply, f"release({pointer!r}, {principal!r})"
        )

    def object_info(self, pointer: BasePointer) -> ObjectInfo:
        """Dtype, shape and owner of the pointer's object (one round trip, no data)."""
        objects = (pointer.object_id,)
        reply = self.call(lambda rid: DescribeRequest(rid, objects), DescribeReply, f"describe({pointer!r})")
        return reply.objects[0]

    def pointer(self, object_id: int) -> Pointer:
        """A pointer to an object we can see on the node but did not create here.

        Another principal's private dataset, or an object released to us
        (one round trip: ``describe``).  Dropping it never deletes the
        object unless we own it.
        """
        objects = (ObjectId(object_id),)
        reply = self.call(lambda rid: DescribeRequest(rid, objects), DescribeReply, f"pointer({object_id:#x})")
        return self._pipeline.adopt(reply.objects[0])

    def sync(self) -> None:
        """Wait until the node has processed everything sent so far.

        Raises the first failure among earlier pipelined commands, naming it.
        """
        self.call(SyncRequest, SyncReply, "sync")

    def objects(self) -> list[ObjectInfo]:
        """What this client can see on the node; no data moves.

        Its own objects, results derived from its data, objects released to
        it and every principal's private datasets, each with dtype, shape,
        owner, whether we may ``get`` it and whether it is private.  Use
        :meth:`pointer` to compute on one we did not create.
        """
        return list(self.call(ListRequest, ListReply, "objects").objects)

    # -- node to node --------------------------------------------------------

    def transfer(self, pointer: BasePointer, dest: Handle, delete_source: bool) -> ObjectId:
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
        source_id, dest_id, dest_url = self.id, dest.id, dest.url
        dest.call(
            lambda rid: ExpectRequest(rid, object_id, source_id, source_fp, ticket), AckReply, f"expect({pointer!r})"
        )
        verb = "move" if delete_source else "copy_to"
        source = pointer.object_id
        self.call(
            lambda rid: TransferRequest(rid, source, dest_id, dest_url, dest_fp, object_id, ticket, delete_source),
            AckReply,
            f"{verb}({pointer!r}, {dest_id})",
        )
        return object_id

    def share_pointer(
        self,
        pointer: Pointer,
        parties: Sequence[Handle],
        crypto_provider: Handle | None,
        options: Mapping[str, Any],
    ) -> SharedTensor:
        """Have this node split ``pointer``'s object and deliver each share to its party."""
        return share_pointer(pointer, *parties, crypto_provider=crypto_provider, **options)

    # -- closing -------------------------------------------------------------

    def close(self) -> None:
        """Flush pending deletes and close the connection."""
        try:
            self.flush_drops()
        finally:
            self._channel.close()

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
