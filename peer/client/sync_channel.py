"""The synchronous client channel: requests written from the caller's thread.

:class:`SyncChannel` backs ``node.connect`` and ``node.Gateway``.  A request
is encoded and written in the thread that makes it, with no hand-off to an
event loop; replies arrive on websockets' background reader thread, which
routes them (:func:`~peer.client.async_channel.dispatch_reply`) to the waiting
caller or, for failed pipelined requests, to the tracker.  Scripts and
notebooks (whose own loop may be running) never see an event loop.

A dropped connection fails what was in flight with :class:`NodeUnavailable`;
the next request dials again with the same credentials, which reach the
same principal and so the same objects.
"""

from __future__ import annotations

import concurrent.futures
import threading
import warnings
from typing import Protocol

from protocol.codec import Frame, decode_message, encode_message
from protocol.errors import MessageTooLarge, TesseraError
from protocol.ids import NodeId
from protocol.messages import Reply, Request, SyncRequest

from peer.errors import ClientClosed, InsecureConnectionWarning, NodeUnavailable
from peer.client.async_channel import (
    CALL_TIMEOUT,
    Endpoint,
    Waiter,
    check_hello_reply,
    dispatch_reply,
    hello_request,
)
from peer.transport.sync_websocket import SyncConnection, dial_sync
from peer.transport.tls import client_ssl_context
from peer.client.tracker import RequestTracker
from peer.security.trust import verify_peer
from peer.transport.websocket import SINGLE_FRAME_LIMIT, Buffer, ConnectionLost

__all__ = ["Channel", "SyncChannel"]


class Channel(Protocol):
    """What a client handle needs: ordered posts and blocking calls."""

    tracker: RequestTracker

    @property
    def node_id(self) -> NodeId: ...

    @property
    def principal(self) -> str: ...

    def post(self, request: Request, description: str) -> None: ...

    def call(self, request: Request) -> Reply: ...

    def call_async(self, request: Request) -> concurrent.futures.Future[Reply]: ...

    def close(self) -> None: ...


class SyncChannel:
    """A connection to one node for synchronous code."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.tracker = RequestTracker(endpoint.url)
        self.node_id = NodeId("")
        self.principal = ""
        self.peer_fingerprint: str | None = None
        self.max_message_bytes = endpoint.max_message_bytes
        self._connection: SyncConnection | None = None
        self._waiters: dict[int, Waiter] = {}
        self._dialing = threading.Lock()
        self._closed = False
        self._open()

    # -- connecting --------------------------------------------------------

    def _open(self) -> SyncConnection:
        """The live connection, dialing (again) if needed; NodeUnavailable if not possible."""
        with self._dialing:
            connection = self._connection
            if connection is not None:
                return connection
            if self._closed:
                raise ClientClosed("this client was closed", {})
            connection = self._dial()
            self._connection = connection
            connection.attach(_Sink(self, connection))
            return connection

    def _dial(self) -> SyncConnection:
        endpoint = self.endpoint
        if not endpoint.secure:
            warnings.warn(
                f"{endpoint.url} is not TLS: traffic and credentials travel in plaintext",
                InsecureConnectionWarning,
                stacklevel=5,
            )
        context = client_ssl_context(endpoint.trust) if endpoint.secure else None
        try:
            connection = dial_sync(endpoint.url, context, endpoint.max_message_bytes, endpoint.open_timeout)
        except (OSError, ConnectionLost) as exc:
            reason = exc.message if isinstance(exc, TesseraError) else (exc.strerror or str(exc))
            raise NodeUnavailable(f"cannot reach {endpoint.url}: {str(reason).lower()}", {}) from exc
        try:
            fingerprint = None
            if endpoint.secure:
                fingerprint = verify_peer(endpoint.trust, endpoint.address, connection.peer_certificate())
            hello = hello_request(
                self.tracker, endpoint.client_name, endpoint.credentials(fingerprint), endpoint.roles
            )
            connection.send(encode_message(hello))
            reply = check_hello_reply(
                decode_message(connection.recv(endpoint.open_timeout), endpoint.max_message_bytes),
                endpoint,
            )
        except ConnectionLost as exc:
            connection.close()
            raise NodeUnavailable(f"handshake with {endpoint.url} failed: {exc.message}", {}) from exc
        except BaseException:
            connection.close()
            raise
        self.node_id, self.principal = reply.node_id, reply.principal
        self.peer_fingerprint = fingerprint
        self.max_message_bytes = min(endpoint.max_message_bytes, reply.max_message_bytes)
        return connection

    # -- requests ------------------------------------------------------------

    def encode(self, request: Request) -> Frame:
        """Encode, refusing frames the node would reject for their size."""
        frame = encode_message(request)
        if frame.nbytes > self.max_message_bytes:
            raise MessageTooLarge.for_size(
                f"{request.KIND.value} message", frame.nbytes, self.max_message_bytes
            )
        return frame

    def post(self, request: Request, description: str) -> None:
        """Send without waiting; a failure on the node surfaces at the next sync point."""
        frame = self.encode(request)
        connection = self._open()
        if self.tracker.posted(request.id, description):
            barrier = SyncRequest(self.tracker.next_id())
            self._write(connection, frame, encode_message(barrier))
        else:
            self._write(connection, frame)

    def call_async(self, request: Request) -> concurrent.futures.Future[Reply]:
        """Send now; the future resolves with the reply (for windows of calls)."""
        frame = self.encode(request)
        connection = self._open()
        future: concurrent.futures.Future[Reply] = concurrent.futures.Future()
        self._waiters[request.id] = future
        try:
            self._write(connection, frame)
        except BaseException:
            self._waiters.pop(request.id, None)
            raise
        return future

    def call(self, request: Request) -> Reply:
        """Send and block until the reply (an ErrorReply included)."""
        future = self.call_async(request)
        try:
            return future.result(timeout=CALL_TIMEOUT)
        except concurrent.futures.TimeoutError:
            self._waiters.pop(request.id, None)
            raise NodeUnavailable(
                f"no reply from {self.endpoint.url} in {CALL_TIMEOUT:.0f}s", {}
            ) from None

    def _write(self, connection: SyncConnection, *frames: Frame) -> None:
        try:
            if all(frame.nbytes <= SINGLE_FRAME_LIMIT for frame in frames):
                connection.send_many(*(frame.to_bytes() for frame in frames))
            else:
                for frame in frames:
                    connection.send(frame)
        except ConnectionLost as exc:
            self._lost(connection, exc)
            raise NodeUnavailable(f"connection to {self.endpoint.url} lost: {exc.message}", {}) from None

    # -- replies (websockets' reader thread) -------------------------------------

    def frame_received(self, data: Buffer) -> None:
        dispatch_reply(data, self.endpoint, self.tracker, self._waiters)

    def _lost(self, connection: SyncConnection, exc: TesseraError) -> None:
        with self._dialing:
            if self._connection is not connection:
                return
            self._connection = None
        error = NodeUnavailable(f"connection to {self.endpoint.url} lost: {exc.message}", {})
        self.tracker.lost(error)
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(error)

    def close(self) -> None:
        self._closed = True
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class _Sink:
    """Routes a connection's events to its channel (on websockets' reader thread)."""

    def __init__(self, channel: SyncChannel, connection: SyncConnection) -> None:
        self.channel = channel
        self.connection = connection

    def frame_received(self, data: Buffer) -> None:
        self.channel.frame_received(data)

    def text_received(self) -> None:
        pass

    def connection_lost(self) -> None:
        self.channel._lost(self.connection, ConnectionLost.from_close(None, ""))

