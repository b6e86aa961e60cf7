"""Who is asking: turning a hello's credentials into a :class:`Caller`.

The authenticator is injected into every session, so the security issue can
swap in operator-issued credentials without touching the session.  Two
schemes today:

- ``anonymous``: a client names itself by a random secret it keeps for its
  lifetime; the principal is ``anon-`` plus 16 hex digits of the secret's
  SHA-256.  Reconnecting with the same secret reaches the same objects, and
  nobody else can guess the name.
- ``node``: another node (or a node registering at the gateway) proves it
  holds the key of its certificate (:mod:`node.transport.proof`); the
  principal is ``node:<id>`` and the caller carries the certificate's
  fingerprint, which transfers and registrations check.

Must not import asyncio or the transport's WebSocket module.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from protocol.errors import Unauthenticated
from protocol.ids import NodeId
from protocol.messages import HelloRequest

from ..transport.proof import NODE_SCHEME, ProofVerifier
from .store import Principal

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


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated peer of a session."""

    principal: Principal
    node_id: NodeId | None = None
    """Set when the peer proved it is a node."""
    fingerprint: str | None = None
    """Fingerprint of the certificate a node peer proved it holds."""


class Authenticator(Protocol):
    """Maps a hello to the caller its requests are attributed to."""

    def authenticate(self, hello: HelloRequest) -> Caller: ...


def _scheme_of(hello: HelloRequest) -> str:
    scheme = hello.credentials.get("scheme")
    return scheme[:32] if isinstance(scheme, str) else type(scheme).__name__


def _refuse_scheme(scheme: str) -> Unauthenticated:
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


class CredentialAuthenticator:
    """Anonymous clients and proven nodes, as a node server or the gateway accepts them."""

    def __init__(self, verifier: ProofVerifier, anonymous: bool = True) -> None:
        self.verifier = verifier
        self.anonymous = AnonymousAuthenticator() if anonymous else None

    def authenticate(self, hello: HelloRequest) -> Caller:
        scheme = _scheme_of(hello)
        if scheme == NODE_SCHEME:
            proof = self.verifier.verify(hello.credentials)
            # The principal names the key too: another key claiming the same
            # id is another principal and sees none of the first one's objects.
            principal = f"node:{proof.node_id}@{proof.fingerprint[7:23]}"
            return Caller(principal, proof.node_id, proof.fingerprint)
        if scheme == ANONYMOUS_SCHEME and self.anonymous is not None:
            return self.anonymous.authenticate(hello)
        raise _refuse_scheme(scheme)
