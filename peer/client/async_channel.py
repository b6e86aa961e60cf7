"""The asyncio driver of the channel core: ordered delivery to one peer on the running loop.

Clients use :class:`AsyncChannel` (``node.connect_async``), and so do nodes
when they talk to the gateway or to another node.  Every decision (hello,
ids, correlation, barriers, the membership check) is the
:class:`~peer.client.core.ChannelCore`'s; this driver dials, verifies the
peer's certificate before anything else is sent, makes credentials for that
very peer (node proofs bind the peer's fingerprint) off the loop, writes
what the core hands it (small frames at once, the rest through one writer
task that keeps their order) and feeds it what the connection delivers.

A dropped connection fails what was in flight with :class:`NodeUnavailable`;
the next use dials again with fresh credentials for the same identity,
which reach the same principal and so the same objects.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TypeVar

from protocol.codec import Frame
from protocol.errors import TesseraError
from protocol.ids import NodeId, RequestId
from protocol.messages import Reply

from peer.errors import ClientClosed, NodeUnavailable
from peer.security.trust import verify_peer
from peer.transport.websocket import SINGLE_FRAME_LIMIT, Buffer, Connection, ConnectionLost, dial

from .core import Build, ChannelCore, CoreFacts, LinkState
from .dialing import connection_lost, handshake_failed, tls_context, unreachable
from .endpoint import CALL_TIMEOUT, Endpoint

__all__ = ["AsyncChannel"]

log = logging.getLogger("tessera.client")

R = TypeVar("R", bound=Reply)

Waiter = asyncio.Future[Reply]


class AsyncChannel(CoreFacts):
    """A connection to one node on the running event loop."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._core: ChannelCore[Waiter] = ChannelCore(endpoint.url, endpoint.max_message_bytes)
        self._connection: Connection | None = None
        self._outbox: collections.deque[Frame] = collections.deque()
        self._writer: asyncio.Task[None] | None = None
        self._dialing: asyncio.Lock = asyncio.Lock()
        self._redial: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return self.endpoint.url

    @property
    def connected(self) -> bool:
        """Opened and not lost or closed since: a post now goes straight out."""
        return self._connection is not None and self._core.state is not LinkState.CLOSED

    # -- connecting --------------------------------------------------------

    async def open(self) -> None:
        """Dial, verify the certificate, and complete the handshake."""
        async with self._dialing:
            if self._connection is not None:
                return
            if self._core.state is LinkState.CLOSED:
                raise ClientClosed("this client was closed", {})
            connection, fingerprint = await self._dial()
            try:
                await self._handshake(connection, fingerprint)
            except BaseException:
                self._core.hello_failed()
                await connection.close()
                raise
            self._connection = connection
            connection.attach(_Sink(self, connection))
            self._flush()

    async def _dial(self) -> tuple[Connection, str | None]:
        endpoint = self.endpoint
        ssl_context = tls_context(endpoint, stacklevel=4)
        try:
            connection = await dial(
                endpoint.url, ssl_context, endpoint.max_message_bytes, endpoint.open_timeout
            )
        except (OSError, ConnectionLost) as exc:
            raise unreachable(endpoint, exc) from exc
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

    async def _handshake(self, connection: Connection, fingerprint: str | None) -> None:
        endpoint = self.endpoint
        # Node proofs read the key file and sign: off the loop.
        credentials = await asyncio.to_thread(endpoint.credentials, fingerprint)
        hello = self._core.hello(endpoint.client_name, endpoint.roles, credentials)
        try:
            await connection.send(hello)
            data = await asyncio.wait_for(connection.recv(), endpoint.open_timeout)
        except (ConnectionLost, TimeoutError, asyncio.TimeoutError) as exc:
            raise handshake_failed(endpoint, exc) from exc
        self._core.welcome(data, fingerprint, endpoint.network)

    # -- requests ------------------------------------------------------------

    def post(self, build: Build, description: str) -> None:
        """Send a request without waiting for it (must run on the channel's loop).

        If the connection dropped, the request waits in the queue while the
        channel dials again; if that fails, it is reported as failed.
        """
        for frame in self._core.post(build, description):
            self._write(frame)

    def submit(self, build: Build) -> Waiter:
        """Send a request now; the future resolves with its reply (on the channel's loop)."""
        return self._submit(build)[1]

    def _submit(self, build: Build) -> tuple[RequestId, Waiter]:
        future: Waiter = asyncio.get_running_loop().create_future()
        request_id, frame = self._core.call(build, future)
        try:
            self._write(frame)
        except BaseException:
            self._core.forget(request_id)
            raise
        return request_id, future

    async def call(self, build: Build) -> Reply:
        """Send a request and wait for its reply (ErrorReply included)."""
        await self.open()
        request_id, future = self._submit(build)
        try:
            return await asyncio.wait_for(future, CALL_TIMEOUT)
        except (TimeoutError, asyncio.TimeoutError):
            raise NodeUnavailable(
                f"no reply from {self.endpoint.url} in {CALL_TIMEOUT:.0f}s", {}
            ) from None
        finally:
            self._core.forget(request_id)

    def settle(self, reply: Reply, expected: type[R], description: str) -> R:
        """A reply at a synchronisation point (:meth:`ChannelCore.settle`)."""
        return self._core.settle(reply, expected, description)

    def take_failure(self) -> TesseraError | None:
        """The first failure of a posted request since the last one was taken, if any."""
        return self._core.take_failure()

    async def drained(self, keep: int = 0) -> None:
        """Wait until at most ``keep`` frames are queued (backpressure for streaming senders)."""
        while len(self._outbox) > keep and self._connection is not None:
            writer = self._writer
            if writer is None or writer.done():
                self._flush()
                writer = self._writer
            if writer is not None:
                await asyncio.wait({writer}, return_when=asyncio.FIRST_COMPLETED, timeout=0.05)

    # -- writing -------------------------------------------------------------

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
            if self._core.state is not LinkState.CLOSED and (self._redial is None or self._redial.done()):
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
            self._fail(exc)

    # -- replies and losses ----------------------------------------------------

    def frame_received(self, data: Buffer) -> None:
        """A message from the peer (push mode, on the loop)."""
        answer = self._core.receive(data)
        if answer is not None:
            waiter, reply = answer
            if not waiter.done():
                waiter.set_result(reply)

    def _fail(self, error: TesseraError) -> None:
        for waiter in self._core.lost(error):
            if not waiter.done():
                waiter.set_exception(error)

    def _lost(self, connection: Connection, exc: TesseraError) -> None:
        if self._connection is not connection:
            return
        self._connection = None
        self._fail(connection_lost(self.endpoint, exc))
        self._outbox.clear()
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()

    async def aclose(self) -> None:
        """Send what is queued, then close the connection."""
        self._core.close()
        writer = self._writer
        if writer is not None and not writer.done():
            try:
                await asyncio.wait_for(asyncio.shield(writer), 10)
            except (Exception, asyncio.CancelledError):
                pass
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
        self._fail(ClientClosed("this client was closed", {}))


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
