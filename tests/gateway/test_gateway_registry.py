"""Registry rules with a fake clock: ownership, offline, drop, limits and tag search."""

from __future__ import annotations

import pytest

from gateway.registry import MAX_NODES, Registry, RegistryPolicy
from protocol.errors import NotFound, PermissionDenied, QuotaExceeded
from protocol.ids import NodeId
from protocol.records import DatasetSummary, NodeRecord, Role

ALICE = NodeId("alice")
BOB = NodeId("bob")
FP_A = "sha256:" + "a" * 64
FP_B = "sha256:" + "b" * 64
FP_X = "sha256:" + "c" * 64
T0 = 1_700_000_000.0


def record(
    node_id: str = "alice",
    fingerprint: str = FP_A,
    url: str = "wss://127.0.0.1:8765",
    tags: tuple[str, ...] = (),
    datasets: tuple[DatasetSummary, ...] = (),
) -> NodeRecord:
    return NodeRecord(NodeId(node_id), url, fingerprint, (Role.COMPUTE,), tags, datasets)


def registered(policy: RegistryPolicy | None = None) -> Registry:
    registry = Registry(policy)
    registry.register(ALICE, FP_A, record(), T0)
    return registry


def test_defaults_match_the_issue() -> None:
    """Heartbeat every 2 s, offline after 3 missed (6 s), dropped after 120 s, 4096 nodes."""
    policy = RegistryPolicy()
    assert (policy.heartbeat_interval, policy.offline_after, policy.drop_after) == (2.0, 6.0, 120.0)
    assert policy.max_nodes == MAX_NODES == 4096


def test_register_lists_the_node_online() -> None:
    """A registered node is listed with its record, last_seen = now and online."""
    registry = registered()
    (status,) = registry.nodes(None, T0 + 1)
    assert status.record == record() and status.last_seen == T0 and status.online


def test_record_for_another_id_is_refused() -> None:
    """A caller may only register a record carrying its own node id."""
    registry = Registry()
    with pytest.raises(PermissionDenied):
        registry.register(ALICE, FP_A, record("bob"), T0)
    assert len(registry) == 0


def test_record_with_another_fingerprint_is_refused() -> None:
    """The record's fingerprint must be the certificate the caller proved."""
    registry = Registry()
    with pytest.raises(PermissionDenied):
        registry.register(ALICE, FP_A, record(fingerprint=FP_B), T0)
    assert len(registry) == 0


@pytest.mark.parametrize("offline", [False, True])
def test_duplicate_id_with_other_certificate_is_refused(offline: bool) -> None:
    """An id held by another certificate, online or offline, is refused and left untouched."""
    registry = registered()
    if offline:
        registry.disconnected(ALICE, FP_A, T0 + 1)
    before = registry.nodes(None, T0 + 2)
    with pytest.raises(PermissionDenied, match="node id 'alice' is registered with another certificate"):
        registry.register(ALICE, FP_X, record(fingerprint=FP_X, url="wss://evil:1"), T0 + 2)
    assert registry.nodes(None, T0 + 2) == before


def test_same_certificate_refreshes_the_record() -> None:
    """Re-registering with the same certificate replaces the record and revives the entry."""
    registry = registered()
    registry.disconnected(ALICE, FP_A, T0 + 1)
    registry.register(ALICE, FP_A, record(url="wss://10.0.0.5:9000"), T0 + 2)
    (status,) = registry.nodes(None, T0 + 2)
    assert status.record.url == "wss://10.0.0.5:9000" and status.online and status.last_seen == T0 + 2


def test_id_is_free_again_once_dropped() -> None:
    """After the entry is dropped, another certificate may take the id."""
    registry = registered()
    registry.disconnected(ALICE, FP_A, T0)
    registry.sweep(T0 + 120)
    registry.register(ALICE, FP_X, record(fingerprint=FP_X), T0 + 121)
    assert registry.nodes(None, T0 + 121)[0].record.fingerprint == FP_X


def test_silent_node_goes_offline_after_the_window() -> None:
    """No heartbeat for 3 intervals: sweep marks the node offline; before that it stays online."""
    registry = registered()
    assert registry.sweep(T0 + 6).went_offline == ()
    assert registry.nodes(None, T0 + 6)[0].online
    assert registry.sweep(T0 + 6.5).went_offline == (ALICE,)
    assert not registry.nodes(None, T0 + 6.5)[0].online


def test_status_is_offline_between_sweeps() -> None:
    """A node past its window is reported offline even before the next sweep runs."""
    registry = registered()
    assert not registry.nodes(None, T0 + 7)[0].online


