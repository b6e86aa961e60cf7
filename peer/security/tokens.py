"""Secrets that name who may join: user tokens and the network token.

Two kinds of shared secret, both issued by operators, never sent in clear:

- A **user token** (``tsr1.<user>.<secret>``) is issued by a node's operator
  (``python -m node users add``) and names the principal ``user:<user>``.
  The client proves it holds the token by a MAC over the server's
  fingerprint, a timestamp and a fresh nonce; so a node that a user
  connected to by mistake (or a man in the middle on a first, unpinned
  connection) learns nothing it can replay elsewhere.
- The **network token** is given to the gateway and to every member node.
  A node proves membership with a MAC over the same bytes it signs in its
  node proof (:mod:`peer.security.proof`): the gateway admits only members
  to its registry, and nodes accept only members as peers.

Keys are SHA-256 digests of the tokens under distinct labels, so the same
string used as both a user token and a network token yields unrelated keys.
Must not import asyncio or websockets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Mapping

import msgpack

from protocol.errors import Unauthenticated

__all__ = [
    "TOKEN_SCHEME",
    "INSECURE_SERVER",
    "token_fields",
    "USER_NAME_PATTERN",
    "MIN_NETWORK_TOKEN_CHARS",
    "UserToken",
    "new_user_token",
    "parse_user_token",
    "user_key",
    "user_credentials",
    "user_payload",
    "user_mac",
    "network_key",
    "new_network_token",
    "membership_mac",
    "validate_network_token",
]

TOKEN_SCHEME = "token"
INSECURE_SERVER = "insecure"
"""What a proof or MAC binds to when the server has no certificate (``--insecure``)."""
USER_CONTEXT = "tessera-user-hello-v1"
USER_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
SECRET_BYTES = 32
MIN_NETWORK_TOKEN_CHARS = 16
NONCE_BYTES = 16
_USER_TOKEN = re.compile(r"tsr1\.([a-z0-9][a-z0-9_-]{0,31})\.([A-Za-z0-9_-]{43})")


@dataclass(frozen=True, slots=True)
class UserToken:
    """A parsed user token; ``repr`` never shows the secret."""

    user: str
    text: str

    def __repr__(self) -> str:
        return f"UserToken(user={self.user!r})"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_user_token(user: str) -> UserToken:
    """A fresh token for ``user`` with 256 random bits."""
    if not USER_NAME_PATTERN.fullmatch(user):
        raise ValueError(
            f"invalid user name {user[:40]!r}: use 1-32 lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return UserToken(user, f"tsr1.{user}.{_b64(secrets.token_bytes(SECRET_BYTES))}")


def parse_user_token(text: str) -> UserToken:
    """ValueError unless ``text`` is a well-formed user token (surrounding blanks ignored)."""
    text = text.strip()
    match = _USER_TOKEN.fullmatch(text)
    if match is None:
        raise ValueError("not a Tessera user token (expected tsr1.<user>.<43 characters>)")
    return UserToken(match.group(1), text)


def user_key(token: UserToken) -> bytes:
    """The MAC key a node stores for the token (the token itself is never stored)."""
    return hashlib.sha256(b"tessera-user-key-v1\0" + token.text.encode("ascii")).digest()


def user_payload(user: str, server: str, timestamp: int, nonce: bytes) -> bytes:
    """The bytes a user's MAC covers (PROTOCOL.md 6.1; 15.4 is an example)."""
    payload: bytes = msgpack.packb([USER_CONTEXT, user, server, timestamp, nonce], use_bin_type=True)
    return payload


def user_mac(key: bytes, user: str, server: str, timestamp: int, nonce: bytes) -> bytes:
    """MAC binding a user's hello to one server and one moment."""
    return hmac.new(key, user_payload(user, server, timestamp, nonce), hashlib.sha256).digest()


def user_credentials(
    token: UserToken, server_fingerprint: str | None, now: float | None = None
) -> dict[str, Any]:
    """Hello credentials proving possession of ``token`` to the server with that fingerprint."""
    timestamp = int(time.time() if now is None else now)
    nonce = secrets.token_bytes(NONCE_BYTES)
    server = server_fingerprint or INSECURE_SERVER
    return {
        "scheme": TOKEN_SCHEME,
        "user": token.user,
        "timestamp": timestamp,
        "nonce": nonce,
        "mac": user_mac(user_key(token), token.user, server, timestamp, nonce),
    }


def token_fields(credentials: Mapping[str, Any]) -> tuple[str, int, bytes, bytes]:
    """The user, timestamp, nonce and MAC of token credentials, type-checked."""
    user = credentials.get("user")
    timestamp = credentials.get("timestamp")
    nonce = credentials.get("nonce")
    mac = credentials.get("mac")
    if not (
        isinstance(user, str)
        and USER_NAME_PATTERN.fullmatch(user)
        and isinstance(timestamp, int)
        and not isinstance(timestamp, bool)
        and isinstance(nonce, bytes)
        and len(nonce) == NONCE_BYTES
        and isinstance(mac, bytes)
    ):
        raise Unauthenticated(
            "token credentials need user, timestamp, nonce (16 bytes) and mac", {}
        )
    return user, timestamp, nonce, mac


def new_network_token() -> str:
    """A fresh network token for a gateway and its member nodes."""
    return f"tsn1.{_b64(secrets.token_bytes(SECRET_BYTES))}"


def validate_network_token(text: str) -> str:
    """The token with surrounding blanks removed; ValueError if too short to be a secret."""
    token = text.strip()
    if len(token) < MIN_NETWORK_TOKEN_CHARS:
        raise ValueError(
            f"the network token must be at least {MIN_NETWORK_TOKEN_CHARS} characters "
            "(make one with: python -m gateway new-token)"
        )
    return token


def network_key(token: str) -> bytes:
    """The MAC key derived from a network token."""
    return hashlib.sha256(b"tessera-network-key-v1\0" + token.encode("utf-8")).digest()


def membership_mac(key: bytes, signed_payload: bytes) -> bytes:
    """MAC showing the holder of a node proof is a member of the network."""
    return hmac.new(key, signed_payload, hashlib.sha256).digest()
