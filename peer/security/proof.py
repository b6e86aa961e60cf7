"""Node proofs: how a node shows it holds the key of the certificate it claims.

A node dialing the gateway or another node says hello with credentials of
scheme ``node``: its id, its certificate (DER), a timestamp, a fresh nonce
and a signature over all of them *and the fingerprint of the server it is
talking to*.  The server recomputes the fingerprint from the certificate,
checks the signature with its public key, the timestamp within
:data:`MAX_CLOCK_SKEW`, and that the nonce was not seen before.  Binding the
server's fingerprint stops a server that received a proof from replaying it
to another; the nonce cache stops replays to the same server.  We do not use
TLS client certificates because Python's ``ssl`` cannot accept an arbitrary
self-signed client certificate and then pin it.

A proof also carries ``membership``: a MAC over the signed bytes keyed by
the network token (:mod:`peer.security.tokens`).  A verifier given the
network's key refuses proofs without a valid one, so holding *a* key pair
is not enough to join: the node must also have been given the token.

Must not import asyncio or websockets.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import msgpack
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from protocol.errors import Unauthenticated
from protocol.ids import NodeId

from peer.security.identity import Identity, fingerprint_of, load_signing_key
from peer.security.tokens import INSECURE_SERVER, membership_mac
from peer.security.trust import NotAMember

__all__ = [
    "NODE_SCHEME",
    "MAX_CLOCK_SKEW",
    "NodeProof",
    "node_credentials",
    "ProofVerifier",
    "ReplayGuard",
    "INSECURE_SERVER",
    "welcome_mac",
    "check_welcome",
]

NODE_SCHEME = "node"
CONTEXT = "tessera-node-hello-v1"
MAX_CLOCK_SKEW = 300.0
"""Seconds a proof's timestamp may differ from the verifier's clock."""
NONCE_BYTES = 16


@dataclass(frozen=True, slots=True)
class NodeProof:
    """A verified node identity."""

    node_id: NodeId
    fingerprint: str


def _payload(node_id: str, server: str, timestamp: int, nonce: bytes) -> bytes:
    packed: bytes = msgpack.packb([CONTEXT, node_id, server, timestamp, nonce], use_bin_type=True)
    return packed


def node_credentials(
    identity: Identity,
    node_id: str,
    server_fingerprint: str | None,
    now: float | None = None,
    network: bytes | None = None,
) -> dict[str, Any]:
    """Hello credentials proving ``node_id`` holds ``identity``'s key (reads the key file).

    ``network`` is the network key (:func:`~peer.security.tokens.network_key`);
    with it the proof also shows membership of that network.
    """
    timestamp = int(time.time() if now is None else now)
    nonce = secrets.token_bytes(NONCE_BYTES)
    payload = _payload(node_id, server_fingerprint or INSECURE_SERVER, timestamp, nonce)
    key = load_signing_key(identity)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = key.sign(payload)  # type: ignore[call-arg]
    credentials: dict[str, Any] = {
        "scheme": NODE_SCHEME,
        "node_id": node_id,
        "certificate": identity.cert_der,
        "timestamp": timestamp,
        "nonce": nonce,
        "signature": signature,
    }
    if network is not None:
        credentials["membership"] = membership_mac(network, payload)
    return credentials


class ReplayGuard:
    """Freshness of signed hellos: timestamp within the skew, nonce never seen twice."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._seen: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def check_time(self, timestamp: int, what: str) -> float:
        """The current time; Unauthenticated if ``timestamp`` is too far from it."""
        now = self.clock()
        if abs(now - timestamp) > MAX_CLOCK_SKEW:
            raise Unauthenticated(
                f"{what} timestamp is {abs(now - timestamp):.0f}s off; check the clocks",
                {"skew": round(now - timestamp)},
            )
        return now

    def remember(self, nonce: bytes, now: float, what: str) -> None:
        """Unauthenticated if ``nonce`` was used before (within twice the skew)."""
        with self._lock:
            for old, seen_at in list(self._seen.items()):
                if now - seen_at > 2 * MAX_CLOCK_SKEW:
                    del self._seen[old]
            if nonce in self._seen:
                raise Unauthenticated(f"{what} was already used (replay)", {})
            self._seen[nonce] = now


