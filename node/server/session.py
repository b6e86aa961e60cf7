"""One connection's conversation with a node, without I/O.

Frames in, outcomes out (the python-websockets "sans-I/O" shape): the
WebSocket server and :class:`~node.client.virtual.VirtualNode` both drive
this same class, so the in-process node exercises the real codec, store and
executor.  Heavy commands come back as :class:`Work` for the caller to run
off the event loop; everything else is answered inline, in arrival order.

This is also the one translation point for errors: a known
:class:`~protocol.errors.TesseraError` becomes an error reply with its code;
anything else is logged with its traceback and answered ``INTERNAL`` with no
detail.  Must not import asyncio or websockets.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Union

import torch

from protocol.codec import decode_message
from protocol.errors import (
    BadRequest,
    InternalError,
    ProtocolError,
    QuotaExceeded,
    TesseraError,
    Unauthenticated,
    VersionMismatch,
)
from protocol.ids import NodeId, ObjectId, RequestId
from protocol.messages import (
    CommandRequest,
    DeleteRequest,
    DeliverRequest,
    DescribeReply,
    ExpectRequest,
    DescribeRequest,
    ErrorReply,
    GetRequest,
    HelloRequest,
    ListRequest,
    Message,
    REPLY_TYPES,
    PutChunkRequest,
    PutRequest,
    ReadRequest,
    Reply,
    Request,
    SyncRequest,
    TransferRequest,
)

from .auth import Authenticator, Caller
from .executor import Executor, PreparedCommand
from .store import ObjectStore, Principal
from .transfers import TransferService
from .uploads import Upload, tensor_bytes

__all__ = ["Session", "SessionState", "Outcome", "Work", "AsyncWork", "Step", "CLOSE_POLICY", "CLOSE_PROTOCOL"]

log = logging.getLogger("tessera.node.session")

DEFAULT_MAX_OBJECT_BYTES = 4 * 1024**3
"""Largest single object a node accepts by default (4 GiB)."""

MAX_UPLOADS = 8
"""Streamed uploads one connection may have in progress at once."""

READ_OVERHEAD = 4096
"""Room left in a message for the envelope of a ``read_reply``."""

CLOSE_POLICY = 1008
"""Close code after a refused handshake (RFC 6455 policy violation)."""

CLOSE_PROTOCOL = 1002
"""Close code after a protocol version mismatch."""


class SessionState(enum.Enum):
    AWAITING_HELLO = "awaiting_hello"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to send back (if anything) and whether to close afterwards."""

    reply: Reply | None = None
    close_code: int | None = None
    close_reason: str = ""


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


