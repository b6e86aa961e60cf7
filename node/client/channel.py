"""Client channels: ordered delivery of requests to one node, and their replies.

:class:`AsyncChannel` is the one implementation over a WebSocket, for use on
the caller's event loop.  :class:`ThreadedChannel` is the synchronous facade:
it owns a private event loop in a daemon thread (explicitly, per channel) and
forwards to an :class:`AsyncChannel` running there, so scripts and notebooks
(whose own loop may already be running) get blocking calls that never touch
the caller's loop.  Requests are encoded in the caller's thread.

A dropped connection fails what was in flight with :class:`NodeUnavailable`;
the next use dials again with the same credentials, which reach the same
principal and so the same objects.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Coroutine, Protocol, TypeVar
from urllib.parse import urlsplit

from protocol.codec import Frame, decode_message, encode_message
from protocol.errors import MessageTooLarge, ProtocolError, TesseraError
from protocol.ids import NodeId
from protocol.limits import DEFAULT_MAX_MESSAGE_BYTES, PROTOCOL_VERSION
from protocol.messages import (
    REPLY_TYPES,
    ErrorReply,
    HelloReply,
    HelloRequest,
    Reply,
    Request,
    SyncReply,
    SyncRequest,
)

from ..errors import ClientClosed, InsecureConnectionWarning, NodeUnavailable
from ..transport.tls import client_ssl_context
from ..transport.trust import TrustPolicy, verify_peer
from ..transport.websocket import Connection, ConnectionLost, dial
from .tracker import RequestTracker, rebuild_error

__all__ = ["Endpoint", "Channel", "AsyncChannel", "ThreadedChannel", "hello_request"]

log = logging.getLogger("tessera.client")
T = TypeVar("T")

CALL_TIMEOUT = 300.0
"""Seconds a blocking call waits for its reply before NodeUnavailable."""


@dataclass(frozen=True)
class Endpoint:
    """Where a node is and how to trust it."""

    url: str
    trust: TrustPolicy
    client_name: str
    credentials: dict[str, Any]
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    open_timeout: float = 10.0

    @property
    def address(self) -> str:
        parts = urlsplit(self.url)
        default = 443 if parts.scheme == "wss" else 80
        return f"{parts.hostname}:{parts.port or default}"

    @property
    def secure(self) -> bool:
        return urlsplit(self.url).scheme == "wss"


def hello_request(tracker: RequestTracker, client: str, credentials: dict[str, Any]) -> HelloRequest:
    return HelloRequest(tracker.next_id(), PROTOCOL_VERSION, client, ("client",), credentials)


class Channel(Protocol):
    """What a client handle needs: ordered posts and blocking calls."""

    tracker: RequestTracker

    @property
    def node_id(self) -> NodeId: ...

    @property
    def principal(self) -> str: ...

    def post(self, request: Request, description: str) -> None: ...

    def call(self, request: Request) -> Reply: ...

    def close(self) -> None: ...


class AsyncChannel:
    """A connection to one node on the running event loop."""

    def __init__(self, endpoint: Endpoint, tracker: RequestTracker) -> None:
        self.endpoint = endpoint
        self.tracker = tracker
        self.node_id = NodeId("")
        self.principal = ""
        self.max_message_bytes = endpoint.max_message_bytes
        self._connection: Connection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._waiters: dict[int, asyncio.Future[Reply]] = {}
        self._dialing: asyncio.Lock = asyncio.Lock()
        self._redial: asyncio.Task[None] | None = None
        self._closed = False

    async def open(self) -> None:
        """Dial, verify the certificate, and complete the handshake."""
        async with self._dialing:
            if self._connection is not None:
                return
            if self._closed:
                raise ClientClosed("this client was closed", {})
            connection = await self._dial()
            try:
                reply = await self._handshake(connection)
            except BaseException:
                await connection.close()
                raise
            self.node_id, self.principal = reply.node_id, reply.principal
            self.max_message_bytes = min(self.endpoint.max_message_bytes, reply.max_message_bytes)
            self._connection = connection
            self._reader = asyncio.create_task(self._read(connection))
            self._writer = asyncio.create_task(self._write(connection))

    async def _dial(self) -> Connection:
        endpoint = self.endpoint
        ssl_context = None
        if endpoint.secure:
            ssl_context = client_ssl_context(endpoint.trust)
        else:
            warnings.warn(
                f"{endpoint.url} is not TLS: traffic and credentials travel in plaintext",
                InsecureConnectionWarning,
                stacklevel=4,
            )
        try:
            connection = await dial(
                endpoint.url, ssl_context, endpoint.max_message_bytes, endpoint.open_timeout
            )
        except (OSError, ConnectionLost) as exc:
            raise NodeUnavailable(f"cannot reach {endpoint.url}: {_reason(exc)}", {}) from exc
        if endpoint.secure:
            try:
                # TOFU reads and writes the known-nodes file: keep it off the loop.
                await asyncio.to_thread(
                    verify_peer, endpoint.trust, endpoint.address, connection.peer_certificate()
                )
            except BaseException:
                await connection.close()
                raise
        return connection

    async def _handshake(self, connection: Connection) -> HelloReply:
        hello = hello_request(self.tracker, self.endpoint.client_name, self.endpoint.credentials)
        try:
            await connection.send(encode_message(hello))
            reply = decode_message(
                await asyncio.wait_for(connection.recv(), self.endpoint.open_timeout),
                self.endpoint.max_message_bytes,
            )
        except (ConnectionLost, TimeoutError, asyncio.TimeoutError) as exc:
            raise NodeUnavailable(f"handshake with {self.endpoint.url} failed: {_reason(exc)}", {}) from exc
        if isinstance(reply, ErrorReply):
            raise rebuild_error(reply, "hello", self.endpoint.url)
        if not isinstance(reply, HelloReply):
            raise NodeUnavailable(f"{self.endpoint.url} answered hello with {reply.KIND.value}", {})
        return reply

    def post(self, request: Request, description: str, frame: Frame | None = None) -> None:
        """Queue a request without waiting (must run on the channel's loop).

        If the connection dropped, the request waits in the queue while the
        channel dials again; if that fails, it is reported as failed.
        """
        if self._closed:
            raise ClientClosed("this client was closed", {})
        frame = frame or self.encode(request)
        due = self.tracker.posted(request.id, description)
        self._outbox.put_nowait(frame)
        if due:
            self._outbox.put_nowait(encode_message(SyncRequest(self.tracker.next_id())))
        if self._connection is None and (self._redial is None or self._redial.done()):
            self._redial = asyncio.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            await self.open()
        except TesseraError as exc:
            self._drain()
            self.tracker.lost(exc)

    def _drain(self) -> None:
        while not self._outbox.empty():
            self._outbox.get_nowait()

    def encode(self, request: Request) -> Frame:
        """Encode, refusing frames the node would reject for their size."""
        frame = encode_message(request)
        if frame.nbytes > self.max_message_bytes:
            raise MessageTooLarge.for_size(
                f"{request.KIND.value} message", frame.nbytes, self.max_message_bytes
            )
        return frame

    async def call(self, request: Request, frame: Frame | None = None) -> Reply:
        """Send a request and wait for its reply (ErrorReply included)."""
        await self.open()
        frame = frame or self.encode(request)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiters[request.id] = future
        self._outbox.put_nowait(frame)
        try:
            return await asyncio.wait_for(future, CALL_TIMEOUT)
        except (TimeoutError, asyncio.TimeoutError):
            raise NodeUnavailable(f"no reply from {self.endpoint.url} in {CALL_TIMEOUT:.0f}s", {}) from None
        finally:
            self._waiters.pop(request.id, None)

    async def _write(self, connection: Connection) -> None:
        while True:
            frame = await self._outbox.get()
            if frame is None:
                return
            try:
                await connection.send(frame)
            except ConnectionLost as exc:
                self._lost(connection, exc)
                return
            except Exception as exc:  # the writer must not die silently
                log.exception("sending to %s failed", self.endpoint.url)
                await connection.close()
                self._lost(connection, TesseraError(f"send failed: {type(exc).__name__}", {}))
                return

    async def _read(self, connection: Connection) -> None:
        while True:
            try:
                data = await connection.recv()
                reply = decode_message(data, self.endpoint.max_message_bytes)
            except ConnectionLost as exc:
                self._lost(connection, exc)
                return
            except (ProtocolError, TesseraError) as exc:
                log.warning("undecodable frame from %s: %s", self.endpoint.url, exc)
                continue
            if not isinstance(reply, REPLY_TYPES):
                log.warning("%s sent a %s request to a client", self.endpoint.url, reply.KIND.value)
                continue
            self._dispatch(reply)

    def _dispatch(self, reply: Reply) -> None:
        if isinstance(reply, SyncReply):
            self.tracker.barrier(reply.id)
        waiter = self._waiters.pop(reply.id, None)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(reply)
        elif isinstance(reply, ErrorReply):
            self.tracker.on_error(reply)

    def _lost(self, connection: Connection, exc: TesseraError) -> None:
        if self._connection is not connection:
            return
        self._connection = None
        error = NodeUnavailable(f"connection to {self.endpoint.url} lost: {exc.message}", {})
        self.tracker.lost(error)
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(error)
        self._waiters.clear()
        self._drain()
        for task in (self._reader, self._writer):
            if task is not None and task is not asyncio.current_task():
                task.cancel()

    async def aclose(self) -> None:
        self._closed = True
        connection, self._connection = self._connection, None
        self._outbox.put_nowait(None)
        if self._writer is not None:
            try:
                await asyncio.wait_for(self._writer, 10)
            except (Exception, asyncio.CancelledError):
                pass
        if connection is not None:
            await connection.close()
        if self._reader is not None:
            self._reader.cancel()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TesseraError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


class ThreadedChannel:
    """Blocking facade over an :class:`AsyncChannel` on a private loop thread."""

    _counter = itertools.count(1)

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.tracker = RequestTracker(endpoint.url)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever,
            name=f"tessera-client-{next(self._counter)}",
            daemon=True,
        )
        self._thread.start()
        self._inner: AsyncChannel = self._run(self._make(endpoint))
        try:
            self._run(self._inner.open())
        except BaseException:
            self._stop_loop()
            raise

    async def _make(self, endpoint: Endpoint) -> AsyncChannel:
        return AsyncChannel(endpoint, self.tracker)

    @property
    def node_id(self) -> NodeId:
        return self._inner.node_id

    @property
    def principal(self) -> str:
        return self._inner.principal

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if not self._thread.is_alive():
            coroutine.close()
            raise ClientClosed("this client was closed", {})
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def post(self, request: Request, description: str) -> None:
        frame = self._inner.encode(request)
        self._loop.call_soon_threadsafe(self._post_or_record, request, description, frame)

    def _post_or_record(self, request: Request, description: str, frame: Frame) -> None:
        try:
            self._inner.post(request, description, frame)
        except TesseraError as exc:
            self.tracker.failed_locally(exc, description)

    def call(self, request: Request) -> Reply:
        frame = self._inner.encode(request)
        return self._run(self._inner.call(request, frame))

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._run(self._inner.aclose())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
