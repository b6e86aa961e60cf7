"""One connection's conversation with the gateway, without I/O.

Frames in, :class:`~node.server.session.Outcome`s out, like the node's
session (whose ``Outcome`` and close codes this reuses).  The connection
opens with ``hello``, authenticated by the injected authenticator (the
server passes a ``CredentialAuthenticator`` that accepts anonymous clients
and proven nodes).  Then:

- ``register``: proven nodes only, their own record only (the
  :class:`~gateway.registry.Registry` checks id and fingerprint); at most
  ``connection_limit`` per connection and the shared ``source_limiter``'s
  limit per source address per window, beyond which QUOTA_EXCEEDED;
- ``heartbeat`` / ``deregister``: the caller's own entry, answered ``ack``;
- ``nodes``: anyone, optionally by tag;
- anything else: BAD_REQUEST, "not served by the gateway".

:attr:`GatewaySession.registered` names the node this connection speaks for,
so the server can mark it offline the moment the connection drops.

The one error translation point: a :class:`~protocol.errors.TesseraError`
becomes an error reply with its code; anything else is logged with its
traceback and answered INTERNAL with no detail.  Must not import asyncio or
websockets.
"""

from __future__ import annotations

import enum
import logging
from typing import Callable

from node.server.auth import Authenticator, Caller
from node.server.session import CLOSE_POLICY, CLOSE_PROTOCOL, Outcome
from protocol.codec import decode_message
from protocol.errors import (
    BadRequest,
    InternalError,
    PermissionDenied,
    ProtocolError,
    QuotaExceeded,
    TesseraError,
    Unauthenticated,
    VersionMismatch,
)
from protocol.ids import NodeId, RequestId
from protocol.messages import (
    DeregisterRequest,
    ErrorReply,
    HeartbeatRequest,
    HelloRequest,
    Message,
    MessageKind,
    NodesRequest,
    RegisterRequest,
    Request,
)

from .flood import FLOOD_WINDOW, REGISTRATIONS_PER_CONNECTION, RateLimiter
from .registry import Registry

__all__ = [
    "GatewaySession",
    "GatewaySessionState",
    "GATEWAY_ID",
    "GATEWAY_ROLES",
    "GATEWAY_MAX_MESSAGE_BYTES",
]

log = logging.getLogger("tessera.gateway.session")

GATEWAY_ID = NodeId("gateway")
"""The ``node_id`` the gateway gives in its hello reply."""

GATEWAY_ROLES = ("gateway",)

