"""Nodes inside one Python process, linked to each other with no sockets.

:class:`~node.client.virtual.VirtualNode` is built from the pieces here, so
in-process nodes can play every multi-party role a networked node plays
(secret-sharing party, crypto provider, data owner, transfer source)
through the same sessions, codec, mailboxes, policies and quotas:

- :class:`LocalIdentity` stands in for the certificate.  Each node draws a
  random secret; its fingerprint (``sha256:`` and 64 hex digits, the shape
  of a certificate fingerprint) is what clients pin and what mailboxes and
  reservations check senders against.  A node proves it with an HMAC over
  the server it greets and a fresh nonce (credential scheme
  :data:`IN_PROCESS_SCHEME`), which only the holder of the secret can make.
- :class:`InProcessNetwork` is the process's directory of such nodes and
  its one event loop thread (``asyncio`` work such as an ``mpc_step`` runs
  there).  It is also the pinning step: :meth:`InProcessNetwork.dial`
  refuses a node whose identity is not the fingerprint the caller pinned
  (:class:`~peer.security.trust.CertificateMismatch`), exactly like a TLS
  link pinned to a certificate.
- :class:`~node.server.local_connection.LocalConnection` feeds one
  connection's frames to its :class:`~node.server.session.Session` in
  order (inline while idle, behind an ``AsyncWork`` on the loop when busy).
- :class:`LocalLink` is a node-to-node link (an
  :class:`~peer.client.async_channel.AsyncChannel` whose transport is a
  :class:`LocalConnection` to the peer), returned by
  :meth:`~node.server.transfers.TransferService.link` of in-process nodes.

In-process URLs are ``wss://<random>.in-process.invalid:1``: valid on the
wire, never resolvable (``.invalid`` is reserved), so a networked node
named one fails to reach it, and an in-process node reaches nothing else.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import secrets
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from protocol.errors import Unauthenticated
from protocol.ids import NodeId, RequestId
from protocol.limits import DEFAULT_MAX_MESSAGE_BYTES
from protocol.messages import HelloRequest, Reply

from peer.client.async_channel import AsyncChannel
from peer.client.core import Build, LinkState
from peer.client.endpoint import CALL_TIMEOUT, Endpoint
from peer.errors import ClientClosed, NodeUnavailable
from peer.security.trust import CertificateMismatch, TrustPolicy
from peer.server.auth import AnonymousAuthenticator, Caller, Principal
from .executor import Executor
from .mpc.service import MpcService, default_providers
from .local_connection import LocalConnection, LocalLoop
from .session import Session
from .store import MemoryStore, Quota
from .transfers import IN_PROCESS_DOMAIN, TransferService

__all__ = [
    "IN_PROCESS_SCHEME",
    "InProcessNetwork",
    "InProcessNode",
    "LocalConnection",
    "LocalIdentity",
    "LocalLink",
    "DEFAULT_NETWORK",
]

IN_PROCESS_SCHEME = "in-process"
"""Hello credentials of an in-process node proving its :class:`LocalIdentity`."""

_CONTEXT = b"tessera in-process node proof v1"


def _proof_mac(secret: bytes, node_id: str, fingerprint: str, server: str, nonce: bytes) -> bytes:
    payload = b"\n".join((_CONTEXT, node_id.encode(), fingerprint.encode(), server.encode(), nonce))
    return hmac.new(secret, payload, hashlib.sha256).digest()


@dataclass(frozen=True, eq=False)
class LocalIdentity:
    """An in-process node's stand-in for a key and certificate."""

    node_id: NodeId
    url: str
    fingerprint: str
    _secret: bytes = field(repr=False)

    @classmethod
    def new(cls, node_id: NodeId) -> LocalIdentity:
        secret = secrets.token_bytes(32)
        fingerprint = "sha256:" + hashlib.sha256(_CONTEXT + secret).hexdigest()
        url = f"wss://n{secrets.token_hex(8)}.{IN_PROCESS_DOMAIN}:1"
        return cls(node_id, url, fingerprint, secret)

    def credentials(self, server_fingerprint: str) -> dict[str, Any]:
        """Hello credentials proving this identity to the node whose identity is ``server_fingerprint``."""
        nonce = secrets.token_bytes(16)
        return {
            "scheme": IN_PROCESS_SCHEME,
            "node_id": self.node_id,
            "fingerprint": self.fingerprint,
            "nonce": nonce,
            "mac": _proof_mac(self._secret, self.node_id, self.fingerprint, server_fingerprint, nonce),
        }

    def verify(self, credentials: Mapping[str, Any], server_fingerprint: str) -> bool:
        nonce, mac = credentials.get("nonce"), credentials.get("mac")
        if not isinstance(nonce, bytes) or not isinstance(mac, bytes) or credentials.get("node_id") != self.node_id:
            return False
        expected = _proof_mac(self._secret, self.node_id, self.fingerprint, server_fingerprint, nonce)
        return hmac.compare_digest(mac, expected)


