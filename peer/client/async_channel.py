"""Channels: ordered delivery of requests to one peer, and their replies.

:class:`AsyncChannel` is the one implementation over a WebSocket, on the
running event loop.  Clients use it (directly, or through the threaded
facade in ``peer/client/sync_channel.py``), and so do nodes when they talk to the
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
import collections
import logging
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Protocol
from urllib.parse import urlsplit

from protocol.codec import Frame, decode_message, encode_message
from protocol.errors import MessageTooLarge, RemoteProtocolError, TesseraError, Unauthenticated
from protocol.ids import NodeId
from protocol.limits import DEFAULT_MAX_MESSAGE_BYTES, PROTOCOL_VERSION
from protocol.messages import (
    REPLY_TYPES,
    ErrorReply,
    HelloReply,
    HelloRequest,
    Message,
    Reply,
    Request,
    SyncReply,
    SyncRequest,
)

from peer.errors import ClientClosed, InsecureConnectionWarning, NodeUnavailable
from peer.security.proof import check_welcome
from peer.transport.tls import client_ssl_context
from peer.client.tracker import RequestTracker, rebuild_error
from peer.security.trust import NotAMember, TrustPolicy, verify_peer
from peer.transport.websocket import SINGLE_FRAME_LIMIT, Buffer, Connection, ConnectionLost, dial

__all__ = [
    "Endpoint",
    "AsyncChannel",
    "Credentials",
    "fixed_credentials",
    "dispatch_reply",
    "check_hello_reply",
    "Waiter", "hello_request", "CALL_TIMEOUT"]

log = logging.getLogger("tessera.client")

CALL_TIMEOUT = 300.0
"""Seconds a blocking call waits for its reply before NodeUnavailable."""


Credentials = Callable[[str | None], dict[str, Any]]


class Waiter(Protocol):
    """What a call's reply resolves: an asyncio or a concurrent.futures Future."""

    def done(self) -> bool: ...

    def set_result(self, result: Reply) -> Any: ...

    def set_exception(self, exception: BaseException) -> Any: ...


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
    network: bytes | None = None
    """Network key the peer must prove it holds (node-to-node links): the hello
    reply's ``membership`` is checked before anything else is sent."""

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


def dispatch_reply(
    data: Buffer, endpoint: Endpoint, tracker: RequestTracker, waiters: dict[int, Waiter]
) -> None:
    """Route one frame from a peer: a call's reply to its waiter, other errors to the tracker.

    Shared by the asyncio channel and the synchronous client channel; never raises.
    """
    try:
        reply = decode_message(data, endpoint.max_message_bytes)
    except RemoteProtocolError as exc:
        log.warning("undecodable frame from %s: %s", endpoint.url, exc)
        return
    if not isinstance(reply, REPLY_TYPES):
        log.warning("%s sent a %s request to a client", endpoint.url, reply.KIND.value)
        return
    if isinstance(reply, SyncReply):
        tracker.barrier(reply.id)
    waiter = waiters.pop(reply.id, None)
    if waiter is not None:
        if not waiter.done():
            waiter.set_result(reply)
    elif isinstance(reply, ErrorReply):
        tracker.on_error(reply)


