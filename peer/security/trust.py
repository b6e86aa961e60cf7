"""Deciding whether to trust the certificate a peer presented.

Owns the client-side trust policy (CA file, pinned fingerprint, or trust on
first use), the known-nodes file that remembers first-use fingerprints, and
the post-handshake check :func:`verify_peer`.  It must not import
``websockets`` or ``asyncio``: :class:`KnownNodes` does blocking file I/O, so
callers on an event loop run :func:`verify_peer` through ``asyncio.to_thread``.
"""

from __future__ import annotations

import datetime
import enum
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.errors import TesseraError

from peer.security.identity import atomic_write, fingerprint_of, normalize_fingerprint

__all__ = [
    "KNOWN_NODES_VERSION",
    "TrustError",
    "CertificateMismatch",
    "NotAMember",
    "TrustOnFirstUseWarning",
    "TrustMode",
    "TrustPolicy",
    "KnownNodes",
    "default_known_nodes_path",
    "verify_peer",
]

KNOWN_NODES_VERSION = 1


class TrustError(TesseraError):
    """A peer's certificate could not be verified, or trust data is unusable.

    Local only (no wire code): the connection is refused before any message.
    """


class NotAMember(TrustError):
    """The peer presented the expected certificate but did not prove network membership.

    A node sends a peer nothing (no transfer, share, letter or training
    request) until the peer's hello reply proved it holds the network token
    (:func:`~peer.security.proof.check_welcome`).
    """


class CertificateMismatch(TrustError):
    """The peer presented a certificate other than the one expected for it.

    Either an attack (someone in the middle) or a node whose identity was
    legitimately replaced; the message says how to accept the latter.
    """

    @classmethod
    def for_pin(cls, address: str, expected: str, presented: str) -> CertificateMismatch:
        return cls(
            f"certificate of {address} does not match the pinned fingerprint: expected "
            f"{expected}, presented {presented}",
            {"address": address, "expected": expected, "presented": presented},
        )

    @classmethod
    def for_known_node(
        cls, address: str, expected: str, presented: str, known_nodes: Path, first_seen: str
    ) -> CertificateMismatch:
        return cls(
            f"certificate of {address} changed: expected {expected} (trusted on first use "
            f"{first_seen}, recorded in {known_nodes}), presented {presented}. Someone may be "
            f"intercepting the connection. If the node's certificate was replaced on purpose, "
            f"remove the {address!r} entry from {known_nodes} and reconnect",
            {
                "address": address,
                "expected": expected,
                "presented": presented,
                "known_nodes": str(known_nodes),
                "first_seen": first_seen,
            },
        )


class TrustOnFirstUseWarning(UserWarning):
    """A peer's certificate was accepted unverified and recorded for next time."""


class TrustMode(enum.Enum):
    """How a client decides to trust a peer's certificate."""

    CA_FILE = "ca_file"  # the ssl module verifies chain and hostname
    PINNED = "pinned"  # the certificate's fingerprint must equal a given one
    TOFU = "tofu"  # the first fingerprint seen is recorded, later ones must equal it


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """Client-side trust settings for one connection.

    ``cafile`` and ``fingerprint`` are alternatives; with neither, trust on
    first use applies, recorded in ``known_nodes`` (default
    :func:`default_known_nodes_path`).  ``known_nodes`` is ignored in the
    other two modes.
    """

    cafile: Path | None = None
    fingerprint: str | None = None
    known_nodes: Path | None = None

    def __post_init__(self) -> None:
        if self.cafile is not None and self.fingerprint is not None:
            raise ValueError(
                "give either a CA file or a pinned fingerprint, not both: a pin already "
                "names exactly one certificate"
            )
        if self.fingerprint is not None:
            object.__setattr__(self, "fingerprint", normalize_fingerprint(self.fingerprint))

    @property
    def mode(self) -> TrustMode:
        if self.cafile is not None:
            return TrustMode.CA_FILE
        if self.fingerprint is not None:
            return TrustMode.PINNED
        return TrustMode.TOFU


def default_known_nodes_path() -> Path:
    """``~/.tessera/known_nodes.json``, resolved when called, not at import."""
    return Path.home() / ".tessera" / "known_nodes.json"


