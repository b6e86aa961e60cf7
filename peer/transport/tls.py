"""TLS contexts for nodes (server side) and for whoever dials them (client side).

Owns the ``ssl.SSLContext`` settings: protocol floor, certificate loading and
how the client side verifies.  Identity files live in :mod:`.identity`, trust
decisions in :mod:`.trust`; both are re-exported here so the rest of
``node/`` imports TLS matters from one place.  This module must not import
``websockets`` or ``asyncio``: the transport passes these contexts to them.
"""

from __future__ import annotations

import ssl

from peer.security.identity import (
    Identity,
    StateDirError,
    ensure_identity,
    fingerprint_of,
    normalize_fingerprint,
)
from peer.security.trust import (
    CertificateMismatch,
    KnownNodes,
    TrustError,
    TrustMode,
    TrustOnFirstUseWarning,
    TrustPolicy,
    default_known_nodes_path,
    verify_peer,
)

__all__ = [
    "MIN_TLS_VERSION",
    "Identity",
    "StateDirError",
    "ensure_identity",
    "fingerprint_of",
    "normalize_fingerprint",
    "CertificateMismatch",
    "KnownNodes",
    "TrustError",
    "TrustMode",
    "TrustOnFirstUseWarning",
    "TrustPolicy",
    "default_known_nodes_path",
    "verify_peer",
    "server_ssl_context",
    "client_ssl_context",
]

MIN_TLS_VERSION = ssl.TLSVersion.TLSv1_2
"""TLS 1.0 and 1.1 are deprecated (RFC 8996); 1.2 keeps older OpenSSL peers working."""


def server_ssl_context(identity: Identity) -> ssl.SSLContext:
    """A server context presenting ``identity``'s certificate.

    Clients are not asked for certificates: peers authenticate with the
    network token inside the protocol handshake, over this channel.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_TLS_VERSION
    try:
        context.load_cert_chain(certfile=identity.cert_path, keyfile=identity.key_path)
    except (OSError, ssl.SSLError) as exc:
        raise StateDirError(
            f"cannot load TLS certificate {identity.cert_path} with key "
            f"{identity.key_path}: {exc}",
            {"cert_path": str(identity.cert_path), "key_path": str(identity.key_path)},
        ) from exc
    return context


def client_ssl_context(policy: TrustPolicy) -> ssl.SSLContext:
    """A client context for ``policy``; pair it with :func:`verify_peer`.

    With a CA file, OpenSSL verifies the chain and the hostname during the
    handshake, as for any HTTPS client.

    With a pinned fingerprint or trust on first use, the peer's certificate
    is self-signed and chains to nothing we hold, so OpenSSL verification is
    switched off (``CERT_NONE``) and the check moves to :func:`verify_peer`,
    which the transport calls right after the handshake and before sending
    or reading any application data.  That is pinning, not the absence of
    verification: the handshake proves the peer holds the private key of the
    certificate it presented (it signs the key exchange with it), and
    :func:`verify_peer` then requires that certificate to be exactly the one
    expected, byte for byte, by its SHA-256.  A stronger check than a chain
    to a CA, which accepts any certificate the CA ever issued for that name.
    Hostnames are not checked in this mode because the pin already names one
    certificate, whatever address it was reached at.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
    context.minimum_version = MIN_TLS_VERSION
    if policy.cafile is None:
        context.check_hostname = False  # must precede CERT_NONE
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        context.load_verify_locations(cafile=policy.cafile)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TrustError(
            f"cannot load CA file {policy.cafile}: {reason}", {"cafile": str(policy.cafile)}
        ) from exc
    return context