def check_hello_reply(reply: Message, endpoint: Endpoint) -> HelloReply:
    """The hello reply, or the error it carries, as an exception."""
    if isinstance(reply, ErrorReply):
        raise rebuild_error(reply, "hello", endpoint.url)
    if not isinstance(reply, HelloReply):
        raise NodeUnavailable(f"{endpoint.url} answered hello with {reply.KIND.value}", {})
    return reply


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
        self._outbox: collections.deque[Frame] = collections.deque()
        self._writer: asyncio.Task[None] | None = None
        self._waiters: dict[int, Waiter] = {}
        self._dialing: asyncio.Lock = asyncio.Lock()
        self._redial: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def connected(self) -> bool:
        """Opened and not lost or closed since: a post now goes straight out."""
        return self._connection is not None and not self._closed

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
            connection.attach(_Sink(self, connection))
            self._flush()

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
        accepted = check_hello_reply(reply, self.endpoint)
        if self.endpoint.network is not None:
            try:
                check_welcome(
                    self.endpoint.network, accepted.node_id, fingerprint, credentials, accepted.membership
                )
            except Unauthenticated as exc:
                raise NotAMember(f"{self.endpoint.url}: {exc.message}", {}) from None
        return accepted

    def post(self, request: Request, description: str, frame: Frame | None = None) -> None:
        """Send a request without waiting for it (must run on the channel's loop).

        If the connection dropped, the request waits in the queue while the
        channel dials again; if that fails, it is reported as failed.
        """
        if self._closed:
            raise ClientClosed("this client was closed", {})
        frame = frame or self.encode(request)
        due = self.tracker.posted(request.id, description)
        self._write(frame)
        if due:
            self._write(encode_message(SyncRequest(self.tracker.next_id())))

    def encode(self, request: Request) -> Frame:
        """Encode, refusing frames the node would reject for their size."""
        frame = encode_message(request)
        if frame.nbytes > self.max_message_bytes:
            raise MessageTooLarge.for_size(
                f"{request.KIND.value} message", frame.nbytes, self.max_message_bytes
            )
        return frame

    def submit(self, request: Request, frame: Frame, waiter: Waiter) -> None:
        """Send a request whose reply resolves ``waiter`` (on the channel's loop)."""
        if self._closed:
            waiter.set_exception(ClientClosed("this client was closed", {}))
            return
        self._waiters[request.id] = waiter
        self._write(frame)

    async def call(self, request: Request, frame: Frame | None = None) -> Reply:
        """Send a request and wait for its reply (ErrorReply included)."""
        await self.open()
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self.submit(request, frame or self.encode(request), future)
        try:
            return await asyncio.wait_for(future, CALL_TIMEOUT)
        except (TimeoutError, asyncio.TimeoutError):
            raise NodeUnavailable(
                f"no reply from {self.endpoint.url} in {CALL_TIMEOUT:.0f}s", {}
            ) from None
        finally:
            self._waiters.pop(request.id, None)

    async def drained(self, keep: int = 0) -> None:
        """Wait until at most ``keep`` frames are queued (backpressure for streaming senders)."""
        while len(self._outbox) > keep and self._connection is not None:
            writer = self._writer
            if writer is None or writer.done():
                self._flush()
                writer = self._writer
            if writer is not None:
                await asyncio.wait({writer}, return_when=asyncio.FIRST_COMPLETED, timeout=0.05)

    def _write(self, frame: Frame) -> None:
        """Write now if nothing is queued ahead and the socket accepts it; else queue.

        Order is preserved: once anything is queued, everything after it is
        queued too until the writer task has drained the queue.
        """
        connection = self._connection
        if (
            connection is not None
            and not self._outbox
            and frame.nbytes <= SINGLE_FRAME_LIMIT
            and connection.send_now(frame.to_bytes())
        ):
            return
        self._outbox.append(frame)
        self._after_queue(connection)

    def _after_queue(self, connection: Connection | None) -> None:
        if connection is None:
            if not self._closed and (self._redial is None or self._redial.done()):
                self._redial = asyncio.create_task(self._reconnect())
        else:
            self._flush()

    def _flush(self) -> None:
        if self._outbox and self._connection is not None:
            if self._writer is None or self._writer.done():
                self._writer = asyncio.create_task(self._drain(self._connection))

    async def _drain(self, connection: Connection) -> None:
        """Writer task: sends queued frames in order, small ones batched, large ones streamed."""
        while self._outbox and self._connection is connection:
            small: list[bytes] = []
            while self._outbox and self._outbox[0].nbytes <= SINGLE_FRAME_LIMIT and len(small) < 256:
                small.append(self._outbox.popleft().to_bytes())
            try:
                if small:
                    if not connection.send_now(*small):
                        for data in small:
                            await connection.send_bytes(data)
                else:
                    await connection.send(self._outbox.popleft())
            except ConnectionLost as exc:
                self._lost(connection, exc)
                return
            except Exception as exc:  # the writer must not die silently
                log.exception("sending to %s failed", self.endpoint.url)
                connection.abort()
                self._lost(connection, TesseraError(f"send failed: {type(exc).__name__}", {}))
                return

    async def _reconnect(self) -> None:
        try:
            await self.open()
        except TesseraError as exc:
            self._outbox.clear()
            self.tracker.lost(exc)
            for waiter in self._take_waiters():
                waiter.set_exception(exc)

    def frame_received(self, data: Buffer) -> None:
        """A message from the peer (push mode, on the loop)."""
        dispatch_reply(data, self.endpoint, self.tracker, self._waiters)

    def _take_waiters(self) -> list[Waiter]:
        waiters = list(self._waiters.values())
        self._waiters.clear()
        return [w for w in waiters if not w.done()]

    def _lost(self, connection: Connection, exc: TesseraError) -> None:
        if self._connection is not connection:
            return
        self._connection = None
        error = NodeUnavailable(f"connection to {self.endpoint.url} lost: {exc.message}", {})
        self.tracker.lost(error)
        for waiter in self._take_waiters():
            waiter.set_exception(error)
        self._outbox.clear()
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()

    async def aclose(self) -> None:
        """Send what is queued, then close the connection."""
        self._closed = True
        writer = self._writer
        if writer is not None and not writer.done():
            try:
                await asyncio.wait_for(asyncio.shield(writer), 10)
            except (Exception, asyncio.CancelledError):
                pass
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
        for waiter in self._take_waiters():
            waiter.set_exception(ClientClosed("this client was closed", {}))


class _Sink:
    """Routes a connection's push-mode events to its channel."""

    def __init__(self, channel: AsyncChannel, connection: Connection) -> None:
        self.channel = channel
        self.connection = connection

    def frame_received(self, data: Buffer) -> None:
        self.channel.frame_received(data)

    def text_received(self) -> None:
        log.warning("%s sent a text frame; ignoring it", self.channel.endpoint.url)

    def connection_lost(self) -> None:
        self.channel._lost(self.connection, ConnectionLost.from_close(None, ""))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TesseraError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
