"""The threaded driver of the channel core: requests written from the caller's thread.

:class:`SyncChannel` backs ``node.connect`` and ``node.Gateway``.  A request
is built, encoded and written in the thread that makes it, with no hand-off
to an event loop; replies arrive on websockets' background reader thread,
which feeds them to the :class:`~peer.client.core.ChannelCore` and resolves
the waiting caller's future.  Scripts and notebooks (whose own loop may be
running) never see an event loop.  Every decision (hello, ids, correlation,
barriers) is the core's; this module only dials, writes, reads and waits.

A dropped connection fails what was in flight with :class:`NodeUnavailable`;
the next request dials again with the same credentials, which reach the
same principal and so the same objects.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Protocol, TypeVar

from protocol.codec import Frame
from protocol.errors import TesseraError
from protocol.ids import NodeId, RequestId
from protocol.messages import Reply

from peer.errors import ClientClosed, NodeUnavailable
from peer.security.trust import verify_peer
from peer.transport.sync_websocket import SyncConnection, dial_sync
from peer.transport.websocket import SINGLE_FRAME_LIMIT, Buffer, ConnectionLost

from .core import Build, ChannelCore, CoreFacts, LinkState
from .dialing import connection_lost, handshake_failed, tls_context, unreachable
from .endpoint import CALL_TIMEOUT, Endpoint

__all__ = ["Channel", "SyncChannel"]

R = TypeVar("R", bound=Reply)

Waiter = concurrent.futures.Future[Reply]


class Channel(Protocol):
    """What a synchronous client handle needs: ordered posts, blocking and windowed calls."""

    @property
    def node_id(self) -> NodeId: ...

    @property
    def principal(self) -> str: ...

    @property
    def peer_fingerprint(self) -> str | None:
        """The certificate this connection verified (None in-process or without TLS)."""
        ...

    @property
    def url(self) -> str | None:
        """The URL dialed; None for a channel into a node in this very process."""
        ...

    @property
    def requests_sent(self) -> int: ...

    def post(self, build: Build, description: str) -> None: ...

    def call(self, build: Build) -> Reply: ...

    def call_async(self, build: Build) -> concurrent.futures.Future[Reply]: ...

    def settle(self, reply: Reply, expected: type[R], description: str) -> R: ...

    def close(self) -> None: ...


class SyncChannel(CoreFacts):
    """A connection to one node for synchronous code."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._core: ChannelCore[Waiter] = ChannelCore(endpoint.url, endpoint.max_message_bytes)
        self._mutex = threading.Lock()
        """Guards the core: callers' threads and the reader thread both use it."""
        self._sending = threading.Lock()
        """Held from issuing an id to writing its frame, so frames go out in id order."""
        self._dialing = threading.Lock()
        self._connection: SyncConnection | None = None
        self._open()

    @property
    def url(self) -> str:
        return self.endpoint.url

    # -- connecting --------------------------------------------------------

    def _open(self) -> SyncConnection:
        """The live connection, dialing (again) if needed; NodeUnavailable if not possible."""
        with self._dialing:
            connection = self._connection
            if connection is not None:
                return connection
            if self._core.state is LinkState.CLOSED:
                raise ClientClosed("this client was closed", {})
            connection = self._dial()
            self._connection = connection
            connection.attach(_Sink(self, connection))
            return connection

    def _dial(self) -> SyncConnection:
        """Dial, verify the certificate, then hello: the order :mod:`.dialing` describes."""
        endpoint = self.endpoint
        context = tls_context(endpoint, stacklevel=5)
        try:
            connection = dial_sync(endpoint.url, context, endpoint.max_message_bytes, endpoint.open_timeout)
        except (OSError, ConnectionLost) as exc:
            raise unreachable(endpoint, exc) from exc
        try:
            fingerprint = None
            if endpoint.secure:
                fingerprint = verify_peer(endpoint.trust, endpoint.address, connection.peer_certificate())
            credentials = endpoint.credentials(fingerprint)
            with self._mutex:
                hello = self._core.hello(endpoint.client_name, endpoint.roles, credentials)
            connection.send(hello)
            data = connection.recv(endpoint.open_timeout)
            with self._mutex:
                self._core.welcome(data, fingerprint, endpoint.network)
        except BaseException as exc:
            with self._mutex:
                self._core.hello_failed()
            connection.close()
            if isinstance(exc, ConnectionLost):
                raise handshake_failed(endpoint, exc) from exc
            raise
        return connection

    # -- requests ------------------------------------------------------------

    def post(self, build: Build, description: str) -> None:
        """Send without waiting; a failure on the node surfaces at the next sync point."""
        connection = self._connection or self._open()
        with self._sending:
            with self._mutex:
                frames = self._core.post(build, description)
            self._write(connection, frames)

    def call_async(self, build: Build) -> concurrent.futures.Future[Reply]:
        """Send now; the future resolves with the reply (for windows of calls)."""
        return self._submit(build)[1]

    def _submit(self, build: Build) -> tuple[RequestId, Waiter]:
        connection = self._connection or self._open()
        future: Waiter = concurrent.futures.Future()
        with self._sending:
            with self._mutex:
                request_id, frame = self._core.call(build, future)
            try:
                self._write(connection, (frame,))
            except BaseException:
                with self._mutex:
                    self._core.forget(request_id)
                raise
        return request_id, future

    def call(self, build: Build) -> Reply:
        """Send and block until the reply (an ErrorReply included)."""
        request_id, future = self._submit(build)
        try:
            return future.result(timeout=CALL_TIMEOUT)
        except concurrent.futures.TimeoutError:
            with self._mutex:
                self._core.forget(request_id)
            raise NodeUnavailable(
                f"no reply from {self.endpoint.url} in {CALL_TIMEOUT:.0f}s", {}
            ) from None

    def settle(self, reply: Reply, expected: type[R], description: str) -> R:
        """A reply at a synchronisation point (:meth:`ChannelCore.settle`)."""
        with self._mutex:
            return self._core.settle(reply, expected, description)

    def _write(self, connection: SyncConnection, frames: tuple[Frame, ...]) -> None:
        try:
            if all(frame.nbytes <= SINGLE_FRAME_LIMIT for frame in frames):
                connection.send_many(*(frame.to_bytes() for frame in frames))
            else:
                for frame in frames:
                    connection.send(frame)
        except ConnectionLost as exc:
            self._lost(connection, exc)
            raise connection_lost(self.endpoint, exc) from None

    # -- replies (websockets' reader thread) -------------------------------------

    def frame_received(self, data: Buffer) -> None:
        with self._mutex:
            answer = self._core.receive(data)
        if answer is not None:
            waiter, reply = answer
            if not waiter.done():
                waiter.set_result(reply)

    def _lost(self, connection: SyncConnection, exc: TesseraError) -> None:
        error = connection_lost(self.endpoint, exc)
        with self._dialing:  # the core learns of the loss before anyone may dial again
            if self._connection is not connection:
                return
            self._connection = None
            with self._mutex:
                waiters = self._core.lost(error)
        _fail(waiters, error)

    def close(self) -> None:
        with self._mutex:
            self._core.close()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
        error = ClientClosed("this client was closed", {})
        with self._mutex:
            waiters = self._core.lost(error)
        _fail(waiters, error)


def _fail(waiters: list[Waiter], error: TesseraError) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(error)


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
