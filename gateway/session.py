"""One connection's conversation with the gateway, without I/O.

Frames in, :class:`~peer.server.conversation.Outcome`s out, like the node's
session (both build on the shared conversation and its close codes).  The connection
opens with ``hello``, authenticated by the injected authenticator (the
server passes a ``CredentialAuthenticator`` that accepts anonymous clients
and proven nodes).  Then:

- ``register``: proven nodes only, their own record only, under an id not
  bound to another certificate (the :class:`~gateway.registry.Registry`
  checks id, fingerprint and binding); at most ``connection_limit`` per
  connection and the shared ``source_limiter``'s limit per source address
  per window, beyond which QUOTA_EXCEEDED;
- ``heartbeat`` / ``deregister``: the caller's own entry, answered ``ack``
  (PERMISSION_DENIED if the id is bound to another certificate);
- ``nodes``: anyone, optionally by tag;
- anything else: BAD_REQUEST, "not served by the gateway".

:attr:`GatewaySession.registered` names the node this connection speaks for,
so the server can mark it offline the moment the connection drops.

Decoding, the hello gate and the one error translation point are the
shared :class:`~peer.server.conversation.Conversation`.  Must not import
asyncio or websockets.
"""

from __future__ import annotations

import logging
from typing import Callable

from peer.server.auth import Authenticator
from peer.server.conversation import Conversation, Outcome, SessionState
from protocol.errors import BadRequest, PermissionDenied, QuotaExceeded
from protocol.ids import NodeId
from protocol.messages import (
    DeregisterRequest,
    HeartbeatRequest,
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


GATEWAY_ID = NodeId("gateway")
"""The ``node_id`` the gateway gives in its hello reply."""

GATEWAY_ROLES = ("gateway",)

GATEWAY_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Largest frame the gateway accepts: a record with the most datasets fits with room."""


GatewaySessionState = SessionState
"""The gateway's connections go through the same states as a node's."""


class GatewaySession(Conversation):
    """State and request handling for one connection to the gateway."""

    log = logging.getLogger("tessera.gateway.session")

    
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
        # No tensors: a tensor or dtype value is BAD_REQUEST before anything is
        # built, so no peer can make the gateway import torch.
        super().__init__(
            GATEWAY_ID, GATEWAY_ROLES, authenticator, max_message_bytes, peer, tensors=False
        )
        self.registry = registry
        self.clock = clock
        self.source_limiter = source_limiter
        self.connection_limiter = RateLimiter(connection_limit, FLOOD_WINDOW, max_keys=1)
        self.source = source
        self.registered: NodeId | None = None
        """The node this connection speaks for (registered or heartbeat), if any."""
        self.claims = 0
        """Successful register and heartbeat requests so far (the server watches it change)."""
        self.handlers = {
            MessageKind.REGISTER: self._register,
            MessageKind.HEARTBEAT: self._heartbeat,
            MessageKind.DEREGISTER: self._deregister,
            MessageKind.NODES: self._nodes,
        }

    def not_served(self, message: Message) -> BadRequest:
        return BadRequest(
            f"{message.KIND.value} is not served by the gateway", {"kind": message.KIND.value}
        )

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
        self.log.info("registered %s at %s", node_id, request.record.url)
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
        self.log.info("deregistered %s", node_id)
        return Outcome(request.ack())

    def _nodes(self, request: Request) -> Outcome:
        assert isinstance(request, NodesRequest)
        return Outcome(request.reply(self.registry.nodes(request.tag, self.clock())))

    def _claim(self, node_id: NodeId) -> None:
        self.registered = node_id
        self.claims += 1
