"""Status page and /nodes.json rendering: pure functions of statuses and the time."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest

from gateway.status import REFRESH_SECONDS, format_ago, nodes_json, render_status_page
from protocol.ids import NodeId
from protocol.records import DatasetSummary, NodeRecord, NodeStatus, Role

NOW = 1_700_000_000.0
FP = "sha256:" + "ab" * 32
EVIL = '<img src=x onerror="alert(1)">&'


def status(node_id: str, online: bool = True, seen: float = 3.0, **kw: object) -> NodeStatus:
    record = NodeRecord(NodeId(node_id), f"wss://{node_id}.lan:8765", FP, **kw)  # type: ignore[arg-type]
    return NodeStatus(record, NOW - seen, online)


STATUSES = (
    status(
        "alice", roles=(Role.DATA_OWNER, Role.COMPUTE), tags=("#hospital",),
        datasets=(DatasetSummary("wdbc", ("#breast_cancer",), EVIL, (569, 30), 569),),
    ),
    status("bob", online=False, seen=75.0, roles=(Role.TRAINER,)),
    status("carol", datasets=(DatasetSummary(EVIL),)),
)


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0 s ago"), (3.9, "3 s ago"), (59, "59 s ago"), (60, "1 min ago"), (7200, "2 h ago"), (-2, "0 s ago")],
)
def test_format_ago(seconds: float, text: str) -> None:
    """Last heartbeat reads like '3 s ago', in minutes past a minute and hours past an hour."""
    assert format_ago(seconds) == text


def test_page_lists_every_node_with_its_fields() -> None:
    """Each node is a row with id, URL, roles, tags, datasets with tags, '3 s ago' and state."""
    page = render_status_page(STATUSES, NOW)
    rows = re.findall(r'<tr class="(\w+)" data-node-id="(\w+)">(.*?)</tr>', page, re.S)
    assert [(state, node) for state, node, _ in rows] == [
        ("online", "alice"), ("offline", "bob"), ("online", "carol"),
    ]
    alice = rows[0][2]
    for text in ("wss://alice.lan:8765", "data_owner", "compute", "#hospital", "wdbc",
                 "#breast_cancer", "569 samples", "3 s ago", ">online<"):
        assert text in alice, text
    assert "1 min ago" in rows[1][2] and ">offline<" in rows[1][2]
    assert "3 nodes · 2 online" in page


def test_everything_from_a_record_is_escaped() -> None:
    """Markup in dataset names or descriptions comes out escaped, never as tags."""
    page = render_status_page(STATUSES, NOW)
    assert "<img" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in page


def test_page_is_self_contained_and_its_script_is_pinned_by_hash() -> None:
    """No external resources; the CSP allows exactly the inline script by its SHA-256."""
    page = render_status_page(STATUSES, NOW)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page
    assert "/nodes.json" in script and str(REFRESH_SECONDS * 1000) in script
    assert "innerHTML" not in script


def test_empty_registry_says_so() -> None:
    """With no nodes the table is empty and the 'no nodes' note is shown."""
    page = render_status_page((), NOW)
    assert '<tbody id="rows"></tbody>' in page
    assert '<p id="empty" class="">No nodes registered yet.</p>' in page


def test_nodes_json_fields() -> None:
    """nodes.json carries the record fields plus last_seen, seconds_since_seen and online."""
    document = json.loads(nodes_json(STATUSES, NOW))
    assert (document["generated_at"], document["total"], document["online"]) == (NOW, 3, 2)
    alice = document["nodes"][0]
    assert alice == {
        "node_id": "alice", "url": "wss://alice.lan:8765", "fingerprint": FP,
        "roles": ["data_owner", "compute"], "tags": ["#hospital"],
        "datasets": [{"name": "wdbc", "tags": ["#breast_cancer"], "description": EVIL,
                      "shape": [569, 30], "samples": 569}],
        "last_seen": NOW - 3.0, "seconds_since_seen": 3.0, "online": True,
    }
    assert [n["node_id"] for n in document["nodes"]] == ["alice", "bob", "carol"]
    assert document["nodes"][1]["online"] is False
