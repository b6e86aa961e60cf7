"""Who is asking: turning a hello's credentials into a :class:`Caller`.

The authenticator is injected into every session.  Three schemes:

- ``token``: a user the node's operator admitted (:mod:`node.server.users`)
  proves it holds its token; the principal is ``user:<name>``.  This is how
  people reach a node.
- ``node``: another node (or a node registering at the gateway) proves it
  holds the key of its certificate and, where a network token is set, that
  it is a member of the network (:mod:`peer.security.proof`); the
  principal is ``node:<id>@<fingerprint prefix>`` and the caller carries the
  certificate's fingerprint, which transfers and registrations check.
- ``anonymous``: a client names itself by a random secret it keeps for its
  lifetime; the principal is ``anon-`` plus 16 hex digits of the secret's
  SHA-256.  Off on nodes unless the operator passes ``--allow-anonymous``
  (development); the gateway's read-only directory accepts it.

Must not import asyncio or the transport's WebSocket module.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from protocol.errors import PermissionDenied, Unauthenticated
from protocol.ids import NodeId
from protocol.messages import HelloRequest

from peer.security.proof import INSECURE_SERVER, NODE_SCHEME, ProofVerifier, welcome_mac
from peer.security.tokens import TOKEN_SCHEME

__all__ = [
    "Caller",
    "Authenticator",
    "AnonymousAuthenticator",
    "CredentialAuthenticator",
    "ANONYMOUS_SCHEME",
]

ANONYMOUS_SCHEME = "anonymous"
MIN_SECRET_BYTES = 16
MAX_SECRET_BYTES = 64

Principal = str
"""Who is asking, as policies and quotas name it: ``user:<name>``, ``node:<id>``, ``anon-<hex>``."""


class UserVerifier(Protocol):
    """Checks a user token's proof (the node's user directory; the gateway has none)."""

    def authenticate(self, credentials: Mapping[str, Any], server: str) -> Principal:
        """The principal ``user:<name>`` the credentials prove, or Unauthenticated."""



@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated peer of a session."""

    principal: Principal
    node_id: NodeId | None = None
    """Set when the peer proved it is a node."""
    fingerprint: str | None = None
    """Fingerprint of the certificate a node peer proved it holds."""

    def node_sender(self, kind: str) -> tuple[NodeId, str]:
        """The proven (node id, certificate fingerprint) of a node peer sending ``kind``.

        PermissionDenied for a peer that did not prove a node identity (a user).
        """
        if self.node_id is None or self.fingerprint is None:
            raise PermissionDenied(f"only a node that proved its identity may send {kind}", {})
        return (self.node_id, self.fingerprint)


class Authenticator(Protocol):
    """Maps a hello to the caller its requests are attributed to."""

    def authenticate(self, hello: HelloRequest) -> Caller: ...

    def welcome(self, server_node_id: NodeId, hello: HelloRequest) -> bytes | None:
        """This server's membership proof for the (authenticated) ``hello``, if it can make one."""
        ...


def _scheme_of(hello: HelloRequest) -> str | None:
    """The credentials' scheme (at most 32 characters), or None without a str ``scheme``."""
    scheme = hello.credentials.get("scheme")
    return scheme[:32] if isinstance(scheme, str) else None


def _refuse_scheme(scheme: str | None) -> Unauthenticated:
    if scheme is None:
        # nil in the details, not a type name: a client in any language can read it.
        return Unauthenticated("hello credentials need a str 'scheme'", {"scheme": None})
    return Unauthenticated(
        f"credential scheme {scheme!r} is not accepted here", {"scheme": scheme}
    )


class AnonymousAuthenticator:
    """Credentials ``{"scheme": "anonymous", "secret": <16-64 random bytes>}``."""

    def authenticate(self, hello: HelloRequest) -> Caller:
        scheme = _scheme_of(hello)
        if scheme != ANONYMOUS_SCHEME:
            raise _refuse_scheme(scheme)
        secret = hello.credentials.get("secret")
        if not isinstance(secret, bytes) or not (
            MIN_SECRET_BYTES <= len(secret) <= MAX_SECRET_BYTES
        ):
            raise Unauthenticated(
                f"anonymous credentials need a secret of {MIN_SECRET_BYTES} to "
                f"{MAX_SECRET_BYTES} bytes",
                {},
            )
        return Caller("anon-" + hashlib.sha256(secret).hexdigest()[:16])

    def welcome(self, server_node_id: NodeId, hello: HelloRequest) -> bytes | None:
        return None  # in no network: nothing to prove


class CredentialAuthenticator:
    """The schemes a node server (or the gateway) is configured to accept.

    Node proofs are accepted from members of the network whose key is
    ``network``; with no key, only if ``open_network`` (a gateway started
    with ``--open``), else not at all (a node outside any network has no
    peers).  User tokens are checked against ``users`` (None: the gateway,
    which has no users).  ``anonymous``: whether random-secret clients are
    let in.
    """

    def __init__(
        self,
        server_fingerprint: str | None,
        *,
        network: bytes | None = None,
        open_network: bool = False,
        users: UserVerifier | None = None,
        anonymous: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.server = server_fingerprint or INSECURE_SERVER
        accepts_nodes = network is not None or open_network
        self.verifier = (
            ProofVerifier(server_fingerprint, clock, network) if accepts_nodes else None
        )
        self.users = users
        self.anonymous = AnonymousAuthenticator() if anonymous else None

    def authenticate(self, hello: HelloRequest) -> Caller:
        scheme = _scheme_of(hello)
        if scheme == TOKEN_SCHEME and self.users is not None:
            return Caller(self.users.authenticate(hello.credentials, self.server))
        if scheme == NODE_SCHEME and self.verifier is not None:
            proof = self.verifier.verify(hello.credentials)
            # The principal names the key too: another key claiming the same
            # id is another principal and sees none of the first one's objects.
            principal = f"node:{proof.node_id}@{proof.fingerprint[7:23]}"
            return Caller(principal, proof.node_id, proof.fingerprint)
        if scheme == ANONYMOUS_SCHEME and self.anonymous is not None:
            return self.anonymous.authenticate(hello)
        raise self._refuse(scheme)

    def welcome(self, server_node_id: NodeId, hello: HelloRequest) -> bytes | None:
        """The welcome MAC a member node answers a member's node proof with.

        Dialing nodes send no payload until they checked it
        (:func:`~peer.security.proof.check_welcome`): membership is proven
        both ways on every node-to-node link.  None for other schemes, for
        a server outside any network, and without TLS.
        """
        network = self.verifier.network if self.verifier is not None else None
        nonce = hello.credentials.get("nonce")
        if network is None or self.server == INSECURE_SERVER or _scheme_of(hello) != NODE_SCHEME:
            return None
        if not isinstance(nonce, bytes):
            return None
        return welcome_mac(network, server_node_id, self.server, nonce)

    def _refuse(self, scheme: str | None) -> Unauthenticated:
        if scheme == ANONYMOUS_SCHEME and self.users is not None:
            return Unauthenticated(
                "this node does not accept anonymous clients: connect with a user token "
                "(token=... or TESSERA_TOKEN) issued by its operator (python -m node users add)",
                {"scheme": scheme},
            )
        if scheme == NODE_SCHEME and self.verifier is None:
            return Unauthenticated(
                "this node is in no network (no network token): it accepts no node peers",
                {"scheme": scheme},
            )
        return _refuse_scheme(scheme)
