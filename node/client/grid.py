"""``node.Gateway``: discover nodes through the gateway and connect to them.

``grid.connect("bob")`` dials the URL bob registered and pins the
certificate fingerprint bob proved at registration, so a client needs to
trust only the gateway (by CA file or fingerprint) to reach every node
securely.  ``grid.search("#tag")`` finds nodes and datasets by tag, and
``grid.datasets("#tag")`` the datasets as pointers ``node.fl.FedAvg`` trains on.
Reading the directory is open to anyone who can reach the gateway; nodes
themselves want a user token (``token=`` here is passed to every
``connect``, or give one per node to ``connect``).
"""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.limits import DEFAULT_MAX_MESSAGE_BYTES
from protocol.messages import NodesReply, NodesRequest
from protocol.records import DatasetSummary, NodeStatus, normalize_tag

from peer.client.endpoint import Endpoint, fixed_credentials
from peer.client.sync_channel import SyncChannel
from peer.security.trust import TrustPolicy
from peer.server.auth import ANONYMOUS_SCHEME

from ..errors import NodeUnavailable
from .fl.jobs import DatasetPointer
from .remote import RemoteNode, connect

__all__ = ["Gateway", "GridNode", "GridMatch"]


@dataclass(frozen=True)
class GridNode:
    """A node as the gateway knows it."""

    id: str
    url: str
    fingerprint: str
    roles: tuple[str, ...]
    tags: tuple[str, ...]
    datasets: tuple[DatasetSummary, ...]
    last_seen: datetime.datetime
    online: bool

    @classmethod
    def from_status(cls, status: NodeStatus) -> GridNode:
        record = status.record
        return cls(
            record.node_id,
            record.url,
            record.fingerprint,
            tuple(role.value for role in record.roles),
            record.tags,
            record.datasets,
            datetime.datetime.fromtimestamp(status.last_seen, datetime.timezone.utc),
            status.online,
        )


@dataclass(frozen=True)
class GridMatch:
    r"""A node carrying a tag, with those of its datasets that carry it.

    ``dataset_pointers``: the same datasets as :class:`DatasetPointer`\ s, which
    ``node.fl.FedAvg`` trains on (a list of matches works as well).
    """

    node: GridNode
    datasets: tuple[DatasetSummary, ...]
    dataset_pointers: tuple[DatasetPointer, ...] = ()


class Gateway:
    """A connection to a gateway (synchronous, like :func:`node.connect`)."""

    def __init__(
        self,
        url: str,
        *,
        cafile: str | Path | None = None,
        fingerprint: str | None = None,
        known_nodes: str | Path | None = None,
        client_name: str = "client",
        timeout: float = 10.0,
        token: str | None = None,
    ) -> None:
        """``token``: the user token :meth:`connect` uses by default (else ``$TESSERA_TOKEN``)."""
        if not url.startswith(("wss://", "ws://")):
            raise ValueError(f"gateway URL must start with wss:// (or ws://): {url!r}")
        trust = TrustPolicy(
            cafile=Path(cafile).expanduser() if cafile is not None else None,
            fingerprint=fingerprint,
            known_nodes=Path(known_nodes) if known_nodes is not None else None,
        )
        credentials = fixed_credentials(
            {"scheme": ANONYMOUS_SCHEME, "secret": secrets.token_bytes(32)}
        )
        self.url = url
        self._token = token
        self._channel = SyncChannel(
            Endpoint(url, trust, client_name, credentials, DEFAULT_MAX_MESSAGE_BYTES, timeout)
        )

    def _statuses(self, tag: str | None) -> tuple[NodeStatus, ...]:
        reply = self._channel.call(lambda rid: NodesRequest(rid, tag))
        return self._channel.settle(reply, NodesReply, NodesRequest.KIND.value).nodes

    def nodes(self) -> list[GridNode]:
        """Every node the gateway knows: id, URL, roles, datasets, last seen, online."""
        return [GridNode.from_status(status) for status in self._statuses(None)]

    def search(self, tag: str) -> list[GridMatch]:
        """Nodes carrying ``tag`` themselves or on one of their datasets."""
        wanted = normalize_tag(tag)
        matches = []
        for status in self._statuses(wanted):
            datasets = tuple(d for d in status.record.datasets if wanted in d.tags)
            entry = GridNode.from_status(status)
            pointers = tuple(self._pointer(entry, d) for d in datasets)
            matches.append(GridMatch(entry, datasets, pointers))
        return matches

    def datasets(self, tag: str) -> list[DatasetPointer]:
        """Datasets carrying ``tag`` on online nodes, one pointer each (what FedAvg trains on)."""
        return [p for match in self.search(tag) if match.node.online for p in match.dataset_pointers]

    def _pointer(self, entry: GridNode, summary: DatasetSummary) -> DatasetPointer:
        options: dict[str, Any] = {}
        if entry.url.startswith("wss://"):
            options["fingerprint"] = entry.fingerprint
        if self._token is not None:
            options["token"] = self._token
        return DatasetPointer(
            entry.id, entry.url, entry.fingerprint, summary, lambda: connect(entry.url, **options)
        )

    def node(self, node_id: str) -> GridNode:
        """One node's entry; NodeUnavailable if the gateway does not know it."""
        for node in self.nodes():
            if node.id == node_id:
                return node
        raise NodeUnavailable(f"no node {node_id!r} is registered at {self.url}", {"node": node_id})

    def connect(self, node_id: str, **options: Any) -> RemoteNode:
        """Connect to a registered node, pinning the fingerprint it registered with."""
        entry = self.node(node_id)
        if not entry.online:
            raise NodeUnavailable(
                f"node {node_id!r} is offline (last seen {entry.last_seen:%Y-%m-%d %H:%M:%S} UTC)",
                {"node": node_id},
            )
        if entry.url.startswith("wss://"):
            options.setdefault("fingerprint", entry.fingerprint)
        if self._token is not None:
            options.setdefault("token", self._token)
        return connect(entry.url, **options)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Gateway {self.url}>"
