"""What a client says in its hello: a user token's proof, or an anonymous secret.

``token=`` wins; else the ``TESSERA_TOKEN`` environment variable (so
notebooks and scripts need not carry the secret in their source); else an
anonymous secret, which only nodes started with ``--allow-anonymous``
accept.  A token is proven afresh on every dial (a MAC over the server's
fingerprint and a new nonce, :mod:`peer.security.tokens`), so reconnects
are not refused as replays and a wrong server learns nothing reusable.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from peer.server.auth import ANONYMOUS_SCHEME
from peer.client.endpoint import Credentials, fixed_credentials
from peer.security.tokens import UserToken, parse_user_token, user_credentials

__all__ = ["client_credentials", "TOKEN_ENV"]

TOKEN_ENV = "TESSERA_TOKEN"
"""Environment variable a client reads its user token from when none is given."""


def client_credentials(token: str | None = None) -> Credentials:
    """Hello credentials for a client: ``token``, else ``$TESSERA_TOKEN``, else anonymous.

    Raises ValueError for a malformed token (before anything is sent).
    """
    text = token if token is not None else os.environ.get(TOKEN_ENV) or None
    if text is None:
        return fixed_credentials({"scheme": ANONYMOUS_SCHEME, "secret": secrets.token_bytes(32)})
    try:
        parsed = parse_user_token(text)
    except ValueError as exc:
        source = "token" if token is not None else TOKEN_ENV
        raise ValueError(f"{source}: {exc}") from None
    return _prover(parsed)


def _prover(token: UserToken) -> Credentials:
    def credentials(fingerprint: str | None) -> dict[str, Any]:
        return user_credentials(token, fingerprint)

    return credentials
