"""Who is asking: turning a hello's credentials into a principal.

The authenticator is injected into every session, so the security issue can
swap in operator-issued credentials without touching the session.  Today's
default, :class:`AnonymousAuthenticator`, names each client by a hash of a
random secret the client keeps for its lifetime: reconnecting with the same
secret reaches the same objects, and nobody else can guess the name.  It
must not import asyncio or the transport.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from protocol.errors import Unauthenticated
from protocol.messages import HelloRequest

from .store import Principal

__all__ = ["Authenticator", "AnonymousAuthenticator", "ANONYMOUS_SCHEME"]

ANONYMOUS_SCHEME = "anonymous"
MIN_SECRET_BYTES = 16
MAX_SECRET_BYTES = 64


class Authenticator(Protocol):
    """Maps a hello to the principal its requests are attributed to."""

    def authenticate(self, hello: HelloRequest) -> Principal: ...


class AnonymousAuthenticator:
    """Credentials ``{"scheme": "anonymous", "secret": <16-64 random bytes>}``.

    The principal is ``anon-`` plus the first 16 hex digits of the secret's
    SHA-256: stable across reconnects, unguessable without the secret.
    """

    def authenticate(self, hello: HelloRequest) -> Principal:
        scheme = hello.credentials.get("scheme")
        if scheme != ANONYMOUS_SCHEME:
            shown = scheme if isinstance(scheme, str) else type(scheme).__name__
            raise Unauthenticated(
                f"credential scheme {str(shown)[:32]!r} is not accepted by this node",
                {"scheme": str(shown)[:32]},
            )
        secret = hello.credentials.get("secret")
        if not isinstance(secret, bytes) or not (
            MIN_SECRET_BYTES <= len(secret) <= MAX_SECRET_BYTES
        ):
            raise Unauthenticated(
                f"anonymous credentials need a secret of {MIN_SECRET_BYTES} to "
                f"{MAX_SECRET_BYTES} bytes",
                {},
            )
        return "anon-" + hashlib.sha256(secret).hexdigest()[:16]
