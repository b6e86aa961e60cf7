"""The client side of a peer connection, without I/O: hello, request ids, correlation, barriers.

python-websockets' design: this core makes every decision of a client
conversation and performs none of its I/O.  Its drivers (the threaded
:class:`~peer.client.sync_channel.SyncChannel`, the asyncio
:class:`~peer.client.async_channel.AsyncChannel` and VirtualNode's
in-process channel) dial, write the frames it hands them and feed it the
frames they read.  It owns:

- **the hello**: the request carrying the credentials the driver made for
  the very peer it verified, and the check of the reply: an error reply
  becomes its exception, anything but a hello reply is refused, and when the
  endpoint names a network the reply's ``membership`` must prove the peer
  holds the network key (:func:`~peer.security.proof.check_welcome`, against
  the nonce this core sent), else :class:`~peer.security.trust.NotAMember`.
  Nothing but the hello is written before the peer is welcomed, which is
  what stops a node sending data to a non-member.
- **request ids**: callers hand over a builder, ``build(request_id)``, and
  the core issues the id, so ids are unique on the channel and callers
  never allocate one.
- **correlation**: a call's reply is handed back with the waiter
  registered for it; an error answering a posted request is kept by the
  :class:`~peer.client.tracker.RequestTracker` for the next
  synchronisation point, which raises it first (:meth:`ChannelCore.settle`).
- **barriers**: a ``sync`` reply confirms every request posted before it;
  one is posted by itself every :data:`~peer.client.tracker.AUTO_BARRIER_EVERY`
  unconfirmed posts so the records stay bounded.
- **the connection's state** (:data:`TRANSITIONS`, h11's table): a lost
  connection fails every call in flight and every unconfirmed post at once,
  and nothing it still delivers is routed; the next connection starts from a
  new hello.  A closed channel stays closed.

Waiters are opaque to the core (the driver's futures): it stores them and
hands them back, and never waits on them.  Not thread-safe: a driver used
from several threads serialises its calls.  Must not import sockets,
threads, asyncio or :mod:`peer.transport`.
"""

from __future__ import annotations

import enum
import logging
from typing import Any, Callable, Generic, Mapping, TypeVar

from protocol.codec import Frame, decode_message, encode_message
from protocol.errors import BadRequest, MessageTooLarge, RemoteProtocolError, TesseraError
from protocol.ids import NodeId, RequestId
from protocol.limits import PROTOCOL_VERSION
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

from peer.errors import ClientClosed, NodeUnavailable
from peer.security.proof import check_welcome

from .tracker import RequestTracker, rebuild_error

__all__ = ["ChannelCore", "CoreFacts", "LinkState", "LinkEvent", "TRANSITIONS", "Build", "Built", "Buffer"]

log = logging.getLogger("tessera.client")

Buffer = bytes | bytearray | memoryview
"""A frame as a driver reads it."""

Build = Callable[[RequestId], Request]
"""Makes a request from the id the channel issues for it."""

W = TypeVar("W")
R = TypeVar("R", bound=Reply)


class LinkState(enum.Enum):
    """Where a channel's current connection is."""

    IDLE = "idle"
    """No connection: never opened, or the last one was lost.  Posts may queue."""
    GREETING = "greeting"
    """The hello was written; its reply is awaited.  Nothing else is written."""
    OPEN = "open"
    """The peer welcomed us: requests flow, replies are routed."""
    CLOSED = "closed"
    """Closed by this side, for good: every request is refused."""


class LinkEvent(enum.Enum):
    """What happens to a channel's connection."""

    HELLO = "hello"
    """The driver writes our hello on a fresh connection."""
    WELCOME = "welcome"
    """The peer accepted the hello (and proved membership where required)."""
    REFUSED = "refused"
    """The hello failed: refused, unanswered, or answered by a non-member."""
    LOST = "lost"
    """The connection dropped, or dialing again failed."""
    CLOSE = "close"
    """This side closed the channel."""


_S, _E = LinkState, LinkEvent

TRANSITIONS: Mapping[tuple[LinkState, LinkEvent], LinkState] = {
    (_S.IDLE, _E.HELLO): _S.GREETING,
    (_S.IDLE, _E.REFUSED): _S.IDLE,  # failed before the hello was written (dial, certificate)
    (_S.IDLE, _E.LOST): _S.IDLE,
    (_S.GREETING, _E.WELCOME): _S.OPEN,
    (_S.GREETING, _E.REFUSED): _S.IDLE,
    (_S.GREETING, _E.LOST): _S.IDLE,
    (_S.OPEN, _E.LOST): _S.IDLE,
    (_S.IDLE, _E.CLOSE): _S.CLOSED,
    (_S.GREETING, _E.CLOSE): _S.CLOSED,
    (_S.OPEN, _E.CLOSE): _S.CLOSED,
    (_S.CLOSED, _E.REFUSED): _S.CLOSED,
    (_S.CLOSED, _E.LOST): _S.CLOSED,
    (_S.CLOSED, _E.CLOSE): _S.CLOSED,
}
"""Every allowed (state, event) and the state it leads to; anything else is a driver bug."""

