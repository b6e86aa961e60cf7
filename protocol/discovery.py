"""Messages between nodes, clients and the gateway.

A node opens a connection to the gateway, says ``hello`` with node
credentials (proof that it holds the key of the certificate it registers),
then ``register``s its :class:`~protocol.records.NodeRecord` and sends a
``heartbeat`` every ``heartbeat_interval`` seconds; ``deregister`` on clean
shutdown.  Anyone connected may ask for ``nodes`` (optionally by tag).  Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Tuple

from .ids import RequestId
from .kinds import MessageKind, RequestBase
from .records import NodeRecord, NodeStatus

__all__ = [
    "RegisterRequest",
    "RegisterReply",
    "HeartbeatRequest",
    "DeregisterRequest",
    "NodesRequest",
    "NodesReply",
]


@dataclass(frozen=True, slots=True)
class RegisterRequest(RequestBase):
    """Announce (or refresh) the sender's record; the id and fingerprint must be its own."""

    KIND: ClassVar[MessageKind] = MessageKind.REGISTER
    id: RequestId
    record: NodeRecord

    def reply(self, heartbeat_interval: float) -> RegisterReply:
        return RegisterReply(self.id, heartbeat_interval)


@dataclass(frozen=True, slots=True)
class RegisterReply:
    """Accepted; heartbeat at least every ``heartbeat_interval`` seconds."""

    KIND: ClassVar[MessageKind] = MessageKind.REGISTER_REPLY
    id: RequestId
    heartbeat_interval: float


@dataclass(frozen=True, slots=True)
class HeartbeatRequest(RequestBase):
    """The registered node is alive; answered with ``ack``."""

    KIND: ClassVar[MessageKind] = MessageKind.HEARTBEAT
    id: RequestId


@dataclass(frozen=True, slots=True)
class DeregisterRequest(RequestBase):
    """The node is shutting down cleanly; answered with ``ack``."""

    KIND: ClassVar[MessageKind] = MessageKind.DEREGISTER
    id: RequestId


@dataclass(frozen=True, slots=True)
class NodesRequest(RequestBase):
    """Nodes the gateway knows, all or those carrying ``tag`` (node or dataset tag)."""

    KIND: ClassVar[MessageKind] = MessageKind.NODES
    id: RequestId
    tag: str | None = None

    def reply(self, nodes: Tuple[NodeStatus, ...]) -> NodesReply:
        return NodesReply(self.id, nodes)


@dataclass(frozen=True, slots=True)
class NodesReply:
    KIND: ClassVar[MessageKind] = MessageKind.NODES_REPLY
    id: RequestId
    nodes: Tuple[NodeStatus, ...]
