"""One connection's conversation with a node, without I/O.

Frames in, outcomes out (the python-websockets "sans-I/O" shape): the
WebSocket server and :class:`~node.client.virtual.VirtualNode` both drive
this same class, so the in-process node exercises the real codec, store and
executor.  Heavy commands come back as :class:`Work` for the caller to run
off the event loop; everything else is answered inline, in arrival order.

Decoding, the hello gate and the one error translation point are
:class:`~peer.server.conversation.Conversation`'s, shared with the gateway;
this module holds the node's handlers.  Must not import asyncio or websockets.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Mapping, Protocol, Union

import torch

from protocol.errors import BadRequest, QuotaExceeded, TesseraError
from protocol.ids import NodeId, ObjectId
from protocol.messages import (
    REPLY_TYPES,
    CommandRequest,
    DeleteRequest,
    DeliverRequest,
    DescribeReply,
    DescribeRequest,
    ExpectRequest,
    GetRequest,
    ListRequest,
    Message,
    MessageKind,
    PutChunkRequest,
    PutRequest,
    ReadRequest,
    ReleaseRequest,
    Reply,
    Request,
    TransferRequest,
)

from peer.server.auth import Authenticator
from peer.server.conversation import CLOSE_POLICY, CLOSE_PROTOCOL, Conversation, Outcome, SessionState
from .executor import Executor, PreparedCommand
from .policy import Policy
from peer.server.redaction import Exposure, exposed
from .store import Hold, ObjectStore, Reservation
from .transfers import TransferService
from .uploads import Upload, tensor_bytes

__all__ = [
    "Session", "SessionService", "SessionState", "Outcome", "Work", "AsyncWork", "Step",
    "CLOSE_POLICY", "CLOSE_PROTOCOL",
]


DEFAULT_MAX_OBJECT_BYTES = 4 * 1024**3
"""Largest single object a node accepts by default (4 GiB)."""

MAX_UPLOADS = 8
"""Streamed uploads one connection may have in progress at once."""

READ_OVERHEAD = 4096
"""Room left in a message for the envelope of a ``read_reply``."""

@dataclass(frozen=True, slots=True)
class Work:
    """A heavy command to run off the event loop; ``run`` never raises."""

    run: Callable[[], Outcome]


@dataclass(frozen=True, slots=True)
class AsyncWork:
    """Network work (a node-to-node transfer) for the event loop; ``run`` never raises."""

    run: Callable[[], Awaitable[Outcome]]


Step = Union[Outcome, Work, AsyncWork]
_NOTHING = Outcome()


class SessionService(Protocol):
    """A feature serving its own kinds (e.g. federated learning) on every session."""

    def handlers(self, session: Session) -> Mapping[MessageKind, Callable[[Any], Step]]: ...


class Session(Conversation):
    """State and request handling for one client connection to a node."""

    
    def __init__(
        self,
        node_id: NodeId,
        roles: tuple[str, ...],
        executor: Executor,
        store: ObjectStore,
        authenticator: Authenticator,
        max_message_bytes: int,
        peer: str = "local",
        transfers: TransferService | None = None,
        max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
        services: Iterable[SessionService] = (),
    ) -> None:
        super().__init__(node_id, roles, authenticator, max_message_bytes, peer)
        self.executor = executor
        self.store = store
        self.transfers = transfers
        self.max_object_bytes = max_object_bytes
        self._uploads: dict[ObjectId, Upload] = {}
        self._read_cache: tuple[weakref.ref[torch.Tensor], torch.Tensor, Reservation] | None = None
        """The object being downloaded (weakly: a delete frees it), its contiguous copy and the copy's quota."""
        handlers: dict[MessageKind, Callable[[Any], Step]] = {
            MessageKind.COMMAND: self._command,
            MessageKind.PUT: self._put,
            MessageKind.GET: self._get,
            MessageKind.DELETE: self._delete,
            MessageKind.SYNC: lambda request: Outcome(request.reply()),
            MessageKind.LIST: self._list,
            MessageKind.DESCRIBE: self._describe,
            MessageKind.EXPECT: self._transfer_kind,
            MessageKind.TRANSFER: self._transfer_kind,
            MessageKind.DELIVER: self._transfer_kind,
            MessageKind.PUT_CHUNK: self._put_chunk,
            MessageKind.READ: self._read,
            MessageKind.RELEASE: self._release,
        }
        for service in services:
            handlers.update(service.handlers(self))
        self.handlers = handlers

    def guarded(self, request: Request, body: Callable[[], Outcome]) -> Outcome:
        """Run ``body`` (a :class:`Work`'s, on a worker thread) through the error translation point.

        Called inside the work :meth:`carry` wrapped, so the request's
        exposure applies.
        """
        try:
            return body()
        except Exception as exc:
            return Outcome(self.error_reply(request, exc))

    def guarded_async(self, request: Request, run: Callable[[], Awaitable[Reply | None]]) -> AsyncWork:
        """An :class:`AsyncWork` whose body never raises: ``run``'s reply, or its error as the reply.

        The asynchronous twin of the error translation point
        (:meth:`~peer.server.conversation.Conversation.error_reply`).
        """

        async def body() -> Outcome:
            try:
                return Outcome(await run())
            except Exception as exc:
                return Outcome(self.error_reply(request, exc))

        return AsyncWork(body)

    def carry(self, step: Any, exposure: Exposure) -> Any:
        """Work and AsyncWork run later, elsewhere: under the exposure of the request that made them.

        A worker thread or the driver's task has its own context; the
        exposure travels with the work, so data the work touches marks the
        request it answers and its errors are screened accordingly.
        """
        if isinstance(step, Work):
            run = step.run

            def in_thread() -> Outcome:
                with exposed(exposure):
                    return run()

            return Work(in_thread)
        if isinstance(step, AsyncWork):
            arun = step.run

            async def on_loop() -> Outcome:
                with exposed(exposure):
                    return await arun()

            return AsyncWork(on_loop)
        return step

    def not_served(self, message: Message) -> BadRequest:
        if isinstance(message, REPLY_TYPES):
            return BadRequest(f"{message.KIND.value} is a reply, not a request", {})
        return BadRequest(f"{message.KIND.value} is served by the gateway, not a node", {})

    def _command(self, request: Request) -> Step:
        assert isinstance(request, CommandRequest) and self.principal is not None
        prepared = self.executor.prepare(self.principal, request)
        if prepared.heavy:
            return Work(lambda: self._run(prepared))
        self.executor.run(prepared)
        return _NOTHING

    def _run(self, prepared: PreparedCommand) -> Outcome:
        """Body of a :class:`Work`: runs on a worker thread, never raises."""
        return self.guarded(prepared.request, lambda: self._run_now(prepared))

    def _run_now(self, prepared: PreparedCommand) -> Outcome:
        self.executor.run(prepared)
        return _NOTHING

    def _put(self, request: Request) -> Step:
        assert isinstance(request, PutRequest) and self.principal is not None
        policy = Policy.private(self.principal) if request.private else None
        self.store.put(self.principal, request.object_id, request.value, policy)
        return _NOTHING

    def _get(self, request: Request) -> Step:
        assert isinstance(request, GetRequest) and self.principal is not None
        stored = self.store.read(self.principal, request.object_id)
        if request.max_inline and stored.nbytes > request.max_inline:
            # Too big for one message: the client streams it with read requests.
            return Outcome(DescribeReply(request.id, (stored.info(),)))
        if request.delete:
            self.store.delete(self.principal, (request.object_id,))
        return Outcome(request.reply(stored.value))

    def _delete(self, request: Request) -> Step:
        assert isinstance(request, DeleteRequest) and self.principal is not None
        self.store.delete(self.principal, request.object_ids)
        return _NOTHING

    def _list(self, request: Request) -> Step:
        assert isinstance(request, ListRequest) and self.principal is not None
        principal = self.principal
        infos = tuple(stored.info(principal) for stored in self.store.visible(principal))
        return Outcome(request.reply(infos))

    def _release(self, request: Request) -> Step:
        assert isinstance(request, ReleaseRequest) and self.principal is not None
        self.store.release(self.principal, request.object_id, request.principal)
        return Outcome(request.ack())

    def _transfer_kind(self, request: Request) -> Step:
        assert self.caller is not None
        if self.transfers is None:
            raise BadRequest("this node has no network: it cannot transfer objects", {})
        if isinstance(request, ExpectRequest):
            self.transfers.expect(self.caller, request)
            return Outcome(request.ack())
        if isinstance(request, DeliverRequest):
            self.transfers.deliver(self.caller, request)
            return Outcome(request.ack())
        assert isinstance(request, TransferRequest)
        self.transfers.check_transfer(self.caller.principal, request)
        return self.guarded_async(request, lambda: self._send(request))

    async def _send(self, request: TransferRequest) -> Reply:
        """Deliver to the peer; its acknowledgement is the transfer's."""
        assert self.transfers is not None and self.caller is not None
        await self.transfers.send(self.caller.principal, request)
        return request.ack()

    def _put_chunk(self, request: Request) -> Step:
        assert isinstance(request, PutChunkRequest) and self.principal is not None
        upload = self._uploads.get(request.object_id)
        try:
            if upload is None:
                if request.offset != 0 or self.store.exists(request.object_id):
                    raise BadRequest(
                        f"no upload of object {request.object_id:#x} is in progress", {}
                    )
                if len(self._uploads) >= MAX_UPLOADS:
                    raise QuotaExceeded(
                        f"at most {MAX_UPLOADS} uploads may be in progress on one connection",
                        {"limit": MAX_UPLOADS},
                    )
                principal = self.principal
                upload = Upload(  # reserves its whole size in the quota before allocating
                    request.dtype, request.shape, self.max_object_bytes,
                    lambda size: self.store.reserve(principal, Hold.UPLOAD, size, objects=1),
                )
                self._uploads[request.object_id] = upload
            upload.write(request.dtype, request.shape, request.offset, request.data)
            if request.last:
                del self._uploads[request.object_id]
                policy = Policy.private(self.principal) if request.private else None
                self.store.put(self.principal, request.object_id, upload.complete(), policy, upload.reservation)
        except Exception:
            self._uploads.pop(request.object_id, None)
            if upload is not None:
                upload.abandon()  # free the partial tensor and its reservation
            raise
        return _NOTHING

    def close(self) -> None:
        """The connection is gone: its unfinished uploads are freed and their reservations released."""
        super().close()
        uploads, self._uploads = list(self._uploads.values()), {}
        for upload in uploads:
            upload.abandon()
        self._drop_read_cache()

    def _read(self, request: Request) -> Step:
        assert isinstance(request, ReadRequest) and self.principal is not None
        value = self._contiguous(request.object_id)
        data = tensor_bytes(value)
        end = request.offset + request.nbytes
        if end > data.numel():
            raise BadRequest(
                f"bytes [{request.offset}, {end}) lie outside the {data.numel()}-byte object",
                {"offset": request.offset, "nbytes": request.nbytes},
            )
        if request.nbytes > self.max_message_bytes - READ_OVERHEAD:
            raise BadRequest("read a smaller range: it would not fit in one message", {})
        return Outcome(request.reply(data[request.offset : end]))

    def _contiguous(self, object_id: ObjectId) -> torch.Tensor:
        """The object's value, made contiguous once per download (cached, its bytes in the quota)."""
        assert self.principal is not None
        value = self.store.read(self.principal, object_id).value
        if value.is_contiguous():
            return value
        cached = self._read_cache
        if cached is not None and cached[0]() is value:
            return cached[1]
        self._drop_read_cache()
        held = self.store.reserve(self.principal, Hold.DOWNLOAD, value.numel() * value.element_size())
        copy = value.contiguous()
        self._read_cache = (weakref.ref(value), copy, held)
        return copy

    def _drop_read_cache(self) -> None:
        cached, self._read_cache = self._read_cache, None
        if cached is not None:
            cached[2].release()

    def _describe(self, request: Request) -> Step:
        assert isinstance(request, DescribeRequest) and self.principal is not None
        principal = self.principal
        infos = tuple(self.store.get(principal, oid).info(principal) for oid in request.object_ids)
        return Outcome(request.reply(infos))
