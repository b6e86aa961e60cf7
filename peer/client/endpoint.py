"""Where a peer is, how to trust it, and how this side introduces itself.

Pure data shared by every client-side channel (:mod:`.sync_channel`,
:mod:`.async_channel`) and by the node's own links: the URL, the trust
policy, the hello's name, roles and credentials, and the network whose
membership the peer must prove.  Imports :mod:`protocol` and the trust
policy's type only; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from protocol.limits import DEFAULT_MAX_MESSAGE_BYTES

from peer.security.trust import TrustPolicy

__all__ = ["Endpoint", "Credentials", "fixed_credentials", "CALL_TIMEOUT"]

CALL_TIMEOUT = 300.0
"""Seconds a blocking call waits for its reply before NodeUnavailable."""

Credentials = Callable[[str | None], dict[str, Any]]
"""Makes hello credentials for the peer with the given fingerprint (None: no TLS).

Node proofs bind the peer's fingerprint, so they are made afresh for each
connection, after its certificate was verified."""


def fixed_credentials(credentials: dict[str, Any]) -> Credentials:
    """Credentials that do not depend on the peer (an anonymous client's secret)."""
    return lambda fingerprint: credentials


@dataclass(frozen=True)
class Endpoint:
    """Where a node is and how to trust it."""

    url: str
    trust: TrustPolicy
    client_name: str
    credentials: Credentials
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    open_timeout: float = 10.0
    roles: tuple[str, ...] = ("client",)
    network: bytes | None = None
    """Network key the peer must prove it holds (node-to-node links): the hello
    reply's ``membership`` is checked before anything else is sent."""

    @property
    def address(self) -> str:
        parts = urlsplit(self.url)
        default = 443 if parts.scheme == "wss" else 80
        return f"{parts.hostname}:{parts.port or default}"

    @property
    def secure(self) -> bool:
        return urlsplit(self.url).scheme == "wss"
