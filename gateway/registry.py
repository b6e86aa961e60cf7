"""The registry of nodes: who registered, with which certificate, and whether alive.

Pure bookkeeping with no I/O and no clock of its own: every call that needs
the time takes ``now`` (Unix seconds), so tests drive it with a fake clock
and the server passes ``time.time()``.  Entries are soft: a restarted
gateway starts without them and nodes re-register by themselves.  Id
bindings are not (issue 11, item 5): the server loads them from
:class:`~gateway.bindings.BindingFile` at start and whenever the operator
edits the file, and saves the ones this registry made
(:meth:`Registry.unsaved_bindings`).

The rules (issue 3, "Bad input"; issue 11):

- A node registers only its own record: the record's id and fingerprint must
  be those the caller proved in its hello.
- The first registration of an id binds it to the caller's certificate.
  The binding outlives deregistration, drops and restarts: another
  certificate can never register, heartbeat or deregister that id
  (PERMISSION_DENIED naming the id, never the bound fingerprint), and the
  existing entry is left untouched.  Only the operator rebinds an id.
- Every entry's certificate is its id's binding: an entry whose binding the
  operator changed or removed is dropped when the new bindings are loaded.
- An entry goes offline when its connection drops or after
  :attr:`RegistryPolicy.offline_after` seconds without a heartbeat, and is
  dropped after :attr:`RegistryPolicy.drop_after` seconds offline.

Must not import asyncio, websockets or anything that does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from protocol.errors import NotFound, PermissionDenied, QuotaExceeded
from protocol.ids import NodeId
from protocol.records import NodeRecord, NodeStatus

from .bindings import MAX_BINDINGS, Binding, Bindings

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_MISSED_HEARTBEATS",
    "DEFAULT_DROP_AFTER",
    "MAX_NODES",
    "RegistryPolicy",
    "SweepResult",
    "Registry",
]

DEFAULT_HEARTBEAT_INTERVAL = 2.0
"""Seconds between a node's heartbeats, told to it in the register reply."""

DEFAULT_MISSED_HEARTBEATS = 3
"""Heartbeat intervals without news after which a node is marked offline."""

DEFAULT_DROP_AFTER = 120.0
"""Seconds an entry stays listed (offline) before it is forgotten."""

MAX_NODES = 4096
"""Most entries, online or offline, the registry holds."""


@dataclass(frozen=True, slots=True)
class RegistryPolicy:
    """Timing and size limits of a :class:`Registry`."""

    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    missed_heartbeats: int = DEFAULT_MISSED_HEARTBEATS
    drop_after: float = DEFAULT_DROP_AFTER
    max_nodes: int = MAX_NODES
    max_bindings: int = MAX_BINDINGS

    def __post_init__(self) -> None:
        if not self.heartbeat_interval > 0:
            raise ValueError(f"heartbeat interval must be positive, got {self.heartbeat_interval}")
        if self.missed_heartbeats < 1:
            raise ValueError(f"missed heartbeats must be at least 1, got {self.missed_heartbeats}")
        if self.drop_after < 0 or self.max_nodes < 1 or self.max_bindings < 1:
            raise ValueError("drop_after must be >= 0, max_nodes and max_bindings >= 1")

    @property
    def offline_after(self) -> float:
        """Seconds without a heartbeat after which an online entry goes offline."""
        return self.heartbeat_interval * self.missed_heartbeats


@dataclass(slots=True)
class _Entry:
    record: NodeRecord
    fingerprint: str
    last_seen: float
    online: bool
    offline_since: float | None = None

    def go_offline(self, now: float) -> None:
        if self.online:
            self.online = False
            self.offline_since = now


@dataclass(frozen=True, slots=True)
class SweepResult:
    """Node ids a :meth:`Registry.sweep` marked offline and dropped."""

    went_offline: tuple[NodeId, ...] = ()
    dropped: tuple[NodeId, ...] = ()