def verify_peer(policy: TrustPolicy, address: str, peer_der: bytes | None) -> str:
    """Check the certificate a peer presented; return its fingerprint.

    Call right after the TLS handshake and before any application data.
    ``address`` is ``host:port`` as the caller dialled it; ``peer_der`` is
    ``SSLObject.getpeercert(binary_form=True)``.
    """
    if peer_der is None:
        raise TrustError(f"{address} presented no certificate", {"address": address})
    presented = fingerprint_of(peer_der)
    if policy.mode is TrustMode.CA_FILE:
        return presented  # chain and hostname were checked during the handshake
    if policy.fingerprint is not None:
        if presented != policy.fingerprint:
            raise CertificateMismatch.for_pin(address, policy.fingerprint, presented)
        return presented
    KnownNodes(policy.known_nodes or default_known_nodes_path()).check(address, presented)
    return presented


class KnownNodes:
    """The JSON file of fingerprints trusted on first use, keyed by ``host:port``.

    Format: ``{"version": 1, "nodes": {"host:port": {"fingerprint": "sha256:...",
    "first_seen": "<ISO 8601>"}}}``.  Every call re-reads the file, so edits by
    the user or another process are seen.  Writes are atomic but not locked:
    two processes recording different nodes at the same instant may lose one
    entry, which only means that node is trusted on first use again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def check(self, address: str, fingerprint: str) -> bool:
        """True if ``address`` was unknown and is now recorded, False if it matched.

        Raises :class:`CertificateMismatch` if a different fingerprint is on
        record; the record is left as it was.
        """
        presented = normalize_fingerprint(fingerprint)
        nodes = self._load()
        entry = nodes.get(address)
        if entry is not None:
            if entry["fingerprint"] != presented:
                raise CertificateMismatch.for_known_node(
                    address, entry["fingerprint"], presented, self.path, entry["first_seen"]
                )
            return False
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        nodes[address] = {"fingerprint": presented, "first_seen": now}
        self._save(nodes)
        warnings.warn(
            f"trusted the certificate of {address} on first use ({presented}) and recorded "
            f"it in {self.path}; later connections must present the same certificate. To "
            "verify instead of trusting, pin the fingerprint the node prints at start-up "
            "(TrustPolicy(fingerprint=...)) or give its CA file (TrustPolicy(cafile=...))",
            TrustOnFirstUseWarning,
            stacklevel=2,
        )
        return True

    def forget(self, address: str) -> bool:
        """Remove the entry for ``address``; True if there was one."""
        nodes = self._load()
        if nodes.pop(address, None) is None:
            return False
        self._save(nodes)
        return True

    def _load(self) -> dict[str, dict[str, str]]:
        """The ``nodes`` map; empty if the file does not exist yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise self._error(f"cannot be read ({exc})") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self._error(f"is not valid JSON ({exc})") from exc
        return self._validate(data)

    def _validate(self, data: Any) -> dict[str, dict[str, str]]:
        """Check the document's shape; never guess at a file we do not understand."""
        if not isinstance(data, dict) or data.get("version") != KNOWN_NODES_VERSION:
            raise self._error(f"is not a version {KNOWN_NODES_VERSION} known-nodes file")
        raw_nodes = data.get("nodes")
        if not isinstance(raw_nodes, dict):
            raise self._error("has no 'nodes' map")
        nodes: dict[str, dict[str, str]] = {}
        for address, entry in raw_nodes.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("fingerprint"), str):
                raise self._error(f"has a malformed entry for {address!r}")
            try:
                fingerprint = normalize_fingerprint(entry["fingerprint"])
            except ValueError as exc:
                raise self._error(f"has a malformed fingerprint for {address!r}") from exc
            first_seen = entry.get("first_seen")
            nodes[address] = {
                "fingerprint": fingerprint,
                "first_seen": first_seen if isinstance(first_seen, str) else "unknown",
            }
        return nodes

    def _save(self, nodes: dict[str, dict[str, str]]) -> None:
        document = {"version": KNOWN_NODES_VERSION, "nodes": dict(sorted(nodes.items()))}
        data = (json.dumps(document, indent=2) + "\n").encode("utf-8")
        parent = self.path.parent
        try:
            if not parent.is_dir():
                parent.mkdir(mode=0o700, parents=True)
                os.chmod(parent, 0o700)  # mkdir's mode is filtered by the umask
            atomic_write(self.path, data, 0o600)
        except OSError as exc:
            raise self._error(f"cannot be written ({exc})", corrupt=False) from exc

    def _error(self, problem: str, *, corrupt: bool = True) -> TrustError:
        fix = "; fix it or remove it (its nodes are then trusted on first use again)"
        return TrustError(
            f"known-nodes file {self.path} {problem}{fix if corrupt else ''}",
            {"known_nodes": str(self.path), "problem": problem},
        )
