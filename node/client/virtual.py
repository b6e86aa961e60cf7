"""VirtualNode: a whole node inside the user's process, for notebooks and unit tests.

It is a real node (store, executor, session, transfers, secret-sharing
service) driven through a channel that encodes every request and every
reply with the wire codec, so code that runs against a ``VirtualNode``
exercises the same validation, allowlist and error paths as a remote one;
only the socket is missing.  That channel is a third driver of the same
:class:`~peer.client.core.ChannelCore` as the network channels (hello,
request ids, correlation, barriers), with a
:class:`~node.server.local_connection.LocalConnection` in place of a connection:
requests are answered inline while the node is idle, and work that waits
for other nodes (a secret-sharing step, a deal) runs on the in-process
network's event loop thread, later requests waiting behind it in order.

VirtualNodes of one :class:`~node.server.inprocess.InProcessNetwork` (the
process's default unless one is given) are each other's peers: they can be
the parties and the crypto provider of a secret sharing, linked node to
node with no sockets, each proving its in-process identity (which stands in
for the certificate: ``fingerprint`` is its fingerprint) to the others.
"""

from __future__ import annotations

import concurrent.futures
import secrets
import threading
from typing import TypeVar

from protocol.errors import TesseraError
from protocol.ids import NodeId
from protocol.limits import DEFAULT_MAX_MESSAGE_BYTES
from protocol.messages import Reply

from peer.client.core import Build, ChannelCore, CoreFacts, LinkState
from peer.client.endpoint import CALL_TIMEOUT
from peer.errors import NodeUnavailable
from peer.server.auth import ANONYMOUS_SCHEME

from ..server.inprocess import DEFAULT_NETWORK, InProcessNetwork, InProcessNode
from ..server.local_connection import LocalConnection
from ..server.store import MemoryStore, Quota
from ..settings import validate_node_id
from .handle import NodeHandle

__all__ = ["VirtualNode", "LocalChannel"]

R = TypeVar("R", bound=Reply)

Waiter = concurrent.futures.Future[Reply]


class LocalChannel(CoreFacts):
    """A :class:`~peer.client.sync_channel.Channel` into an in-process node's :class:`LocalConnection`."""

    def __init__(self, node: InProcessNode, client_name: str) -> None:
        self._lock = threading.Lock()
        """Guards the core: the user's threads and the network's loop thread both use it."""
        self._core: ChannelCore[Waiter] = ChannelCore(node.node_id, node.max_message_bytes)
        self._hello: list[bytes] = []
        self._connection: LocalConnection = node.connect(self._received, "local", self._lost)
        credentials = {"scheme": ANONYMOUS_SCHEME, "secret": secrets.token_bytes(32)}
        with self._lock:
            frame = self._core.hello(client_name, ("client",), credentials)
        self._connection.feed(frame.to_bytes())  # an idle connection answers inline
        with self._lock:
            assert self._hello, "a session answers every hello"
            # The node's in-process identity stands in for the certificate a TLS connection verifies.
            self._core.welcome(self._hello.pop(), node.identity.fingerprint, None)

    @property
    def url(self) -> None:
        """Nothing to dial: the node is in this process."""
        return None

    def _received(self, data: bytes) -> None:
        """An answer from the node (inline in the feeding thread, or on the loop thread)."""
        with self._lock:
            if self._core.state is LinkState.GREETING:
                self._hello.append(data)
                return
            answer = self._core.receive(data)
        if answer is not None:
            waiter, reply = answer
            if not waiter.done():
                waiter.set_result(reply)

    def _lost(self) -> None:
        """The node closed this connection (it found a protocol violation): fail every waiter, for good."""
        error = NodeUnavailable(f"{self._core.node_id} closed the connection", {})
        with self._lock:
            if self._core.state is LinkState.CLOSED:
                return
            waiters = self._core.lost(error)
            self._core.close()  # an in-process connection is not dialed again
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)

    def post(self, build: Build, description: str) -> None:
        """Send the request now; a failure, even to encode it, is reported at the next sync point."""
        with self._lock:
            try:
                frames = self._core.post(build, description)
            except TesseraError as exc:
                if self._core.state is LinkState.CLOSED:
                    raise
                self._core.failed_locally(exc, description)
                return
        for frame in frames:
            self._connection.feed(frame.to_bytes())

    def call_async(self, build: Build) -> Waiter:
        future: Waiter = concurrent.futures.Future()
        with self._lock:
            _, frame = self._core.call(build, future)
        self._connection.feed(frame.to_bytes())
        return future

    def call(self, build: Build) -> Reply:
        future: Waiter = concurrent.futures.Future()
        with self._lock:
            request_id, frame = self._core.call(build, future)
        try:
            self._connection.feed(frame.to_bytes())
            return future.result(timeout=CALL_TIMEOUT)
        except concurrent.futures.TimeoutError:
            raise NodeUnavailable(f"no reply from {self._core.node_id} in {CALL_TIMEOUT:.0f}s", {}) from None
        finally:
            with self._lock:
                self._core.forget(request_id)

    def settle(self, reply: Reply, expected: type[R], description: str) -> R:
        with self._lock:
            return self._core.settle(reply, expected, description)

    def close(self) -> None:
        with self._lock:
            if self._core.state is LinkState.CLOSED:
                return
            self._core.close()
        self._connection.close()


class VirtualNode(NodeHandle):
    """An in-process node with the same API as :class:`~node.RemoteNode`.

    >>> bob = VirtualNode("bob")
    >>> (bob.send(torch.tensor([1, 2])) + 1).get()
    tensor([2, 3])

    VirtualNodes can be the parties and the crypto provider of
    :func:`node.share` among themselves (never mixed with networked nodes).
    """

    def __init__(
        self,
        node_id: str,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        network: InProcessNetwork | None = None,
        quota: Quota | None = None,
    ) -> None:
        """``quota``: per-principal limits (default: a networked node's, 100,000 objects and 8 GiB)."""
        nid: NodeId = validate_node_id(node_id)
        self.server: InProcessNode = InProcessNode(nid, network or DEFAULT_NETWORK, max_message_bytes, quota)
        self.store: MemoryStore = self.server.store
        super().__init__(LocalChannel(self.server, "virtual-client"))

    @property
    def in_process_url(self) -> str:
        """Where other in-process nodes reach this one (``wss://<random>.in-process.invalid:1``)."""
        return self.server.identity.url

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.server.network.leave(self.server)
