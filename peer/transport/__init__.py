"""Transport room: TLS identity and trust, WebSocket server and client.

Only this package imports ``websockets``.  The TLS pieces (:mod:`.identity`,
:mod:`.trust`, :mod:`.tls`) import neither ``websockets`` nor ``asyncio``.
"""

from __future__ import annotations

from peer.transport.tls import (
    MIN_TLS_VERSION,
    CertificateMismatch,
    Identity,
    KnownNodes,
    StateDirError,
    TrustError,
    TrustMode,
    TrustOnFirstUseWarning,
    TrustPolicy,
    client_ssl_context,
    default_known_nodes_path,
    ensure_identity,
    fingerprint_of,
    normalize_fingerprint,
    server_ssl_context,
    verify_peer,
)

__all__ = [
    "MIN_TLS_VERSION",
    "CertificateMismatch",
    "Identity",
    "KnownNodes",
    "StateDirError",
    "TrustError",
    "TrustMode",
    "TrustOnFirstUseWarning",
    "TrustPolicy",
    "client_ssl_context",
    "default_known_nodes_path",
    "ensure_identity",
    "fingerprint_of",
    "normalize_fingerprint",
    "server_ssl_context",
    "verify_peer",
]
