"""VirtualNode: a whole node inside the user's process, for notebooks and unit tests.

It is a real node (store, executor, session) driven through a channel that
encodes every request and every reply with the wire codec, so code that runs
against a ``VirtualNode`` exercises the same validation, allowlist and error
paths as a remote one; only the socket is missing.  Heavy commands run
inline: there is no event loop to protect.
"""

from __future__ import annotations

import concurrent.futures
import secrets
import threading

from protocol.codec import decode_message, encode_message
from protocol.errors import TesseraError
from protocol.ids import NodeId, RequestId
from protocol.limits import DEFAULT_MAX_MESSAGE_BYTES
from protocol.messages import REPLY_TYPES, ErrorReply, HelloReply, Reply, Request

from ..errors import ClientClosed
from peer.server.auth import ANONYMOUS_SCHEME, AnonymousAuthenticator
from ..server.executor import Executor
from ..server.session import Outcome, Session, Work
from ..server.store import MemoryStore
from ..settings import validate_node_id
from peer.client.async_channel import hello_request
from .handle import NodeHandle
from peer.client.tracker import RequestTracker, rebuild_error

__all__ = ["VirtualNode"]


class LocalChannel:
    """A :class:`~peer.client.sync_channel.Channel` straight into a :class:`Session`."""

    def __init__(self, session: Session, client_name: str) -> None:
        self._session = session
        self._lock = threading.Lock()
        self._closed = False
        self.tracker = RequestTracker(session.node_id)
        credentials = {"scheme": ANONYMOUS_SCHEME, "secret": secrets.token_bytes(32)}
        reply = self._roundtrip(hello_request(self.tracker, client_name, credentials))
        if isinstance(reply, ErrorReply):
            raise rebuild_error(reply, "hello", session.node_id)
        assert isinstance(reply, HelloReply)
        self.node_id: NodeId = reply.node_id
        self.principal: str = reply.principal

    def _roundtrip(self, request: Request) -> Reply | None:
        if self._closed:
            raise ClientClosed("this virtual node was closed", {})
        frame = encode_message(request).to_bytes()
        with self._lock:
            step = self._session.receive(frame)
            outcome = step.run() if isinstance(step, Work) else step
            # A virtual node has no TransferService, so no AsyncWork is ever produced.
            assert isinstance(outcome, Outcome)
        if outcome.reply is None:
            return None
        reply = decode_message(encode_message(outcome.reply).to_bytes())
        if not isinstance(reply, REPLY_TYPES):
            raise TesseraError(f"session answered with a {reply.KIND.value}", {})
        return reply

    def post(self, request: Request, description: str) -> None:
        self.tracker.posted(request.id, description)
        try:
            reply = self._roundtrip(request)
        except TesseraError as exc:
            self.tracker.failed_locally(exc, description)
            return
        if isinstance(reply, ErrorReply):
            self.tracker.on_error(reply)
        self.tracker.barrier(RequestId(request.id + 1))

    def call(self, request: Request) -> Reply:
        reply = self._roundtrip(request)
        if reply is None:
            raise TesseraError(f"{request.KIND.value} got no reply", {})
        return reply

    def call_async(self, request: Request) -> concurrent.futures.Future[Reply]:
        future: concurrent.futures.Future[Reply] = concurrent.futures.Future()
        try:
            future.set_result(self.call(request))
        except TesseraError as exc:
            future.set_exception(exc)
        return future

    def close(self) -> None:
        self._closed = True


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