class Registry:
    """Entries keyed by node id; see the module docstring for the rules."""

    def __init__(self, policy: RegistryPolicy | None = None) -> None:
        self.policy = policy or RegistryPolicy()
        self._entries: dict[NodeId, _Entry] = {}
        self._bindings: Bindings = {}
        self._unsaved: Bindings = {}
        self.bindings_made = 0
        """New bindings so far (the server saves them before the reply that made one)."""
        self.binding_refusals = 0
        """Requests refused because the id is bound to another certificate (the
        server re-reads the bindings file when this grows: the operator may just
        have rebound the id)."""

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._entries

    def register(
        self, caller_node_id: NodeId, caller_fingerprint: str, record: NodeRecord, now: float
    ) -> None:
        """Add or refresh the caller's own record; raises PermissionDenied or QuotaExceeded."""
        if record.node_id != caller_node_id:
            raise PermissionDenied(
                f"node {caller_node_id!r} may not register a record for {record.node_id!r}",
                {"node_id": record.node_id, "caller": caller_node_id},
            )
        if record.fingerprint != caller_fingerprint:
            raise PermissionDenied(
                "the record's fingerprint is not that of the certificate the caller proved",
                {"node_id": record.node_id},
            )
        node_id = record.node_id
        bound = self._check_binding(node_id, caller_fingerprint)
        if node_id not in self._entries and len(self._entries) >= self.policy.max_nodes:
            raise QuotaExceeded(
                f"the gateway already holds {self.policy.max_nodes} nodes",
                {"limit": self.policy.max_nodes},
            )
        if bound is None:
            if len(self._bindings) >= self.policy.max_bindings:
                raise QuotaExceeded(
                    f"the gateway already binds {self.policy.max_bindings} node ids; its "
                    "operator can remove stale ones (python -m gateway bindings remove)",
                    {"limit": self.policy.max_bindings},
                )
            binding = Binding(caller_fingerprint, now)
            self._bindings[node_id] = self._unsaved[node_id] = binding
            self.bindings_made += 1
        self._entries[node_id] = _Entry(record, caller_fingerprint, now, True)

    def heartbeat(self, node_id: NodeId, fingerprint: str, now: float) -> None:
        """The node is alive: refresh ``last_seen`` and mark it online.

        PermissionDenied if the id is bound to another certificate, NotFound
        if the caller holds no entry.
        """
        entry = self._owned(node_id, fingerprint)
        entry.last_seen = now
        entry.online = True
        entry.offline_since = None

    def deregister(self, node_id: NodeId, fingerprint: str, now: float) -> None:
        """Forget the node's entry at once (clean shutdown); its binding stays.

        Errors as for :meth:`heartbeat`.
        """
        self._owned(node_id, fingerprint)
        del self._entries[node_id]

    def disconnected(self, node_id: NodeId, fingerprint: str, now: float) -> bool:
        """The node's connection dropped: mark it offline now.  False if not ours."""
        entry = self._entries.get(node_id)
        if entry is None or entry.fingerprint != fingerprint:
            return False
        entry.go_offline(now)
        return True

    def sweep(self, now: float) -> SweepResult:
        """Mark silent entries offline, drop those offline for ``drop_after`` seconds."""
        went_offline: list[NodeId] = []
        dropped: list[NodeId] = []
        for node_id, entry in list(self._entries.items()):
            if entry.online and now - entry.last_seen > self.policy.offline_after:
                # Offline since the moment the heartbeat window closed, not since this sweep.
                entry.go_offline(entry.last_seen + self.policy.offline_after)
                went_offline.append(node_id)
            if entry.offline_since is not None and now - entry.offline_since >= self.policy.drop_after:
                del self._entries[node_id]
                dropped.append(node_id)
        return SweepResult(tuple(went_offline), tuple(dropped))

    def get(self, node_id: NodeId, now: float) -> NodeStatus | None:
        """The node's status now, or None if unknown."""
        entry = self._entries.get(node_id)
        return self._status(entry, now) if entry is not None else None

    def nodes(self, tag: str | None, now: float) -> tuple[NodeStatus, ...]:
        """Every entry, or those whose node or datasets carry ``tag``, sorted by node id."""
        return tuple(
            self._status(self._entries[node_id], now)
            for node_id in sorted(self._entries)
            if tag is None or self._entries[node_id].record.matches(tag)
        )

    def _status(self, entry: _Entry, now: float) -> NodeStatus:
        # Between sweeps, a silent node already counts as offline.
        fresh = now - entry.last_seen <= self.policy.offline_after
        return NodeStatus(entry.record, entry.last_seen, entry.online and fresh)

    def _owned(self, node_id: NodeId, fingerprint: str) -> _Entry:
        self._check_binding(node_id, fingerprint)
        entry = self._entries.get(node_id)
        if entry is None or entry.fingerprint != fingerprint:
            raise NotFound(
                f"node {node_id!r} is not registered here; register first",
                {"node_id": node_id},
            )
        return entry

    def _check_binding(self, node_id: NodeId, fingerprint: str) -> Binding | None:
        """The id's binding if it is the caller's, None if unbound; else PermissionDenied.

        The message names the id and the way out, never the bound
        fingerprint: an offline or deregistered node's certificate is not
        for whoever asks in its name.
        """
        bound = self._bindings.get(node_id)
        if bound is not None and bound.fingerprint != fingerprint:
            self.binding_refusals += 1
            raise PermissionDenied(
                f"node id {node_id!r} is bound to another certificate at this gateway; "
                "if the node's key changed, the gateway's operator can rebind the id "
                "(python -m gateway bindings rebind|remove)",
                {"node_id": node_id},
            )
        return bound

    def _is_bound_to(self, node_id: NodeId, fingerprint: str) -> bool:
        bound = self._bindings.get(node_id)
        return bound is not None and bound.fingerprint == fingerprint

    # -- bindings: loaded from and saved to the bindings file by the server ---

    def binding(self, node_id: NodeId) -> Binding | None:
        """The certificate ``node_id`` is bound to, if any."""
        return self._bindings.get(node_id)

    def unsaved_bindings(self) -> Bindings:
        """Bindings made here since the last :meth:`load_bindings` that included them."""
        return dict(self._unsaved)

    def load_bindings(self, table: Mapping[NodeId, Binding]) -> tuple[NodeId, ...]:
        """Adopt the bindings file's ``table``; the ids whose entries it dropped.

        Unsaved bindings the table lacks are kept (they are being written);
        where the table binds the same id, the table wins.  Entries whose id
        is now bound to another certificate, or unbound, are dropped, so
        every listed record is the one its binding stands for.
        """
        self._unsaved = {i: b for i, b in self._unsaved.items() if i not in table}
        self._bindings = {**table, **self._unsaved}
        dropped = tuple(
            node_id
            for node_id, entry in self._entries.items()
            if not self._is_bound_to(node_id, entry.fingerprint)
        )
        for node_id in dropped:
            del self._entries[node_id]
        return dropped
