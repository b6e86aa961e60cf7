"""Frozen settings a node runs with, built once by ``__main__`` (or a test).

Library code never reads argv or the environment; it receives one of these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from protocol.ids import NodeId
from protocol.limits import DEFAULT_MAX_MESSAGE_BYTES

from .fl.policy import DEFAULT_POLICY, TrainingPolicy

__all__ = [
    "NodeSettings",
    "DatasetSource",
    "DEFAULT_PORT",
    "DEFAULT_ORPHAN_TTL",
    "NODE_ID_PATTERN",
    "default_state_dir",
    "validate_node_id",
]

DEFAULT_PORT = 8765
DEFAULT_ORPHAN_TTL = 600.0
"""Seconds a principal's objects outlive its last connection (reconnect window)."""

NODE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def validate_node_id(text: str) -> NodeId:
    """A node id: 1-64 letters, digits, ``_ . -``, starting alphanumeric."""
    if not NODE_ID_PATTERN.fullmatch(text):
        raise ValueError(
            f"invalid node id {text[:80]!r}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return NodeId(text)


def default_state_dir(node_id: str, home: Path | None = None) -> Path:
    """``~/.tessera/nodes/<id>``: one key and certificate per node id."""
    return (home or Path.home()) / ".tessera" / "nodes" / node_id


@dataclass(frozen=True)
class DatasetSource:
    """A dataset the node loads at start (``--dataset NAME=PATH`` and its options)."""

    name: str
    path: Path
    label_column: str = "label"
    description: str = ""
    heldout_fraction: float = 0.2
    """Share of rows the owner keeps for held-out metrics (never trained on)."""
    policy: TrainingPolicy = DEFAULT_POLICY
    """What may be learned from it (``--dataset-policy``, else the policy flags, else the safe defaults)."""


@dataclass(frozen=True)
class NodeSettings:
    """Everything a node needs to start."""

    node_id: NodeId
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    insecure: bool = False
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    roles: tuple[str, ...] = ("compute",)
    tags: tuple[str, ...] = field(default_factory=tuple)
    orphan_ttl: float = DEFAULT_ORPHAN_TTL
    gateway_url: str | None = None
    gateway_cafile: Path | None = None
    gateway_fingerprint: str | None = None
    advertise: str | None = None
    """URL others should dial, when the bind address is not reachable as such."""
    max_objects: int = 100_000
    """Objects one principal may hold (see ``node.server.store.Quota``)."""
    max_bytes: int = 8 * 1024**3
    """Bytes one principal may hold: stored tensors and every reservation
    (``node.server.quota``)."""
    max_connections: int = 64
    """Open connections one principal may have (``--max-connections-per-principal``)."""
    network_token: str | None = field(default=None, repr=False)
    """The network's shared secret: needed to register at the gateway and to
    be accepted by (and accept) peer nodes.  Never printed."""
    allow_anonymous: bool = False
    """Let clients in without a user token (development only)."""
    trusted_providers: frozenset[str] = frozenset()
    """Certificate fingerprints of crypto providers this node's operator trusts
    with shares of data the requesting client may not read (``--trust-crypto-provider``)."""
    torch_threads: int = 1
    """Threads torch may use for one op.  One by default: a node serves many
    small ops (training steps, share arithmetic) from several connections
    at once, and torch's intra-op threads make small ops several times slower
    when the cores are already busy (measured 5-15x on a loaded 2-core host)."""
    datasets: tuple[DatasetSource, ...] = ()
    """Datasets to load before listening, stored as private objects and announced
    (with the node's tags) to the gateway."""