class ProofVerifier:
    """Checks node proofs addressed to one server; remembers nonces against replay."""

    def __init__(
        self,
        server_fingerprint: str | None,
        clock: Callable[[], float] = time.time,
        network: bytes | None = None,
    ) -> None:
        """``network``: the network key members must prove; None admits any key pair."""
        self.server = server_fingerprint or INSECURE_SERVER
        self.network = network
        self.guard = ReplayGuard(clock)

    def verify(self, credentials: Mapping[str, Any]) -> NodeProof:
        """The proven node identity, or :class:`Unauthenticated` saying why not."""
        node_id, der, timestamp, nonce, signature = _fields(credentials)
        now = self.guard.check_time(timestamp, "node proof")
        try:
            certificate = x509.load_der_x509_certificate(der)
        except ValueError:
            raise Unauthenticated("node proof certificate is not valid DER", {}) from None
        payload = _payload(node_id, self.server, timestamp, nonce)
        _check_signature(certificate, signature, payload)
        if self.network is not None:
            membership = credentials.get("membership")
            if not isinstance(membership, bytes) or not hmac.compare_digest(
                membership, membership_mac(self.network, payload)
            ):
                raise Unauthenticated(
                    f"node {node_id!r} did not prove membership of this network "
                    "(it needs the network token)",
                    {"node_id": node_id},
                )
        self.guard.remember(nonce, now, "node proof")
        return NodeProof(NodeId(node_id), fingerprint_of(der))


def _fields(credentials: Mapping[str, Any]) -> tuple[str, bytes, int, bytes, bytes]:
    node_id = credentials.get("node_id")
    der = credentials.get("certificate")
    timestamp = credentials.get("timestamp")
    nonce = credentials.get("nonce")
    signature = credentials.get("signature")
    if not (
        isinstance(node_id, str)
        and isinstance(der, bytes)
        and isinstance(timestamp, int)
        and not isinstance(timestamp, bool)
        and isinstance(nonce, bytes)
        and len(nonce) == NONCE_BYTES
        and isinstance(signature, bytes)
    ):
        raise Unauthenticated(
            "node credentials need node_id, certificate, timestamp, nonce and signature", {}
        )
    return node_id, der, timestamp, nonce, signature


def _check_signature(certificate: x509.Certificate, signature: bytes, payload: bytes) -> None:
    try:
        key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):  # a DER that parses but holds no usable key
        raise Unauthenticated("node proof certificate holds no usable public key", {}) from None
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(signature, payload)
        else:
            raise Unauthenticated("node proof certificate has an unsupported key type", {})
    except (InvalidSignature, ValueError, TypeError):
        raise Unauthenticated("node proof signature does not verify", {}) from None


WELCOME_CONTEXT = "tessera-node-welcome-v1"


def welcome_mac(network: bytes, server_node_id: str, server_fingerprint: str, client_nonce: bytes) -> bytes:
    """The server's side of mutual membership: a MAC a dialing node checks before sending data.

    A node proof shows the *dialer* is a member; this shows the *server*
    is.  It binds the server's node id, the certificate fingerprint the
    dialer verified and the fresh nonce of the dialer's own proof, so only
    a holder of the network token can answer this very hello, on this very
    TLS identity: an outsider with a valid key pair (or a recording of a
    member's earlier answer) cannot.
    """
    payload = msgpack.packb(
        [WELCOME_CONTEXT, server_node_id, server_fingerprint, client_nonce], use_bin_type=True
    )
    return membership_mac(network, payload)


def check_welcome(
    network: bytes,
    server_node_id: str,
    server_fingerprint: str | None,
    credentials: Mapping[str, Any],
    welcome: bytes | None,
    *,
    peer: str,
) -> None:
    """:class:`NotAMember` unless ``welcome`` proves the server holds the network token.

    ``credentials`` are the node proof this side sent in its hello (their
    nonce is what the welcome answers); ``peer`` (the address dialed)
    begins the error's message.
    """
    nonce = credentials.get("nonce")
    if server_fingerprint is None or not isinstance(nonce, bytes):
        raise NotAMember(f"{peer}: network membership is proven over TLS node links only", {})
    expected = welcome_mac(network, server_node_id, server_fingerprint, nonce)
    if not isinstance(welcome, bytes) or not hmac.compare_digest(welcome, expected):
        raise NotAMember(f"{peer}: node {server_node_id!r} did not prove membership of this network", {})
