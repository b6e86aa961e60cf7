"""The status page and ``/nodes.json``: pure rendering of registry statuses.

The HTML is rendered on the server, so the nodes are in the document even
without JavaScript; a small inline script then re-fetches ``/nodes.json``
every :data:`REFRESH_SECONDS` and re-renders the table with DOM methods
(``textContent``, never ``innerHTML``).  Everything that comes from a node's
record is escaped with :func:`html.escape`.  The page loads nothing
external, and its Content-Security-Policy allows only its own style, its own
script (by hash) and fetches from the same origin.

"Last heartbeat" is computed here from the gateway's clock
(``seconds_since_seen``), so a browser with a skewed clock still reads it
right.  No I/O: ``now`` is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from html import escape
from typing import Any, Iterable, Sequence

from protocol.record_fields import record_body
from protocol.records import DatasetSummary, NodeStatus

__all__ = ["REFRESH_SECONDS", "render_status_page", "nodes_json", "format_ago", "status_body"]

REFRESH_SECONDS = 2
"""How often the page re-fetches ``/nodes.json``."""

_FINGERPRINT_SHOWN = 7 + 16  # "sha256:" and 16 hex digits; the full value is in the title


def format_ago(seconds: float) -> str:
    """``3 s ago``, ``4 min ago``, ``2 h ago`` (mirrored by the page's script)."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole} s ago"
    if whole < 3600:
        return f"{whole // 60} min ago"
    return f"{whole // 3600} h ago"


def status_body(status: NodeStatus, now: float) -> dict[str, Any]:
    """One node as JSON: the record's wire fields plus ``last_seen``, ``seconds_since_seen``, ``online``."""
    body = record_body(status.record)
    body["last_seen"] = status.last_seen
    body["seconds_since_seen"] = round(max(0.0, now - status.last_seen), 3)
    body["online"] = status.online
    return body


def nodes_json(statuses: Sequence[NodeStatus], now: float) -> bytes:
    """``{"generated_at", "total", "online", "nodes": [...]}`` as UTF-8 JSON."""
    document = {
        "generated_at": now,
        "total": len(statuses),
        "online": sum(1 for s in statuses if s.online),
        "nodes": [status_body(s, now) for s in statuses],
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def _chips(items: Iterable[str], css: str) -> str:
    return "".join(f'<span class="{css}">{escape(item)}</span>' for item in items)


def _dataset_item(dataset: DatasetSummary) -> str:
    meta = []
    if dataset.samples:
        meta.append(f"{dataset.samples} samples")
    if dataset.shape:
        meta.append("\u00d7".join(str(d) for d in dataset.shape))
    return (
        f'<li title="{escape(dataset.description)}"><span class="ds">{escape(dataset.name)}</span>'
        f"{_chips(dataset.tags, 'tag')}"
        f'<span class="meta">{escape(" · ".join(meta))}</span></li>'
    )


def _row(status: NodeStatus, now: float) -> str:
    record = status.record
    state = "online" if status.online else "offline"
    datasets = "".join(_dataset_item(d) for d in record.datasets)
    short = record.fingerprint[:_FINGERPRINT_SHOWN] + "\u2026"
    return (
        f'<tr class="{state}" data-node-id="{escape(record.node_id)}">'
        f'<td><div class="id">{escape(record.node_id)}</div>'
        f'<div class="fp" title="{escape(record.fingerprint)}">{escape(short)}</div></td>'
        f'<td><code>{escape(record.url)}</code></td>'
        f"<td>{_chips((r.value for r in record.roles), 'role')}</td>"
        f"<td>{_chips(record.tags, 'tag')}</td>"
        f'<td><ul class="datasets">{datasets}</ul></td>'
        f'<td class="seen">{escape(format_ago(now - status.last_seen))}</td>'
        f'<td><span class="state {state}">{state}</span></td></tr>'
    )


def _summary(statuses: Sequence[NodeStatus], now: float) -> str:
    online = sum(1 for s in statuses if s.online)
    clock = time.strftime("%H:%M:%S", time.gmtime(now))
    return f"{len(statuses)} nodes · {online} online · as of {clock} UTC"


def render_status_page(statuses: Sequence[NodeStatus], now: float) -> str:
    """The whole HTML page, with a row per status in the order given."""
    rows = "".join(_row(s, now) for s in statuses)
    empty = "hidden-none" if statuses else ""
    return _PAGE.format(
        csp=_CSP,
        style=_STYLE,
        summary=escape(_summary(statuses, now)),
        rows=rows,
        empty_class=empty,
        refresh=REFRESH_SECONDS,
        script=_SCRIPT,
    )


_STYLE = """
:root { color-scheme: light; --ink: #1d2433; --muted: #667085; --line: #e4e7ec;
  --accent: #3b5bdb; --ok: #12805c; --bad: #b42318; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: var(--ink); background: #f6f7f9; }
header { padding: 20px 32px 12px; }
h1 { margin: 0; font-size: 22px; font-weight: 650; }
h1 span { color: var(--accent); }
#summary { margin: 4px 0 0; color: var(--muted); }
main { padding: 0 32px 24px; }
table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid var(--line);
  border-radius: 8px; overflow: hidden; }
th, td { padding: 10px 12px; text-align: left; vertical-align: top;
  border-bottom: 1px solid var(--line); }
th { background: #f9fafb; color: var(--muted); font-size: 12px; font-weight: 600;
  text-transform: uppercase; letter-spacing: .04em; white-space: nowrap; }
tr:last-child td { border-bottom: 0; }
tr.offline td { color: var(--muted); }
.id { font-weight: 650; font-size: 15px; }
.fp { font: 11px ui-monospace, monospace; color: var(--muted); }
code { font: 12px ui-monospace, monospace; }
.role, .tag { display: inline-block; margin: 0 4px 3px 0; padding: 1px 8px; border-radius: 10px;
  font-size: 12px; white-space: nowrap; }
.role { background: #eef2ff; color: #3730a3; }
.tag { background: #ecfdf3; color: #05603a; }
ul.datasets { margin: 0; padding: 0; list-style: none; }
ul.datasets li { margin-bottom: 4px; }
.ds { font-weight: 600; margin-right: 6px; }
.meta { display: block; color: var(--muted); font-size: 12px; }
.state { display: inline-block; padding: 2px 10px; border-radius: 10px; font-size: 12px;
  font-weight: 600; }
.state.online { background: #dcfae6; color: var(--ok); }
.state.offline { background: #fee4e2; color: var(--bad); }
#empty { padding: 24px; text-align: center; color: var(--muted); }
#empty.hidden-none { display: none; }
footer { padding: 0 32px 24px; color: var(--muted); font-size: 12px; }
footer a { color: var(--accent); }
.stale #summary::after { content: " · gateway unreachable, retrying"; color: var(--bad); }
"""

_SCRIPT = """
(function () {
  "use strict";
  var REFRESH_MS = %d;
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function ago(s) {
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    return Math.floor(s / 3600) + " h ago";
  }
  function chips(td, items, cls) {
    items.forEach(function (t) { td.appendChild(el("span", cls, t)); });
  }
  function dataset(d) {
    var li = el("li");
    li.title = d.description || "";
    li.appendChild(el("span", "ds", d.name));
    chips(li, d.tags, "tag");
    var meta = [];
    if (d.samples) meta.push(d.samples + " samples");
    if (d.shape.length) meta.push(d.shape.join("\\u00d7"));
    li.appendChild(el("span", "meta", meta.join(" \\u00b7 ")));
    return li;
  }
  function row(n) {
    var state = n.online ? "online" : "offline";
    var tr = el("tr", state), td = el("td");
    tr.dataset.nodeId = n.node_id;
    td.appendChild(el("div", "id", n.node_id));
    var fp = el("div", "fp", n.fingerprint.slice(0, %d) + "\\u2026");
    fp.title = n.fingerprint;
    td.appendChild(fp);
    tr.appendChild(td);
    td = el("td"); td.appendChild(el("code", "", n.url)); tr.appendChild(td);
    td = el("td"); chips(td, n.roles, "role"); tr.appendChild(td);
    td = el("td"); chips(td, n.tags, "tag"); tr.appendChild(td);
    td = el("td"); var ul = el("ul", "datasets");
    n.datasets.forEach(function (d) { ul.appendChild(dataset(d)); });
    td.appendChild(ul); tr.appendChild(td);
    tr.appendChild(el("td", "seen", ago(n.seconds_since_seen)));
    td = el("td"); td.appendChild(el("span", "state " + state, state)); tr.appendChild(td);
    return tr;
  }
  function render(data) {
    var body = document.getElementById("rows");
    body.replaceChildren.apply(body, data.nodes.map(row));
    var clock = new Date(data.generated_at * 1000).toISOString().slice(11, 19);
    document.getElementById("summary").textContent = data.total + " nodes \\u00b7 " +
      data.online + " online \\u00b7 as of " + clock + " UTC";
    document.getElementById("empty").className = data.total ? "hidden-none" : "";
  }
  function refresh() {
    fetch("/nodes.json", {cache: "no-store"})
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (data) {
        render(data);
        document.body.classList.remove("stale");
        document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes) + 1);
      })
      .catch(function () { document.body.classList.add("stale"); })
      .then(function () { setTimeout(refresh, REFRESH_MS); });
  }
  refresh();
})();
""" % (REFRESH_SECONDS * 1000, _FINGERPRINT_SHOWN)

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; connect-src 'self'; base-uri 'none'; form-action 'none'"
)
"""Only the page's own style, its own script (pinned by hash) and same-origin fetches."""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<title>Tessera gateway</title>
<style>{style}</style>
</head>
<body data-refreshes="0">
<header><h1><span>Tessera</span> gateway</h1><p id="summary">{summary}</p></header>
<main>
<table id="nodes">
<thead><tr><th>Node</th><th>URL</th><th>Roles</th><th>Tags</th><th>Datasets</th>
<th>Last heartbeat</th><th>Status</th></tr></thead>
<tbody id="rows">{rows}</tbody>
</table>
<p id="empty" class="{empty_class}">No nodes registered yet.</p>
</main>
<footer>Refreshes every {refresh} s &middot; <a href="/nodes.json">nodes.json</a></footer>
<script>{script}</script>
</body>
</html>
"""