class LocalAuthenticator:
    """Users as anonymous clients; other in-process nodes of the same network by their proof."""

    def __init__(self, network: InProcessNetwork, fingerprint: str) -> None:
        self.network = network
        self.fingerprint = fingerprint
        self._anonymous = AnonymousAuthenticator()
        self._nonces: collections.deque[bytes] = collections.deque(maxlen=4096)

    def authenticate(self, hello: HelloRequest) -> Caller:
        credentials = hello.credentials
        if credentials.get("scheme") != IN_PROCESS_SCHEME:
            return self._anonymous.authenticate(hello)
        claimed = credentials.get("fingerprint")
        identity = self.network.identity(claimed) if isinstance(claimed, str) else None
        if identity is None or not identity.verify(credentials, self.fingerprint):
            raise Unauthenticated("the in-process node proof does not verify", {"scheme": IN_PROCESS_SCHEME})
        nonce = credentials.get("nonce")
        assert isinstance(nonce, bytes)  # verify() checked it
        if nonce in self._nonces:
            raise Unauthenticated("replayed in-process node proof", {"scheme": IN_PROCESS_SCHEME})
        self._nonces.append(nonce)
        principal: Principal = f"node:{identity.node_id}@{identity.fingerprint[7:23]}"
        return Caller(principal, identity.node_id, identity.fingerprint)

    def welcome(self, server_node_id: NodeId, hello: HelloRequest) -> bytes | None:
        return None  # membership is being in the same process's network: nothing to prove on the wire


class InProcessNode:
    """The node side of a VirtualNode: store, executor, transfers and secret sharing, no listener."""

    def __init__(
        self,
        node_id: NodeId,
        network: InProcessNetwork,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        quota: Quota | None = None,
    ) -> None:
        self.node_id = node_id
        self.network = network
        self.identity = LocalIdentity.new(node_id)
        self.max_message_bytes = max_message_bytes
        self.store = MemoryStore(quota)  # per-principal limits, the networked node's defaults
        self.executor = Executor(node_id, self.store)
        self.authenticator = LocalAuthenticator(network, self.identity.fingerprint)
        self.transfers = TransferService(
            node_id, self.store, self._credentials, max_message_bytes,
            network=network.key, fingerprint=self.identity.fingerprint, dial=self._dial,
        )
        self.mpc = MpcService(node_id, self.store, self.transfers, default_providers())
        network.join(self)

    def _credentials(self, peer_fingerprint: str | None) -> dict[str, Any]:
        return self.identity.credentials(peer_fingerprint or "")

    def _dial(self, url: str, fingerprint: str) -> AsyncChannel:
        return self.network.dial(self.identity, url, fingerprint)

    def connect(
        self, reply: Callable[[bytes], None], peer: str, lost: Callable[[], None] = lambda: None
    ) -> LocalConnection:
        """A new connection to this node (a new Session), answering through ``reply``; ``lost`` if it closes it."""
        session = Session(
            self.node_id, ("virtual",), self.executor, self.store, self.authenticator,
            self.max_message_bytes, peer=peer, transfers=self.transfers, services=(self.mpc,),
        )
        return LocalConnection(session, self.network.loop, reply, lost)


class InProcessNetwork:
    """The in-process nodes one process can link to each other, and their event loop."""

    def __init__(self) -> None:
        self.key = secrets.token_bytes(32)
        """This network's key: TransferService sends only inside a network."""
        self.loop = LocalLoop()
        self._lock = threading.Lock()
        self._by_url: weakref.WeakValueDictionary[str, InProcessNode] = weakref.WeakValueDictionary()
        self._by_fingerprint: weakref.WeakValueDictionary[str, InProcessNode] = weakref.WeakValueDictionary()

    def join(self, node: InProcessNode) -> None:
        with self._lock:
            self._by_url[node.identity.url] = node
            self._by_fingerprint[node.identity.fingerprint] = node

    def leave(self, node: InProcessNode) -> None:
        with self._lock:
            self._by_url.pop(node.identity.url, None)
            self._by_fingerprint.pop(node.identity.fingerprint, None)

    def identity(self, fingerprint: str) -> LocalIdentity | None:
        with self._lock:
            node = self._by_fingerprint.get(fingerprint)
        return None if node is None else node.identity

    def dial(self, source: LocalIdentity, url: str, fingerprint: str) -> LocalLink:
        """A link from ``source`` to the node at ``url``, which must present ``fingerprint``.

        NodeUnavailable if no in-process node of this network has that URL;
        CertificateMismatch if it has another identity than the pinned one.
        """
        with self._lock:
            target = self._by_url.get(url)
        if target is None:
            raise NodeUnavailable(f"no in-process node at {url} (closed, or of another process)", {"url": url})
        if not hmac.compare_digest(target.identity.fingerprint, fingerprint):
            raise CertificateMismatch(
                f"the in-process node at {url} ({target.node_id}) is not the one pinned "
                f"({fingerprint[:23]}...)",
                {"url": url},
            )
        return LocalLink(source, target)