GATEWAY_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Largest frame the gateway accepts: a record with the most datasets fits with room."""

_Handler = Callable[[Request], Outcome]

_SERVED = (RegisterRequest, HeartbeatRequest, DeregisterRequest, NodesRequest)
"""The request kinds the gateway answers after the hello."""


class GatewaySessionState(enum.Enum):
    AWAITING_HELLO = "awaiting_hello"
    OPEN = "open"
    CLOSED = "closed"


class GatewaySession:
    """State and request handling for one connection to the gateway."""

    def __init__(
        self,
        registry: Registry,
        authenticator: Authenticator,
        clock: Callable[[], float],
        *,
        source_limiter: RateLimiter | None = None,
        connection_limit: int = REGISTRATIONS_PER_CONNECTION,
        max_message_bytes: int = GATEWAY_MAX_MESSAGE_BYTES,
        peer: str = "local",
        source: str = "local",
    ) -> None:
        self.registry = registry
        self.authenticator = authenticator
        self.clock = clock
        self.source_limiter = source_limiter
        self.connection_limiter = RateLimiter(connection_limit, FLOOD_WINDOW, max_keys=1)
        self.max_message_bytes = max_message_bytes
        self.peer = peer
        self.source = source
        self.state = GatewaySessionState.AWAITING_HELLO
        self.caller: Caller | None = None
        self.registered: NodeId | None = None
        """The node this connection speaks for (registered or heartbeat), if any."""
        self.claims = 0
        """Successful register and heartbeat requests so far (the server watches it change)."""
        self._handlers: dict[MessageKind, _Handler] = {
            MessageKind.REGISTER: self._register,
            MessageKind.HEARTBEAT: self._heartbeat,
            MessageKind.DEREGISTER: self._deregister,
            MessageKind.NODES: self._nodes,
        }

    def receive(self, frame: bytes | bytearray | memoryview) -> Outcome:
        """Handle one binary frame."""
        if self.state is GatewaySessionState.CLOSED:
            return Outcome()
        try:
            message = decode_message(frame, self.max_message_bytes)
        except ProtocolError as exc:
            log.info("bad frame from %s: %s", self.peer, exc)
            reply = ErrorReply.from_exception(RequestId(exc.request_id), exc)
            if isinstance(exc, VersionMismatch):
                return self._close(reply, CLOSE_PROTOCOL, "protocol version mismatch")
            return Outcome(reply)
        return self.handle(message)

    def handle(self, message: Message) -> Outcome:
        """Handle one decoded message."""
        if isinstance(message, HelloRequest):
            return self._guard(message, self._hello)
        if self.state is not GatewaySessionState.OPEN or self.caller is None:
            exc = Unauthenticated("the connection must open with a hello", {})
            return self._close(ErrorReply.from_exception(message.id, exc), CLOSE_POLICY, "no hello")
        if isinstance(message, _SERVED):
            return self._guard(message, self._handlers[message.KIND])
        refused = BadRequest(
            f"{message.KIND.value} is not served by the gateway", {"kind": message.KIND.value}
        )
        return Outcome(ErrorReply.from_exception(message.id, refused))

    def close(self) -> None:
        self.state = GatewaySessionState.CLOSED

    def _close(self, reply: ErrorReply, code: int, reason: str) -> Outcome:
        self.state = GatewaySessionState.CLOSED
        return Outcome(reply, code, reason)

    def _guard(self, request: Request, handler: _Handler) -> Outcome:
        try:
            return handler(request)
        except TesseraError as exc:
            log.info("%s from %s refused: %s", request.KIND.value, self.peer, exc)
            if isinstance(request, HelloRequest):
                return self._close(request.error(exc), CLOSE_POLICY, "handshake refused")
            return Outcome(request.error(exc))
        except Exception:
            log.exception("internal error handling %s from %s", request.KIND.value, self.peer)
            return Outcome(request.error(InternalError("internal error", {})))

    def _hello(self, request: Request) -> Outcome:
        assert isinstance(request, HelloRequest)
        if self.state is GatewaySessionState.OPEN:
            raise BadRequest("the connection is already open", {})
        self.caller = self.authenticator.authenticate(request)
        self.state = GatewaySessionState.OPEN
        log.info("%r connected from %s as %s", request.client[:64], self.peer, self.caller.principal)
        reply = request.reply(
            GATEWAY_ID, self.caller.principal, GATEWAY_ROLES, self.max_message_bytes
        )
        return Outcome(reply)

    def _node_caller(self, what: str) -> tuple[NodeId, str]:
        """The caller's proven node id and fingerprint; PermissionDenied for anyone else."""
        caller = self.caller
        if caller is None or caller.node_id is None or caller.fingerprint is None:
            raise PermissionDenied(
                f"only a node that proved its identity in the hello may {what}", {}
            )
        return caller.node_id, caller.fingerprint

    def _check_flood(self, now: float) -> None:
        if not self.connection_limiter.allow("connection", now):
            limit = self.connection_limiter.limit
            raise QuotaExceeded(
                f"too many registrations on this connection (at most {limit} per "
                f"{FLOOD_WINDOW:.0f} s); retry later",
                {"limit": limit},
            )
        limiter = self.source_limiter
        if limiter is not None and not limiter.allow(self.source, now):
            raise QuotaExceeded(
                f"too many registrations from {self.source} (at most {limiter.limit} per "
                f"{limiter.window:.0f} s); retry later",
                {"limit": limiter.limit},
            )

    def _register(self, request: Request) -> Outcome:
        assert isinstance(request, RegisterRequest)
        now = self.clock()
        self._check_flood(now)
        node_id, fingerprint = self._node_caller("register")
        self.registry.register(node_id, fingerprint, request.record, now)
        self._claim(node_id)
        log.info("registered %s at %s", node_id, request.record.url)
        return Outcome(request.reply(self.registry.policy.heartbeat_interval))

    def _heartbeat(self, request: Request) -> Outcome:
        assert isinstance(request, HeartbeatRequest)
        node_id, fingerprint = self._node_caller("heartbeat")
        self.registry.heartbeat(node_id, fingerprint, self.clock())
        self._claim(node_id)
        return Outcome(request.ack())

    def _deregister(self, request: Request) -> Outcome:
        assert isinstance(request, DeregisterRequest)
        node_id, fingerprint = self._node_caller("deregister")
        self.registry.deregister(node_id, fingerprint, self.clock())
        self.registered = None
        log.info("deregistered %s", node_id)
        return Outcome(request.ack())

    def _nodes(self, request: Request) -> Outcome:
        assert isinstance(request, NodesRequest)
        return Outcome(request.reply(self.registry.nodes(request.tag, self.clock())))

    def _claim(self, node_id: NodeId) -> None:
        self.registered = node_id
        self.claims += 1
