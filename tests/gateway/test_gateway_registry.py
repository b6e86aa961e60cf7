"""Registry rules with a fake clock: ownership, id bindings, offline, drop, limits and tag search."""

from __future__ import annotations

import pytest

from gateway.bindings import MAX_BINDINGS, Binding
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
    """Heartbeat every 2 s, offline after 3 missed (6 s), dropped after 120 s, 4096 nodes, 16384 ids bound."""
    policy = RegistryPolicy()
    assert (policy.heartbeat_interval, policy.offline_after, policy.drop_after) == (2.0, 6.0, 120.0)
    assert policy.max_nodes == MAX_NODES == 4096
    assert policy.max_bindings == MAX_BINDINGS == 16_384


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
    with pytest.raises(PermissionDenied, match="node id 'alice' is bound to another certificate") as denied:
        registry.register(ALICE, FP_X, record(fingerprint=FP_X, url="wss://evil:1"), T0 + 2)
    assert "operator can rebind" in str(denied.value) and FP_A[7:15] not in str(denied.value)
    assert denied.value.details == {"node_id": "alice"}
    assert registry.nodes(None, T0 + 2) == before and registry.binding_refusals == 1


def test_same_certificate_refreshes_the_record() -> None:
    """Re-registering with the same certificate replaces the record and revives the entry."""
    registry = registered()
    registry.disconnected(ALICE, FP_A, T0 + 1)
    registry.register(ALICE, FP_A, record(url="wss://10.0.0.5:9000"), T0 + 2)
    (status,) = registry.nodes(None, T0 + 2)
    assert status.record.url == "wss://10.0.0.5:9000" and status.online and status.last_seen == T0 + 2


def _gone(how: str) -> Registry:
    """alice registered, then gone: deregistered, or dropped for missed heartbeats."""
    registry = registered()
    if how == "deregistered":
        registry.deregister(ALICE, FP_A, T0 + 1)
    else:
        assert registry.sweep(T0 + 6 + 121).dropped == (ALICE,)
    assert ALICE not in registry
    return registry


@pytest.mark.parametrize("how", ["deregistered", "dropped"])
def test_binding_outlives_the_entry(how: str) -> None:
    """Once alice's entry is gone, another certificate still cannot register, heartbeat or deregister 'alice'."""
    registry = _gone(how)
    with pytest.raises(PermissionDenied, match="'alice' is bound to another certificate"):
        registry.register(ALICE, FP_X, record(fingerprint=FP_X), T0 + 200)
    for call in (registry.heartbeat, registry.deregister):
        with pytest.raises(PermissionDenied, match="'alice' is bound to another certificate"):
            call(ALICE, FP_X, T0 + 200)
    assert ALICE not in registry and registry.binding(ALICE) == Binding(FP_A, T0)


@pytest.mark.parametrize("how", ["deregistered", "dropped"])
def test_owner_takes_its_id_back(how: str) -> None:
    """The certificate the id is bound to registers again; the binding keeps its first date."""
    registry = _gone(how)
    registry.register(ALICE, FP_A, record(url="wss://10.0.0.5:9000"), T0 + 200)
    (status,) = registry.nodes(None, T0 + 200)
    assert status.online and status.record.url == "wss://10.0.0.5:9000"
    assert registry.binding(ALICE) == Binding(FP_A, T0)


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


@pytest.mark.parametrize(
    "node_id, fingerprint, error", [(BOB, FP_B, NotFound), (ALICE, FP_X, PermissionDenied)]
)
def test_heartbeat_and_deregister_need_the_owner(
    node_id: NodeId, fingerprint: str, error: type[Exception]
) -> None:
    """Heartbeat or deregister of an unknown id is NOT_FOUND; by another certificate, PERMISSION_DENIED."""
    registry = registered()
    with pytest.raises(error):
        registry.heartbeat(node_id, fingerprint, T0 + 1)
    with pytest.raises(error):
        registry.deregister(node_id, fingerprint, T0 + 1)
    assert registry.nodes(None, T0 + 1)[0].last_seen == T0


