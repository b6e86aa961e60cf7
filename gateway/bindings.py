"""The gateway's durable id bindings: which certificate each node id belongs to.

The registry's entries are soft (a node that stops heartbeating is dropped,
a restarted gateway starts empty), but the *binding* of an id to the
certificate that first registered it must not be: otherwise any network
member could register as ``alice`` while alice restarts or the gateway
does, and clients that look alice up would pin the member's certificate
(issue 11, item 5).  So bindings live in ``<state-dir>/bindings.json``
(mode 0600), written atomically, and outlive deregistration, drops and
restarts; only the gateway's operator changes them
(``python -m gateway bindings``).

Two processes write the file, the running gateway (a new id bound) and the
operator's CLI (an id removed or rebound), so every write is a
read-modify-write under an exclusive ``flock`` on ``bindings.lock``; readers
need no lock because a write replaces the file in one rename (``flock``
makes this module POSIX-only, like the rest of the gateway's file handling).  The gateway
notices the operator's edits by the file's inode, size and mtime.

Blocking file I/O: the server calls this module through
``asyncio.to_thread``.  Must not import asyncio or websockets.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peer.errors import reason_of
from peer.security.identity import StateDirError, atomic_write, normalize_fingerprint
from protocol.ids import NodeId
from protocol.validate import MAX_NAME_CHARS

__all__ = [
    "BINDINGS_FILE",
    "MAX_BINDINGS",
    "Binding",
    "BindingFile",
    "Bindings",
    "decode_bindings",
    "encode_bindings",
    "node_id_arg",
]

BINDINGS_FILE = "bindings.json"
_LOCK_FILE = "bindings.lock"
_VERSION = 1

MAX_BINDINGS = 16_384
"""Most node ids the gateway keeps bound (4x :data:`~gateway.registry.MAX_NODES`).

Bindings outlive entries, so without a cap a member could grow the file
without end; beyond it new ids get QUOTA_EXCEEDED until the operator
removes stale bindings.  About 130 bytes each: the full file stays ~2 MiB.
"""

@dataclass(frozen=True, slots=True)
class Binding:
    """A node id's certificate, and when (Unix seconds) it was bound to it."""

    fingerprint: str
    bound_at: float


Bindings = dict[NodeId, Binding]
"""A table of bindings by node id, as the file holds it."""


def node_id_arg(text: str) -> NodeId:
    """A node id as typed by the operator; ValueError if it cannot be one."""
    if not 0 < len(text) <= MAX_NAME_CHARS:
        raise ValueError(f"a node id has 1 to {MAX_NAME_CHARS} characters, got {len(text)}")
    return NodeId(text)


def encode_bindings(table: Mapping[NodeId, Binding]) -> bytes:
    """The file's bytes: a versioned JSON object, ids sorted so diffs stay readable."""
    data = {
        "version": _VERSION,
        "bindings": {
            node_id: {"fingerprint": b.fingerprint, "bound_at": b.bound_at}
            for node_id, b in sorted(table.items())
        },
    }
    return (json.dumps(data, indent=1) + "\n").encode("utf-8")


def decode_bindings(raw: bytes) -> Bindings:
    """Parse the file's bytes; ValueError with a one-line reason if they are not valid."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("version") != _VERSION:
        raise ValueError(f"expected an object with version {_VERSION}")
    entries = data.get("bindings")
    if not isinstance(entries, dict):
        raise ValueError("'bindings' must be an object")
    return {_node_id(key): _binding(key, value) for key, value in entries.items()}


def _node_id(key: str) -> NodeId:
    try:
        return node_id_arg(key)
    except ValueError as exc:
        raise ValueError(f"invalid node id {key[:40]!r}: {exc}") from None


def _binding(key: str, value: Any) -> Binding:
    if not isinstance(value, dict):
        raise ValueError(f"binding of {key[:40]!r} must be an object")
    fingerprint, bound_at = value.get("fingerprint"), value.get("bound_at")
    if not isinstance(fingerprint, str) or _canonical(fingerprint) != fingerprint:
        raise ValueError(f"binding of {key[:40]!r} has no canonical 'sha256:<64 hex>' fingerprint")
    if isinstance(bound_at, bool) or not isinstance(bound_at, (int, float)) or not math.isfinite(bound_at):
        raise ValueError(f"binding of {key[:40]!r} has no numeric 'bound_at'")
    return Binding(fingerprint, float(bound_at))


def _canonical(text: str) -> str | None:
    """The canonical fingerprint, or None where :func:`normalize_fingerprint` refuses it."""
    try:
        return normalize_fingerprint(text)
    except ValueError:
        return None


_Stamp = tuple[int, int, int]


class BindingFile:
    """``<state-dir>/bindings.json``: load, notice changes, and locked read-modify-write.

    Raises :class:`~peer.security.identity.StateDirError` (one line, naming
    the file) when the file cannot be read, parsed or written.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / BINDINGS_FILE
        self._stamp: _Stamp | None = None
        """The version of the file this object last read or wrote."""

    def load(self) -> Bindings:
        """The bindings now in the file (none if it does not exist yet)."""
        stamp = self._stat()
        table = self._read()
        self._stamp = stamp
        return table

    def changed(self) -> bool:
        """Whether the file is not the version last loaded or written here."""
        return self._stat() != self._stamp

    def add(self, new: Mapping[NodeId, Binding]) -> Bindings:
        """Bind the ids of ``new`` that the file does not bind yet; the file's table after.

        An id the file already binds keeps the file's binding: the operator's
        edit, made since this gateway last read the file, wins.
        """

        def merge(table: Bindings) -> None:
            for node_id, binding in new.items():
                table.setdefault(node_id, binding)

        return self.edit(merge)

    def edit(self, change: Callable[[Bindings], object]) -> Bindings:
        """Apply ``change`` to the file's current table under the lock; the table written."""
        with self._locked():
            table = self._read()
            before = dict(table)
            change(table)
            if table != before:
                self._write(table)
            self._stamp = self._stat()
            return table

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure_dir()
        lock = self.state_dir / _LOCK_FILE
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise self._error(f"cannot open {lock}: {reason_of(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _ensure_dir(self) -> None:
        try:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error(f"cannot create it: {reason_of(exc)}") from None

    def _stat(self) -> _Stamp | None:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error(f"cannot read {self.path}: {reason_of(exc)}") from None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def _read(self) -> Bindings:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise self._error(f"cannot read {self.path}: {reason_of(exc)}") from None
        try:
            return decode_bindings(raw)
        except ValueError as exc:
            raise self._error(
                f"{self.path.name} is corrupt: {exc}; fix it, or move it away (every "
                "node id is then bound afresh by its next registration)"
            ) from None

    def _write(self, table: Mapping[NodeId, Binding]) -> None:
        try:
            atomic_write(self.path, encode_bindings(table), 0o600)
        except OSError as exc:
            raise self._error(f"cannot write {self.path}: {reason_of(exc)}") from None

    def _error(self, problem: str) -> StateDirError:
        return StateDirError.for_path(self.state_dir, problem)
