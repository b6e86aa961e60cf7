"""The rooms of the house and which way their doors open (README, "Layout").

protocol/ imports nothing of ours; peer/ imports protocol/ only; gateway/
imports protocol/ and peer/ only; the pure cores (node/mpc, node/fl) do no
I/O; the node's SPDZ and federated subrooms do not reach into each other;
and no two of our modules import each other, directly or around a loop,
even through an import inside a function.  Read from the source by
:mod:`tests.import_graph`.
"""

from __future__ import annotations

import pytest

from tests.import_graph import Edge, ImportGraph, build

GRAPH = build()

IO_MODULES = frozenset(
    {"asyncio", "websockets", "socket", "ssl", "selectors", "http", "urllib", "subprocess", "pickle", "tqdm"}
)
"""What a pure core must not import: networking, processes, unpickling, progress bars."""

HEAVY = frozenset({"torch", "numpy", "opacus", "tqdm", "safetensors"})
"""Libraries the shared peer layer and the gateway never need."""


def _in(module: str, *rooms: str) -> bool:
    return any(module == room or module.startswith(room + ".") for room in rooms)


def _violations(graph: ImportGraph, sources: tuple[str, ...], allowed: tuple[str, ...], also_forbidden: frozenset[str] = frozenset()) -> list[str]:
    """Edges from ``sources`` to a module of ours outside ``allowed``, or to a forbidden top-level name."""
    bad: set[str] = set()
    for edge in graph.edges:
        if not _in(edge.source, *sources):
            continue
        ours = edge.target in graph.modules
        if (ours and not _in(edge.target, *allowed)) or (not ours and edge.target in also_forbidden):
            bad.add(_describe(edge))
    return sorted(bad)


def _describe(edge: Edge) -> str:
    where = "in a function" if edge.lazy else "at module level"
    return f"{edge.source}:{edge.line} imports {edge.target} ({where})"


def test_the_graph_sees_every_room() -> None:
    """The scan finds modules in each room and resolves their imports (guards against a wrong root)."""
    for room in ("protocol.codec", "peer.transport.websocket", "peer.server.conversation", "node.server.session",
                 "node.server.mpc.party", "node.server.fl.owner", "node.client.pointer", "node.mpc.beaver",
                 "node.fl.aggregate", "gateway.server"):
        assert room in GRAPH.modules
    assert any(e.source == "gateway.server" and _in(e.target, "peer") for e in GRAPH.edges)


def test_protocol_imports_nothing_of_ours() -> None:
    """protocol/ is the innermost room: it imports only itself."""
    assert _violations(GRAPH, ("protocol",), ("protocol",)) == []


def test_peer_imports_protocol_only() -> None:
    """peer/ imports protocol/ and itself, and none of torch, numpy, opacus or tqdm."""
    assert _violations(GRAPH, ("peer",), ("protocol", "peer"), HEAVY) == []


def test_gateway_imports_protocol_and_peer_only() -> None:
    """gateway/ imports protocol/, peer/ and itself: never node/, never torch."""
    assert _violations(GRAPH, ("gateway",), ("protocol", "peer", "gateway"), HEAVY) == []


@pytest.mark.parametrize("core", ["node.mpc", "node.fl"])
def test_pure_cores_do_no_io(core: str) -> None:
    """The secret-sharing and federated cores import no networking, no peer layer, no node runtime or client."""
    assert _violations(GRAPH, (core,), ("protocol", "node.mpc", "node.fl", "node.errors"), IO_MODULES) == []


def test_spdz_and_federated_subrooms_stay_apart() -> None:
    """node/server/mpc and node/server/fl never import each other; they meet in the node core that wires them."""
    crossing = {
        _describe(e) for e in GRAPH.edges
        if (_in(e.source, "node.server.mpc") and _in(e.target, "node.server.fl"))
        or (_in(e.source, "node.server.fl") and _in(e.target, "node.server.mpc"))
    }
    assert sorted(crossing) == []


def test_node_server_never_imports_the_client() -> None:
    """Inside a node nothing uses the user-side API."""
    assert [_describe(e) for e in GRAPH.edges if _in(e.source, "node.server") and _in(e.target, "node.client")] == []


def test_only_the_virtual_node_brings_a_node_into_the_client() -> None:
    """The client reaches node/server only through VirtualNode, a whole node in the user's process."""
    found = {
        _describe(e) for e in GRAPH.edges
        if _in(e.source, "node.client") and _in(e.target, "node.server") and e.source != "node.client.virtual"
    }
    assert sorted(found) == []


def test_no_import_cycles() -> None:
    """No set of our modules imports itself around a loop, counting imports inside functions."""
    assert GRAPH.cycles() == []


def test_the_cycle_check_finds_a_cycle() -> None:
    """The cycle search reports a loop that is there (so its silence means something)."""
    graph = build()
    graph.edges.append(Edge("protocol.ids", "protocol.codec", 1, True))
    graph.edges.append(Edge("protocol.codec", "protocol.ids", 1, False))
    assert any({"protocol.ids", "protocol.codec"} <= set(c) for c in graph.cycles())
