"""The users a node's operator has admitted, and checking their hellos.

``<state-dir>/users.json`` (mode 0600) maps each user name to the MAC key
derived from its token (:func:`~peer.security.tokens.user_key`); tokens
themselves are shown once, when issued, and never stored.  The operator
edits the file with ``python -m node users add|revoke|list`` while the node
runs: the directory notices the change (file size, mtime and inode) at the
next hello, and the node's watcher closes the connections of revoked users.

Must not import asyncio or the transport's WebSocket module.
"""

from __future__ import annotations

import hmac
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from protocol.errors import Unauthenticated

from peer.security.proof import ReplayGuard
from peer.security.tokens import USER_NAME_PATTERN, UserToken, token_fields, user_key, user_mac

__all__ = ["UserDirectory", "UserEntry", "USERS_FILE", "USER_PREFIX", "UsersFileError"]

USERS_FILE = "users.json"
USER_PREFIX = "user:"
_VERSION = 1


class UsersFileError(Exception):
    """The users file cannot be read or written; the message says which and why."""


@dataclass(frozen=True, slots=True)
class UserEntry:
    """One admitted user: the MAC key of its token and when it was added."""

    name: str
    key: bytes
    added: str


class UserDirectory:
    """Users of one node, backed by ``<state-dir>/users.json``; thread-safe."""

    def __init__(self, state_dir: Path, clock: Any = time.time) -> None:
        self.path = state_dir / USERS_FILE
        self.guard = ReplayGuard(clock)
        self._users: dict[str, UserEntry] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()

    # -- operator side --------------------------------------------------

    def add(self, token: UserToken) -> None:
        """Admit the token's user (replacing an earlier token of the same name)."""
        with self._lock:
            users = self._read()
            added = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            users[token.user] = UserEntry(token.user, user_key(token), added)
            self._write(users)

    def revoke(self, name: str) -> bool:
        """Remove ``name``; False if it was not admitted."""
        with self._lock:
            users = self._read()
            if users.pop(name, None) is None:
                return False
            self._write(users)
            return True

    def entries(self) -> list[UserEntry]:
        """Admitted users, sorted by name."""
        with self._lock:
            return sorted(self._read().values(), key=lambda entry: entry.name)

    # -- node side ------------------------------------------------------

    def names(self) -> frozenset[str]:
        """Names admitted now (reloads the file if it changed)."""
        with self._lock:
            self._refresh()
            return frozenset(self._users)

    def authenticate(self, credentials: Mapping[str, Any], server: str) -> str:
        """The principal ``user:<name>`` the credentials prove, or Unauthenticated."""
        user, timestamp, nonce, mac = token_fields(credentials)
        now = self.guard.check_time(timestamp, "token credential")
        with self._lock:
            try:
                self._refresh()
            except UsersFileError:
                pass  # a half-edited file: the users loaded before stay in force
            entry = self._users.get(user)
        expected = user_mac(entry.key if entry else b"\0" * 32, user, server, timestamp, nonce)
        if entry is None or not hmac.compare_digest(mac, expected):
            # One message for unknown users and wrong tokens: names are not probeable.
            raise Unauthenticated(
                "unknown user or wrong token (ask this node's operator for a token: "
                "python -m node users add <name>)",
                {},
            )
        self.guard.remember(nonce, now, "token credential")
        return USER_PREFIX + user

    def _refresh(self) -> None:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            self._users, self._stamp = {}, None
            return
        except OSError as exc:
            raise UsersFileError(f"cannot read {self.path}: {exc.strerror}") from None
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        if stamp != self._stamp:
            self._users, self._stamp = self._read(), stamp

    def _read(self) -> dict[str, UserEntry]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise UsersFileError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            # Decoding here, not in read_text, so bad UTF-8 is a damaged file like bad JSON.
            return _parse(json.loads(raw.decode("utf-8")))
        except RecursionError:
            raise UsersFileError(
                f"{self.path} is not a valid users file: nested too deeply"
            ) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise UsersFileError(f"{self.path} is not a valid users file: {exc}") from None

    def _write(self, users: Mapping[str, UserEntry]) -> None:
        data = {
            "version": _VERSION,
            "users": {
                name: {"key": entry.key.hex(), "added": entry.added}
                for name, entry in sorted(users.items())
            },
        }
        tmp = self.path.with_name(f".{USERS_FILE}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=2)
                handle.write("\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            raise UsersFileError(f"cannot write {self.path}: {exc.strerror}") from None


def _parse(data: Any) -> dict[str, UserEntry]:
    if not isinstance(data, dict) or data.get("version") != _VERSION:
        raise ValueError(f"expected an object with version {_VERSION}")
    users = data["users"]
    if not isinstance(users, dict):
        raise ValueError("'users' must be an object")
    parsed: dict[str, UserEntry] = {}
    for name, entry in users.items():
        if not isinstance(name, str) or not USER_NAME_PATTERN.fullmatch(name):
            raise ValueError(f"invalid user name {str(name)[:40]!r}")
        key = bytes.fromhex(entry["key"])
        if len(key) != 32:
            raise ValueError(f"user {name!r} has a key of {len(key)} bytes, expected 32")
        parsed[name] = UserEntry(name, key, str(entry.get("added", "")))
    return parsed