DEFAULT_NETWORK = InProcessNetwork()
"""The network VirtualNodes join unless given another."""


class LocalLink(AsyncChannel):
    """A node-to-node link to an in-process node: an AsyncChannel whose transport is a LocalConnection.

    The channel core does everything it does on a socket (hello with the
    source's proof, request ids, correlation, failures of posted letters);
    frames are handed to the peer's connection instead of a WebSocket.
    Runs on the network's loop only.
    """

    def __init__(self, source: LocalIdentity, target: InProcessNode) -> None:
        endpoint = Endpoint(
            target.identity.url,
            TrustPolicy(fingerprint=target.identity.fingerprint),
            source.node_id,
            lambda server: source.credentials(server or ""),
            target.max_message_bytes,
            roles=("node",),
        )
        super().__init__(endpoint)
        self._target = target
        self._source = source
        self._peer: LocalConnection | None = None
        self._hello: asyncio.Future[bytes] | None = None

    @property
    def connected(self) -> bool:
        return self._peer is not None and not self._closed_core()

    def _closed_core(self) -> bool:
        return self._core.state is LinkState.CLOSED

    async def open(self) -> None:
        if self._peer is not None:
            return
        if self._closed_core():
            raise ClientClosed("this client was closed", {})
        loop = asyncio.get_running_loop()
        self._hello = loop.create_future()
        peer = self._target.connect(self._received, f"in-process:{self._source.node_id}", self._dropped)
        credentials = self._source.credentials(self._target.identity.fingerprint)
        frame = self._core.hello(self.endpoint.client_name, self.endpoint.roles, credentials)
        peer.feed(frame.to_bytes())
        try:
            data = await asyncio.wait_for(self._hello, self.endpoint.open_timeout)
            self._core.welcome(data, self._target.identity.fingerprint, None)
        except BaseException:
            self._core.hello_failed()
            peer.close()
            raise
        finally:
            self._hello = None
        self._peer = peer

    def _received(self, data: bytes) -> None:
        """The peer's answers (on the loop, or inline in the thread that fed it)."""
        hello = self._hello
        if hello is not None and not hello.done():
            hello.get_loop().call_soon_threadsafe(_set, hello, data)
            return
        self.frame_received(data)

    def _dropped(self) -> None:
        """The peer closed the connection: fail what is in flight; the next use dials again."""
        peer, self._peer = self._peer, None
        if peer is not None:
            self._fail(NodeUnavailable(f"connection to {self._target.node_id} closed by the node", {}))

    def post(self, build: Build, description: str) -> None:
        peer = self._peer
        if peer is None:
            raise NodeUnavailable(f"the link to {self._target.node_id} is not open", {})
        for frame in self._core.post(build, description):
            peer.feed(frame.to_bytes())

    def submit(self, build: Build) -> asyncio.Future[Reply]:
        return self._submit(build)[1]

    def _submit(self, build: Build) -> tuple[RequestId, asyncio.Future[Reply]]:
        peer = self._peer
        if peer is None:
            raise NodeUnavailable(f"the link to {self._target.node_id} is not open", {})
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        request_id, frame = self._core.call(build, future)
        peer.feed(frame.to_bytes())
        return request_id, future

    async def call(self, build: Build) -> Reply:
        await self.open()
        request_id, future = self._submit(build)
        try:
            return await asyncio.wait_for(future, CALL_TIMEOUT)
        except (TimeoutError, asyncio.TimeoutError):
            raise NodeUnavailable(f"no reply from {self._target.node_id} in {CALL_TIMEOUT:.0f}s", {}) from None
        finally:
            self._core.forget(request_id)

    async def drained(self, keep: int = 0) -> None:
        """Nothing is ever queued on this side: frames are handed over as they are posted."""

    async def aclose(self) -> None:
        if not self._closed_core():
            self._core.close()
        peer, self._peer = self._peer, None
        if peer is not None:
            peer.close()


def _set(future: asyncio.Future[bytes], data: bytes) -> None:
    if not future.done():
        future.set_result(data)