def test_deregister_removes_the_entry() -> None:
    """Deregistering forgets the node's entry at once; its id stays bound."""
    registry = registered()
    registry.deregister(ALICE, FP_A, T0 + 1)
    assert registry.nodes(None, T0 + 1) == () and ALICE not in registry
    assert registry.binding(ALICE) == Binding(FP_A, T0)


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
    "kwargs",
    [
        {"heartbeat_interval": 0}, {"missed_heartbeats": 0}, {"max_nodes": 0}, {"drop_after": -1},
        {"max_bindings": 0},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    """A policy with a non-positive interval, window or size is a ValueError."""
    with pytest.raises(ValueError):
        RegistryPolicy(**kwargs)  # type: ignore[arg-type]


def test_first_registration_binds_and_is_unsaved_until_loaded() -> None:
    """A new id is bound to the caller's certificate and reported unsaved until a table holding it is loaded."""
    registry = registered()
    registry.register(BOB, FP_B, record("bob", FP_B), T0 + 1)
    assert registry.unsaved_bindings() == {ALICE: Binding(FP_A, T0), BOB: Binding(FP_B, T0 + 1)}
    registry.register(ALICE, FP_A, record(), T0 + 2)  # a refresh binds nothing new
    assert registry.bindings_made == 2
    assert registry.load_bindings({ALICE: Binding(FP_A, T0)}) == ()
    assert registry.unsaved_bindings() == {BOB: Binding(FP_B, T0 + 1)}  # still being written
    assert registry.binding(BOB) == Binding(FP_B, T0 + 1)


def test_loaded_bindings_bind_ids_nobody_registered_yet() -> None:
    """Bindings loaded at start (or set by the operator) hold before the node's first registration."""
    registry = Registry()
    registry.load_bindings({ALICE: Binding(FP_A, T0)})
    with pytest.raises(PermissionDenied):
        registry.register(ALICE, FP_X, record(fingerprint=FP_X), T0 + 1)
    registry.register(ALICE, FP_A, record(), T0 + 1)
    assert registry.unsaved_bindings() == {} and registry.binding(ALICE) == Binding(FP_A, T0)


@pytest.mark.parametrize("table", [{}, {ALICE: Binding(FP_X, T0 + 5)}])
def test_operator_change_drops_the_entry_and_rebinds(table: dict[NodeId, Binding]) -> None:
    """Loading a table that unbinds or rebinds alice drops her entry; the new key (or, unbound, anyone) may register."""
    registry = registered()
    registry.load_bindings({ALICE: Binding(FP_A, T0)})
    registry.register(BOB, FP_B, record("bob", FP_B), T0 + 1)
    assert registry.load_bindings(table) == (ALICE,)
    assert [s.record.node_id for s in registry.nodes(None, T0 + 6)] == ["bob"]  # unsaved bob kept
    with pytest.raises(PermissionDenied if table else NotFound):
        registry.heartbeat(ALICE, FP_A, T0 + 6)
    registry.register(ALICE, FP_X, record(fingerprint=FP_X), T0 + 6)
    with pytest.raises(PermissionDenied):
        registry.register(ALICE, FP_A, record(), T0 + 7)


def test_table_wins_over_an_unsaved_binding() -> None:
    """If the file binds an id this registry bound but has not saved, the file's binding holds."""
    registry = registered()
    assert registry.load_bindings({ALICE: Binding(FP_X, T0 + 1)}) == (ALICE,)
    assert registry.unsaved_bindings() == {} and registry.binding(ALICE) == Binding(FP_X, T0 + 1)


def test_bindings_are_bounded() -> None:
    """Beyond max_bindings a new id is QUOTA_EXCEEDED even once old entries are gone; bound ids still register."""
    registry = Registry(RegistryPolicy(max_bindings=2))
    registry.register(ALICE, FP_A, record(), T0)
    registry.register(BOB, FP_B, record("bob", FP_B), T0)
    registry.deregister(BOB, FP_B, T0)
    with pytest.raises(QuotaExceeded, match="operator can remove stale ones"):
        registry.register(NodeId("carol"), FP_X, record("carol", FP_X), T0)
    registry.register(BOB, FP_B, record("bob", FP_B), T0 + 1)
    assert len(registry) == 2 and registry.binding(NodeId("carol")) is None