def test_heartbeats_keep_a_node_online() -> None:
    """Each heartbeat restarts the window and updates last_seen."""
    registry = registered()
    for t in (2, 4, 6, 8, 10):
        registry.heartbeat(ALICE, FP_A, T0 + t)
    assert registry.sweep(T0 + 15).went_offline == ()
    (status,) = registry.nodes(None, T0 + 15)
    assert status.online and status.last_seen == T0 + 10


def test_offline_node_is_dropped_later() -> None:
    """An offline entry is listed for drop_after seconds, then forgotten."""
    registry = registered()
    registry.sweep(T0 + 7)  # offline since T0 + 6
    assert registry.sweep(T0 + 6 + 119).dropped == ()
    assert len(registry) == 1
    assert registry.sweep(T0 + 6 + 120).dropped == (ALICE,)
    assert registry.nodes(None, T0 + 200) == ()


def test_disconnect_marks_offline_immediately() -> None:
    """A dropped connection makes the node offline at once, without waiting for a sweep."""
    registry = registered()
    assert registry.disconnected(ALICE, FP_A, T0 + 0.1)
    assert not registry.nodes(None, T0 + 0.1)[0].online


def test_disconnect_by_other_certificate_changes_nothing() -> None:
    """disconnected() with a fingerprint that does not own the entry is ignored."""
    registry = registered()
    assert not registry.disconnected(ALICE, FP_X, T0 + 0.1)
    assert registry.nodes(None, T0 + 0.1)[0].online


def test_heartbeat_revives_an_offline_node() -> None:
    """A heartbeat from the owner brings an offline (not yet dropped) node back online."""
    registry = registered()
    registry.sweep(T0 + 10)
    registry.heartbeat(ALICE, FP_A, T0 + 11)
    assert registry.nodes(None, T0 + 11)[0].online


@pytest.mark.parametrize("node_id, fingerprint", [(BOB, FP_B), (ALICE, FP_X)])
def test_heartbeat_and_deregister_need_the_owner(node_id: NodeId, fingerprint: str) -> None:
    """Heartbeat or deregister for an unknown id, or by another certificate, is NOT_FOUND."""
    registry = registered()
    with pytest.raises(NotFound):
        registry.heartbeat(node_id, fingerprint, T0 + 1)
    with pytest.raises(NotFound):
        registry.deregister(node_id, fingerprint, T0 + 1)
    assert registry.nodes(None, T0 + 1)[0].last_seen == T0


def test_deregister_removes_the_entry() -> None:
    """Deregistering forgets the node at once and frees its id."""
    registry = registered()
    registry.deregister(ALICE, FP_A, T0 + 1)
    assert registry.nodes(None, T0 + 1) == () and ALICE not in registry


def test_registry_is_bounded() -> None:
    """Beyond max_nodes a new id is QUOTA_EXCEEDED; known ids still refresh."""
    registry = Registry(RegistryPolicy(max_nodes=2))
    registry.register(ALICE, FP_A, record(), T0)
    registry.register(BOB, FP_B, record("bob", FP_B), T0)
    with pytest.raises(QuotaExceeded):
        registry.register(NodeId("carol"), FP_X, record("carol", FP_X), T0)
    registry.register(ALICE, FP_A, record(url="wss://h:1"), T0 + 1)
    assert [s.record.node_id for s in registry.nodes(None, T0 + 1)] == ["alice", "bob"]


def test_nodes_are_sorted_and_searchable_by_node_and_dataset_tags() -> None:
    """nodes(tag) matches node tags and dataset tags; results are sorted by node id."""
    registry = Registry()
    cancer = DatasetSummary("wdbc", ("#breast_cancer",), "", (569, 30), 569)
    registry.register(NodeId("zed"), FP_X, record("zed", FP_X, tags=("#hospital",)), T0)
    registry.register(BOB, FP_B, record("bob", FP_B, datasets=(cancer,)), T0)
    registry.register(ALICE, FP_A, record(tags=("#breast_cancer", "#hospital")), T0)

    def ids(tag: str | None) -> list[str]:
        return [s.record.node_id for s in registry.nodes(tag, T0)]

    assert ids(None) == ["alice", "bob", "zed"]
    assert ids("#breast_cancer") == ["alice", "bob"]
    assert ids("#hospital") == ["alice", "zed"]
    assert ids("#nothing") == []


@pytest.mark.parametrize(
    "kwargs", [{"heartbeat_interval": 0}, {"missed_heartbeats": 0}, {"max_nodes": 0}, {"drop_after": -1}]
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    """A policy with a non-positive interval, window or size is a ValueError."""
    with pytest.raises(ValueError):
        RegistryPolicy(**kwargs)  # type: ignore[arg-type]
