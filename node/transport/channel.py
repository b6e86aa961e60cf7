"""Channels: ordered delivery of requests to one peer, and their replies.

:class:`AsyncChannel` is the one implementation over a WebSocket, on the
running event loop.  Clients use it (directly, or through the threaded
facade in ``node/client/channel.py``), and so do nodes when they talk to the
gateway or to another node.  It dials, verifies the peer's certificate
before anything else is sent, says hello with credentials made for that very
peer (node proofs bind the peer's fingerprint), then pipelines posts and
correlates calls with their replies.

A dropped connection fails what was in flight with :class:`NodeUnavailable`;
the next use dials again with fresh credentials for the same identity,
which reach the same principal and so the same objects.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from dataclasses import dataclass
from typing import Any, Callable
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
from .tls import client_ssl_context
from .tracker import RequestTracker, rebuild_error
from .trust import TrustPolicy, verify_peer
from .websocket import Connection, ConnectionLost, dial

__all__ = ["Endpoint", "AsyncChannel", "Credentials", "fixed_credentials", "hello_request", "CALL_TIMEOUT"]

log = logging.getLogger("tessera.client")

CALL_TIMEOUT = 300.0
"""Seconds a blocking call waits for its reply before NodeUnavailable."""


Credentials = Callable[[str | None], dict[str, Any]]


def fixed_credentials(credentials: dict[str, Any]) -> Credentials:
    """Credentials that do not depend on the peer (an anonymous client's secret)."""
    return lambda fingerprint: credentials


@dataclass(frozen=True)
class Endpoint:
    """Where a node is and how to trust it."""

    url: str
    trust: TrustPolicy
    client_name: str
    credentials: Credentials
    """Makes hello credentials for the peer with the given fingerprint (None: no TLS)."""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    open_timeout: float = 10.0
    roles: tuple[str, ...] = ("client",)

    @property
    def address(self) -> str:
        parts = urlsplit(self.url)
        default = 443 if parts.scheme == "wss" else 80
        return f"{parts.hostname}:{parts.port or default}"

    @property
    def secure(self) -> bool:
        return urlsplit(self.url).scheme == "wss"


def hello_request(
    tracker: RequestTracker, client: str, credentials: dict[str, Any], roles: tuple[str, ...] = ("client",)
) -> HelloRequest:
    return HelloRequest(tracker.next_id(), PROTOCOL_VERSION, client, roles, credentials)


class AsyncChannel:
    """A connection to one node on the running event loop."""

    def __init__(self, endpoint: Endpoint, tracker: RequestTracker) -> None:
        self.endpoint = endpoint
        self.tracker = tracker
        self.node_id = NodeId("")
        self.principal = ""
        self.peer_fingerprint: str | None = None
        """Fingerprint of the certificate the peer presented (None without TLS)."""
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
            connection, fingerprint = await self._dial()
            try:
                reply = await self._handshake(connection, fingerprint)
            except BaseException:
                await connection.close()
                raise
            self.node_id, self.principal = reply.node_id, reply.principal
            self.peer_fingerprint = fingerprint
            self.max_message_bytes = min(self.endpoint.max_message_bytes, reply.max_message_bytes)
            self._connection = connection
            self._reader = asyncio.create_task(self._read(connection))
            self._writer = asyncio.create_task(self._write(connection))

    async def _dial(self) -> tuple[Connection, str | None]:
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
        if not endpoint.secure:
            return connection, None
        try:
            # TOFU reads and writes the known-nodes file: keep it off the loop.
            fingerprint = await asyncio.to_thread(
                verify_peer, endpoint.trust, endpoint.address, connection.peer_certificate()
            )
        except BaseException:
            await connection.close()
            raise
        return connection, fingerprint

    async def _handshake(self, connection: Connection, fingerprint: str | None) -> HelloReply:
        # Node proofs read the key file and sign: off the loop.
        credentials = await asyncio.to_thread(self.endpoint.credentials, fingerprint)
        hello = hello_request(self.tracker, self.endpoint.client_name, credentials, self.endpoint.roles)
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
