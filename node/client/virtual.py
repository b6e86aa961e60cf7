"""VirtualNode: a whole node inside the user's process, for notebooks and unit tests.

It is a real node (store, executor, session) driven through a channel that
encodes every request and every reply with the wire codec, so code that runs
against a ``VirtualNode`` exercises the same validation, allowlist and error
paths as a remote one; only the socket is missing.  That channel is a third
driver of the same :class:`~peer.client.core.ChannelCore` as the network
channels (hello, request ids, correlation, barriers), with the session in
place of a connection.  Heavy commands run inline: there is no event loop
to protect.
"""

from __future__ import annotations

import concurrent.futures
import secrets
import threading
from typing import TypeVar

from protocol.codec import Frame, encode_message
from protocol.errors import TesseraError
from protocol.ids import NodeId
from protocol.limits import DEFAULT_MAX_MESSAGE_BYTES
from protocol.messages import Reply

from peer.client.core import Build, Built, ChannelCore, CoreFacts
from peer.server.auth import ANONYMOUS_SCHEME, AnonymousAuthenticator

from ..server.executor import Executor
from ..server.session import Outcome, Session, Work
from ..server.store import MemoryStore
from ..settings import validate_node_id
from .handle import NodeHandle

__all__ = ["VirtualNode", "LocalChannel"]

R = TypeVar("R", bound=Reply)



class LocalChannel(CoreFacts):
    """A :class:`~peer.client.sync_channel.Channel` straight into a :class:`Session`."""

    def __init__(self, session: Session, client_name: str) -> None:
        self._session = session
        self._lock = threading.Lock()
        """One request at a time through the session and the core."""
        self._core: ChannelCore[object] = ChannelCore(session.node_id, DEFAULT_MAX_MESSAGE_BYTES)
        self._waiter = object()
        """Marks the one call in flight: the session answers it before the lock is released."""
        credentials = {"scheme": ANONYMOUS_SCHEME, "secret": secrets.token_bytes(32)}
        with self._lock:
            data = self._roundtrip(self._core.hello(client_name, ("client",), credentials))
            assert data is not None, "a session answers every hello"
            self._core.welcome(data, None, None)

    @property
    def url(self) -> None:
        """Nothing to dial: the node is in this process."""
        return None

    def _roundtrip(self, frame: Frame) -> bytes | None:
        """The session's answer to one frame, encoded as the wire would carry it."""
        step = self._session.receive(frame.to_bytes())
        outcome = step.run() if isinstance(step, Work) else step
        # A virtual node has no TransferService, so no AsyncWork is ever produced.
        assert isinstance(outcome, Outcome)
        if outcome.reply is None:
            return None
        return encode_message(outcome.reply).to_bytes()

    def post(self, build: Build, description: str) -> None:
        """Run the request now; a failure, even to encode it, is reported at the next sync point."""
        with self._lock:
            try:
                frames = self._core.post(build, description)
            except TesseraError as exc:
                self._core.failed_locally(exc, description)
                return
            for frame in frames:
                try:
                    data = self._roundtrip(frame)
                except TesseraError as exc:
                    self._core.failed_locally(exc, description)
                    return
                if data is not None:
                    self._core.receive(data)  # an error, or a barrier's confirmation

    def call(self, build: Build) -> Reply:
        built = Built(build)
        with self._lock:
            request_id, frame = self._core.call(built, self._waiter)
            try:
                data = self._roundtrip(frame)
                answer = self._core.receive(data) if data is not None else None
            finally:
                self._core.forget(request_id)
        if answer is None:
            raise TesseraError(f"{built.kind} got no reply", {})
        return answer[1]

    def call_async(self, build: Build) -> concurrent.futures.Future[Reply]:
        future: concurrent.futures.Future[Reply] = concurrent.futures.Future()
        try:
            future.set_result(self.call(build))
        except TesseraError as exc:
            future.set_exception(exc)
        return future

    def settle(self, reply: Reply, expected: type[R], description: str) -> R:
        with self._lock:
            return self._core.settle(reply, expected, description)

    def close(self) -> None:
        with self._lock:
            self._core.close()


class VirtualNode(NodeHandle):
    """An in-process node with the same API as :class:`~node.RemoteNode`.

    >>> bob = VirtualNode("bob")
    >>> (bob.send(torch.tensor([1, 2])) + 1).get()
    tensor([2, 3])
    """

    def __init__(
        self, node_id: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    ) -> None:
        nid = validate_node_id(node_id)
        self.store = MemoryStore()
        executor = Executor(nid, self.store)
        session = Session(
            nid, ("virtual",), executor, self.store, AnonymousAuthenticator(), max_message_bytes
        )
        super().__init__(LocalChannel(session, "virtual-client"))
