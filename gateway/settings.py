"""Frozen settings the gateway runs with, built once by ``__main__`` (or a test).

Library code never reads argv or the environment; it receives one of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .bindings import MAX_BINDINGS
from .flood import REGISTRATIONS_PER_CONNECTION, REGISTRATIONS_PER_SOURCE
from .registry import (
    DEFAULT_DROP_AFTER,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_MISSED_HEARTBEATS,
    MAX_NODES,
    RegistryPolicy,
)
from .session import GATEWAY_MAX_MESSAGE_BYTES

__all__ = ["GatewaySettings", "DEFAULT_GATEWAY_PORT", "default_gateway_state_dir"]

DEFAULT_GATEWAY_PORT = 5000


def default_gateway_state_dir(home: Path | None = None) -> Path:
    """``~/.tessera/gateway``: the gateway's key, certificate and id bindings."""
    return (home or Path.home()) / ".tessera" / "gateway"


@dataclass(frozen=True)
class GatewaySettings:
    """Everything a gateway needs to start."""

    state_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_GATEWAY_PORT
    insecure: bool = False
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    missed_heartbeats: int = DEFAULT_MISSED_HEARTBEATS
    drop_after: float = DEFAULT_DROP_AFTER
    max_nodes: int = MAX_NODES
    max_bindings: int = MAX_BINDINGS
    max_message_bytes: int = GATEWAY_MAX_MESSAGE_BYTES
    registrations_per_connection: int = REGISTRATIONS_PER_CONNECTION
    registrations_per_source: int = REGISTRATIONS_PER_SOURCE
    network_token: str | None = field(default=None, repr=False)
    """Nodes must prove they hold it to register; never printed."""
    open_network: bool = False
    """Register any node that proves its key, without the token (testing only)."""

    def registry_policy(self) -> RegistryPolicy:
        return RegistryPolicy(
            self.heartbeat_interval,
            self.missed_heartbeats,
            self.drop_after,
            self.max_nodes,
            self.max_bindings,
        )