class Session:
    """State and request handling for one client connection."""

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
    ) -> None:
        self.node_id = node_id
        self.roles = roles
        self.executor = executor
        self.store = store
        self.authenticator = authenticator
        self.max_message_bytes = max_message_bytes
        self.peer = peer
        self.transfers = transfers
        self.max_object_bytes = max_object_bytes
        self._uploads: dict[ObjectId, Upload] = {}
        self._read_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self.state = SessionState.AWAITING_HELLO
        self.caller: Caller | None = None

    @property
    def principal(self) -> Principal | None:
        """Who requests on this connection are attributed to, once authenticated."""
        return self.caller.principal if self.caller is not None else None

    def receive(self, frame: bytes | bytearray | memoryview) -> Step:
        """Handle one binary frame."""
        if self.state is SessionState.CLOSED:
            return _NOTHING
        try:
            message = decode_message(frame, self.max_message_bytes)
        except ProtocolError as exc:
            log.info("bad frame from %s: %s", self.peer, exc)
            reply = ErrorReply.from_exception(RequestId(exc.request_id), exc)
            if isinstance(exc, VersionMismatch):
                return self._close(reply, CLOSE_PROTOCOL, "protocol version mismatch")
            return Outcome(reply)
        return self.handle(message)

    def handle(self, message: Message) -> Step:
        """Handle one decoded message."""
        if isinstance(message, HelloRequest):
            return self._guard(message, self._hello)
        if self.state is not SessionState.OPEN or self.principal is None:
            exc = Unauthenticated("the connection must open with a hello", {})
            return self._close(ErrorReply.from_exception(message.id, exc), CLOSE_POLICY, "no hello")
        if isinstance(message, CommandRequest):
            return self._guard(message, self._command)
        if isinstance(message, PutRequest):
            return self._guard(message, self._put)
        if isinstance(message, GetRequest):
            return self._guard(message, self._get)
        if isinstance(message, DeleteRequest):
            return self._guard(message, self._delete)
        if isinstance(message, SyncRequest):
            return Outcome(message.reply())
        if isinstance(message, ListRequest):
            return self._guard(message, self._list)
        if isinstance(message, DescribeRequest):
            return self._guard(message, self._describe)
        if isinstance(message, (ExpectRequest, TransferRequest, DeliverRequest)):
            return self._guard(message, self._transfer_kind)
        if isinstance(message, PutChunkRequest):
            return self._guard(message, self._put_chunk)
        if isinstance(message, ReadRequest):
            return self._guard(message, self._read)
        if isinstance(message, REPLY_TYPES):
            not_request = BadRequest(f"{message.KIND.value} is a reply, not a request", {})
        else:
            not_request = BadRequest(f"{message.KIND.value} is served by the gateway, not a node", {})
        return Outcome(ErrorReply.from_exception(message.id, not_request))

    def close(self) -> None:
        self.state = SessionState.CLOSED

    def _close(self, reply: ErrorReply, code: int, reason: str) -> Outcome:
        self.state = SessionState.CLOSED
        return Outcome(reply, code, reason)

    def _guard(self, request: Request, handler: Callable[[Request], Step]) -> Step:
        try:
            return handler(request)
        except TesseraError as exc:
            return self._failed(request, exc)
        except Exception:
            log.exception("internal error handling %s from %s", request.KIND.value, self.peer)
            return Outcome(request.error(InternalError("internal error", {})))

    def _failed(self, request: Request, exc: TesseraError) -> Outcome:
        log.debug("%s from %s failed: %s", request.KIND.value, self.peer, exc)
        if isinstance(request, HelloRequest):
            return self._close(request.error(exc), CLOSE_POLICY, "handshake refused")
        return Outcome(request.error(exc))

    def _hello(self, request: Request) -> Step:
        assert isinstance(request, HelloRequest)
        if self.state is SessionState.OPEN:
            raise BadRequest("the connection is already open", {})
        self.caller = self.authenticator.authenticate(request)
        self.state = SessionState.OPEN
        log.info("%r connected from %s as %s", request.client, self.peer, self.caller.principal)
        reply = request.reply(
            self.node_id, self.caller.principal, self.roles, self.max_message_bytes
        )
        return Outcome(reply)

    def _command(self, request: Request) -> Step:
        assert isinstance(request, CommandRequest) and self.principal is not None
        prepared = self.executor.prepare(self.principal, request)
        if prepared.heavy:
            return Work(lambda: self._run(prepared))
        self.executor.run(prepared)
        return _NOTHING

    def _run(self, prepared: PreparedCommand) -> Outcome:
        """Body of a :class:`Work`: runs on a worker thread, never raises."""
        step = self._guard(prepared.request, lambda _: self._run_now(prepared))
        assert isinstance(step, Outcome)
        return step

    def _run_now(self, prepared: PreparedCommand) -> Outcome:
        self.executor.run(prepared)
        return _NOTHING

    def _put(self, request: Request) -> Step:
        assert isinstance(request, PutRequest) and self.principal is not None
        self.store.put(self.principal, request.object_id, request.value)
        return _NOTHING

    def _get(self, request: Request) -> Step:
        assert isinstance(request, GetRequest) and self.principal is not None
        stored = self.store.get(self.principal, request.object_id)
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
        infos = tuple(stored.info() for stored in self.store.visible(self.principal))
        return Outcome(request.reply(infos))

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
        return AsyncWork(lambda: self._send(request))

    async def _send(self, request: TransferRequest) -> Outcome:
        """Body of an :class:`AsyncWork`: deliver to the peer, never raises."""
        assert self.transfers is not None and self.caller is not None
        try:
            await self.transfers.send(self.caller.principal, request)
        except TesseraError as exc:
            return self._failed(request, exc)
        except Exception:
            log.exception("internal error in transfer from %s", self.peer)
            return Outcome(request.error(InternalError("internal error", {})))
        return Outcome(request.ack())

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
                upload = Upload(request.dtype, request.shape, self.max_object_bytes)
                self.store.check_quota(self.principal, upload.expected)  # before allocating
                self._uploads[request.object_id] = upload
            upload.write(request.dtype, request.shape, request.offset, request.data)
            if request.last:
                del self._uploads[request.object_id]
                self.store.put(self.principal, request.object_id, upload.complete())
        except TesseraError:
            self._uploads.pop(request.object_id, None)  # free the partial tensor
            raise
        return _NOTHING

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
        """The object's value, made contiguous once per download (cached)."""
        assert self.principal is not None
        value = self.store.get(self.principal, object_id).value
        if value.is_contiguous():
            return value
        cached = self._read_cache
        if cached is not None and cached[0] is value:
            return cached[1]
        self._read_cache = (value, value.contiguous())
        return self._read_cache[1]

    def _describe(self, request: Request) -> Step:
        assert isinstance(request, DescribeRequest) and self.principal is not None
        principal = self.principal
        infos = tuple(self.store.get(principal, oid).info() for oid in request.object_ids)
        return Outcome(request.reply(infos))