_ROUTED = frozenset({LinkState.OPEN, LinkState.CLOSED})
"""States whose connection's frames are routed (a closing channel still takes its replies)."""


class Built:
    """A builder that keeps what it built: for callers naming a request by its kind."""

    __slots__ = ("_build", "request")

    def __init__(self, build: Build) -> None:
        self._build = build
        self.request: Request | None = None

    def __call__(self, request_id: RequestId) -> Request:
        self.request = self._build(request_id)
        return self.request

    @property
    def kind(self) -> str:
        return self.request.KIND.value if self.request is not None else "request"


class ChannelCore(Generic[W]):
    """One channel's conversation with one peer; ``W`` is the driver's waiter type."""

    def __init__(self, peer: str, max_message_bytes: int) -> None:
        self.peer = peer
        """How errors name the peer: the URL dialed until the hello, then the id the peer announced."""
        self.url = peer
        """The URL dialed (a node id in-process): what errors named before the hello."""
        self.limit = max_message_bytes
        """Our own limit: the largest frame we accept."""
        self.max_message_bytes = max_message_bytes
        """The largest frame we send: our limit, lowered to the peer's once welcomed."""
        self.node_id = NodeId("")
        self.principal = ""
        self.peer_fingerprint: str | None = None
        """Fingerprint of the certificate the welcoming peer presented (None without TLS)."""
        self._state = LinkState.IDLE
        self._next = 1
        self._tracker = RequestTracker(peer)
        self._pending: dict[RequestId, W] = {}
        self._credentials: Mapping[str, Any] = {}

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def issued(self) -> int:
        """Request ids issued so far on this channel (hellos and barriers included)."""
        return self._next - 1

    @property
    def outstanding(self) -> int:
        """Posted requests not yet confirmed by a barrier."""
        return self._tracker.outstanding

    def _to(self, event: LinkEvent) -> None:
        state = TRANSITIONS.get((self._state, event))
        if state is None:
            if self._state is LinkState.CLOSED:
                raise ClientClosed("this client was closed", {})
            raise RuntimeError(f"channel to {self.peer}: {event.value} while {self._state.value}")
        self._state = state

    def _issue(self) -> RequestId:
        rid = RequestId(self._next)
        self._next += 1
        return rid

    # -- the hello -----------------------------------------------------------

    def hello(self, client_name: str, roles: tuple[str, ...], credentials: Mapping[str, Any]) -> Frame:
        """The hello to write first on a fresh connection, with these credentials."""
        self._to(LinkEvent.HELLO)
        self._credentials = credentials
        return encode_message(
            HelloRequest(self._issue(), PROTOCOL_VERSION, client_name, roles, dict(credentials))
        )

    def welcome(self, data: Buffer, fingerprint: str | None, network: bytes | None) -> HelloReply:
        """Check the hello's reply; the channel is open if this returns.

        Raises the error the peer answered with, NodeUnavailable for any
        other answer, and NotAMember when ``network`` is set and the reply
        does not prove the peer holds it (over TLS only: without a
        ``fingerprint`` nobody can prove membership).
        """
        try:
            reply = decode_message(data, self.limit)
            if isinstance(reply, ErrorReply):
                raise rebuild_error(reply, "hello", self.peer)
            if not isinstance(reply, HelloReply):
                raise NodeUnavailable(f"{self.peer} answered hello with {reply.KIND.value}", {})
            if network is not None:
                check_welcome(
                    network, reply.node_id, fingerprint, self._credentials, reply.membership, peer=self.peer
                )
        except BaseException:
            self._to(LinkEvent.REFUSED)
            raise
        finally:
            self._credentials = {}
        self._to(LinkEvent.WELCOME)
        self.node_id, self.principal = reply.node_id, reply.principal
        # "OpFailed: x.matmul(y) on alice": the id users call the node by, not its URL.
        self.peer = self._tracker.peer = reply.node_id
        self.peer_fingerprint = fingerprint
        self.max_message_bytes = min(self.limit, reply.max_message_bytes)
        return reply

    def hello_failed(self) -> None:
        """The connection failed before the hello was answered (timeout, drop, certificate).

        Only a greeting channel changes: outside GREETING (the failure came
        before the hello was written, :meth:`welcome` already refused it, or
        the channel was closed meanwhile) this does nothing.
        """
        if self._state is not LinkState.GREETING:
            return
        self._credentials = {}
        self._to(LinkEvent.REFUSED)

    # -- requests --------------------------------------------------------------

    def post(self, build: Build, description: str) -> tuple[Frame, ...]:
        """Frames for a request nobody waits for: it, and a barrier when one is due.

        ``description`` names it if it fails (at the next synchronisation point).
        """
        if self._state is LinkState.CLOSED:
            raise ClientClosed("this client was closed", {})
        request_id = self._issue()
        frame = self._encode(build(request_id))
        if self._tracker.posted(request_id, description):
            return frame, encode_message(SyncRequest(self._issue()))
        return (frame,)

    def call(self, build: Build, waiter: W) -> tuple[RequestId, Frame]:
        """The frame for a request whose reply goes to ``waiter``, and its id (to :meth:`forget`)."""
        if self._state is LinkState.CLOSED:
            raise ClientClosed("this client was closed", {})
        request_id = self._issue()
        frame = self._encode(build(request_id))
        self._pending[request_id] = waiter
        return request_id, frame

    def forget(self, request_id: RequestId) -> None:
        """Nobody waits for this call any more (timed out, or its frame was never written)."""
        self._pending.pop(request_id, None)

    def _encode(self, request: Request) -> Frame:
        """Encode, refusing frames the peer would reject for their size."""
        frame = encode_message(request)
        if frame.nbytes > self.max_message_bytes:
            raise MessageTooLarge.for_size(
                f"{request.KIND.value} message", frame.nbytes, self.max_message_bytes
            )
        return frame

    # -- replies -----------------------------------------------------------------

    def receive(self, data: Buffer) -> tuple[W, Reply] | None:
        """Route one frame from the peer; a call's reply comes back with its waiter.

        Errors answering posted requests are kept for the next
        synchronisation point; undecodable frames and requests are logged and
        dropped, and so is everything while no connection is open.  Never raises.
        """
        if self._state not in _ROUTED:
            return None
        try:
            reply = decode_message(data, self.limit)
        except RemoteProtocolError as exc:
            log.warning("undecodable frame from %s: %s", self.peer, exc)
            return None
        if not isinstance(reply, REPLY_TYPES):
            log.warning("%s sent a %s request to a client", self.peer, reply.KIND.value)
            return None
        if isinstance(reply, SyncReply):
            self._tracker.barrier(reply.id)
        waiter = self._pending.pop(reply.id, None)
        if waiter is not None:
            return waiter, reply
        if isinstance(reply, ErrorReply):
            self._tracker.on_error(reply)
        return None

    def lost(self, reason: TesseraError) -> list[W]:
        """The connection is gone (or could not be opened again): the waiters to fail.

        Every unconfirmed post becomes a failure of ``reason``'s class,
        reported at the next synchronisation point.
        """
        self._to(LinkEvent.LOST)
        self._tracker.lost(reason)
        waiters = list(self._pending.values())
        self._pending.clear()
        return waiters

    def close(self) -> None:
        """Refuse every request from now on; replies in flight are still routed."""
        self._to(LinkEvent.CLOSE)

    # -- synchronisation points ------------------------------------------------

    def failed_locally(self, exc: TesseraError, description: str) -> None:
        """A request could not even be posted; report it at the next synchronisation point."""
        self._tracker.failed_locally(exc, description)

    def take_failure(self) -> TesseraError | None:
        """The first failure of a posted request (the root cause), clearing all of them."""
        return self._tracker.take_failure()

    def settle(self, reply: Reply, expected: type[R], description: str) -> R:
        """A call's reply at a synchronisation point.

        Raises the first failure of earlier posted requests (the root cause),
        then this call's own error, naming ``description`` and the peer; then
        BadRequest if the reply is not an ``expected``.
        """
        self._tracker.raise_failures()
        if isinstance(reply, ErrorReply):
            raise rebuild_error(reply, description, self.peer)
        if not isinstance(reply, expected):
            raise BadRequest(f"{description}: unexpected {reply.KIND.value} reply", {})
        return reply


class CoreFacts:
    """What every driver tells about its connection: the facts its core learnt in the hello.

    A mixin for the drivers (sync, asyncio, in-process), each of which keeps
    its :class:`ChannelCore` as ``_core``; only ``url`` differs between them.
    """

    __slots__ = ()
    _core: ChannelCore[Any]

    @property
    def node_id(self) -> NodeId:
        """The peer's id, as it announced itself in the hello."""
        return self._core.node_id

    @property
    def principal(self) -> str:
        """Who the peer thinks we are."""
        return self._core.principal

    @property
    def peer_fingerprint(self) -> str | None:
        """The certificate this connection verified (None in-process or without TLS)."""
        return self._core.peer_fingerprint

    @property
    def max_message_bytes(self) -> int:
        """The largest frame we send: our limit, lowered to the peer's once welcomed."""
        return self._core.max_message_bytes

    @property
    def requests_sent(self) -> int:
        """Request ids issued so far on this channel."""
        return self._core.issued

