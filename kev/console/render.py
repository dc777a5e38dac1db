"""The console's HTML: the page, the topology as inline SVG, the resources with their conditions, the
dead-letter sinks' recent events. Pure functions of their inputs; everything shown is escaped."""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kev.console.topology import Edge, Node, Topology
from kev.tail import TailedEvent
from keventing.resources import Resource

COLUMN_TITLES = ("Sources", "Brokers & channels", "Triggers & subscriptions", "Subscribers")
NODE_W, NODE_H, COL_GAP, ROW_GAP, TOP, LEFT = 210, 50, 70, 22, 34, 10


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Placed:
    node: Node
    x: int
    y: int


def layout(topology: Topology) -> tuple[dict[str, Placed], int, int]:
    """Each node's top-left corner (one column per stage, nodes in id order), and the picture's size."""
    placed: dict[str, Placed] = {}
    rows = 1
    for column in range(len(COLUMN_TITLES)):
        nodes = topology.column(column)
        rows = max(rows, len(nodes))
        for row, node in enumerate(nodes):
            x = LEFT + column * (NODE_W + COL_GAP)
            placed[node.id] = Placed(node, x, TOP + row * (NODE_H + ROW_GAP))
    width = LEFT * 2 + len(COLUMN_TITLES) * NODE_W + (len(COLUMN_TITLES) - 1) * COL_GAP
    return placed, width, TOP + rows * (NODE_H + ROW_GAP) + 10


def _node_svg(p: Placed) -> str:
    n = p.node
    state = {"True": "Ready", "False": "Not ready", "Unknown": "Unknown"}[n.ready]
    if not n.resource and n.ready == "Unknown":
        state = "referenced" if n.kind != "URI" else "URI"
    detail = state if n.ready == "True" or not n.reason else f"{state}: {n.reason}"
    if n.rate is not None:
        detail = f"{detail} · in {n.rate:.1f}/s"
    title = f"{n.kind} {n.namespace + '/' if n.namespace else ''}{n.name}\n{detail}"
    classes = f"node ready-{n.ready}{'' if n.resource else ' external'}"
    return (
        f'<g class="{classes}" data-id="{esc(n.id)}" data-ready="{esc(n.ready)}" data-kind="{esc(n.kind)}">'
        f"<title>{esc(title)}</title>"
        f'<rect x="{p.x}" y="{p.y}" width="{NODE_W}" height="{NODE_H}" rx="8"/>'
        f'<text x="{p.x + 10}" y="{p.y + 15}" class="kind">{esc(n.kind)}</text>'
        f'<text x="{p.x + 10}" y="{p.y + 31}" class="name">{esc(_clip(n.name, 26))}</text>'
        f'<text x="{p.x + 10}" y="{p.y + 44}" class="state">{esc(_clip(detail, 33))}</text>'
        "</g>"
    )


def _edge_svg(edge: Edge, placed: dict[str, Placed]) -> str:
    a, b = placed.get(edge.source), placed.get(edge.target)
    if a is None or b is None:
        return ""
    x1, y1 = a.x + NODE_W, a.y + NODE_H // 2
    if b.x > a.x:
        x2, y2 = b.x, b.y + NODE_H // 2
        bend = (x2 - x1) // 2
        d = f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
    else:
        # Back to an earlier column (a reply to a Broker, a Trigger whose subscriber is a Broker): loop round.
        x2, y2 = b.x + NODE_W, b.y + NODE_H // 2
        d = f"M{x1},{y1} C{x1 + 60},{y1} {x2 + 60},{y2} {x2},{y2}"
    mx, my = (x1 + x2) // 2, (y1 + y2) // 2
    label = (
        f'<text x="{mx}" y="{my - 4}" class="edge-label" text-anchor="middle">{esc(edge.label)}</text>'
        if edge.label
        else ""
    )
    return (
        f'<g class="edge role-{edge.role}" data-source="{esc(edge.source)}" data-target="{esc(edge.target)}">'
        f'<path d="{d}" marker-end="url(#arrow)"/>{label}</g>'
    )


def render_svg(topology: Topology) -> str:
    """The graph as an inline SVG element: columns left to right, a node per resource coloured by its Ready
    condition, an arrow per edge labelled with its rate and lag."""
    placed, width, height = layout(topology)
    titles = "".join(
        f'<text x="{LEFT + i * (NODE_W + COL_GAP)}" y="18" class="column">{esc(t)}</text>'
        for i, t in enumerate(COLUMN_TITLES)
    )
    edges = "".join(_edge_svg(e, placed) for e in topology.edges)
    nodes = "".join(_node_svg(p) for p in placed.values())
    empty = (
        f'<text x="{LEFT}" y="{TOP + 20}" class="state">No resources yet: kev apply -f …</text>'
        if not topology.nodes
        else ""
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" id="topology" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="topology">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>'
        f"{titles}{edges}{nodes}{empty}</svg>"
    )


def _when(timestamp: str | None) -> str:
    return esc(timestamp or "")


def render_resources(resources: Iterable[Resource]) -> str:
    """A table of every resource: its Ready condition, and (unfolded on a click) all its conditions."""
    rows = []
    for r in sorted(resources, key=lambda r: (r.KIND, r.namespace, r.name)):
        ready = r.status.condition("Ready")
        status = ready.status if ready else "Unknown"
        reason = "" if ready is None else (ready.reason or "")
        message = "not reconciled yet" if ready is None else (ready.message or "")
        conditions = "".join(
            f"<tr><td>{esc(c.type)}</td><td class='ready-{esc(c.status)}'>{esc(c.status)}</td>"
            f"<td>{esc(c.reason or '')}</td><td>{esc(c.message or '')}</td>"
            f"<td>{_when(c.lastTransitionTime)}</td></tr>"
            for c in r.status.conditions
        )
        details = (
            "<details><summary>conditions</summary><table class='conditions'><tr><th>TYPE</th><th>STATUS</th>"
            f"<th>REASON</th><th>MESSAGE</th><th>SINCE</th></tr>{conditions}</table></details>"
            if conditions
            else ""
        )
        rows.append(
            f'<tr class="resource" data-id="{esc(r.key)}" data-ready="{esc(status)}">'
            f"<td>{esc(r.KIND)}</td><td>{esc(r.namespace)}</td><td>{esc(r.name)}</td>"
            f'<td class="ready-{esc(status)}">{esc(status)}</td><td>{esc(reason)}</td>'
            f"<td>{esc(message)}{details}</td></tr>"
        )
    if not rows:
        return "<p>No resources.</p>"
    return (
        '<table id="resource-table"><tr><th>KIND</th><th>NAMESPACE</th><th>NAME</th><th>READY</th>'
        f"<th>REASON</th><th>MESSAGE</th></tr>{''.join(rows)}</table>"
    )


@dataclass
class DeadLetters:
    """One Trigger's or Subscription's dead-letter sink, and its recent events where they are on Kafka."""

    egress: str
    namespace: str
    url: str
    topic: str | None
    events: list[TailedEvent] = field(default_factory=list)
    error: str | None = None


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]


def render_dead_letters(sinks: Iterable[DeadLetters]) -> str:
    blocks = []
    for sink in sinks:
        if sink.topic is None:
            where = "not one of keventing's addressables: its events are not on Kafka to show"
        else:
            where = f"topic {esc(sink.topic)}"
        body = ""
        if sink.error:
            body = f"<p class='error'>{esc(sink.error)}</p>"
        elif sink.topic is not None and not sink.events:
            body = "<p>No events.</p>"
        elif sink.events:
            rows = "".join(
                f"<tr><td>{_time(e.timestamp_ms)}</td><td>{e.partition}/{e.offset}</td><td>{esc(e.id)}</td>"
                f"<td>{esc(e.attributes.get('type', ''))}</td>"
                f"<td>{esc(e.attributes.get('knativeerrorcode', ''))}</td>"
                f"<td>{esc(e.attributes.get('knativeerrordest', ''))}</td></tr>"
                for e in reversed(sink.events)
            )
            body = (
                "<table><tr><th>TIME</th><th>PARTITION/OFFSET</th><th>ID</th><th>TYPE</th><th>ERROR CODE</th>"
                f"<th>FAILED AT</th></tr>{rows}</table>"
            )
        blocks.append(
            f'<div class="dls" data-egress="{esc(sink.egress)}"><h3>{esc(sink.egress)} → '
            f"{esc(sink.url)}</h3><p class='where'>{where}</p>{body}</div>"
        )
    if not blocks:
        return "<p>No Trigger or Subscription has a dead-letter sink.</p>"
    return "".join(blocks)


@dataclass(frozen=True)
class PageContext:
    mode: str
    instance: str
    # (ingress id, label) of every Broker and channel whose topic the live tail can read.
    tail_targets: list[tuple[str, str]]
    refresh_ms: int = 2000
    namespace: str | None = None


def render_page(ctx: PageContext, topology: Topology, resources: list[Resource], dead_letters: str) -> str:
    options = "".join(f'<option value="{esc(i)}">{esc(label)}</option>' for i, label in ctx.tail_targets)
    return (
        PAGE.replace("{{mode}}", esc(ctx.mode))
        .replace("{{instance}}", esc(ctx.instance))
        .replace("{{scope}}", esc(f"namespace {ctx.namespace}" if ctx.namespace else "all namespaces"))
        .replace("{{refresh}}", str(int(ctx.refresh_ms)))
        .replace("{{graph}}", render_svg(topology))
        .replace("{{options}}", options)
        .replace("{{resources}}", render_resources(resources))
        .replace("{{deadletters}}", dead_letters)
    )


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>keventing console</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:10px 18px;display:flex;gap:18px;align-items:baseline}
header h1{font-size:18px;margin:0}header .meta{opacity:.75}
main{padding:8px 18px}section{background:#fff;border:1px solid #dde1e7;border-radius:8px;margin:10px 0;
padding:10px 14px;overflow-x:auto}h2{font-size:15px;margin:2px 0 8px}h3{font-size:13px;margin:8px 0 2px}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid #eceff3;
text-align:left;vertical-align:top}th{font-weight:600;color:#555}
.ready-True{color:#1b7f3b;font-weight:600}.ready-False{color:#c62828;font-weight:600}.ready-Unknown{color:#777}
#topology .node rect{fill:#f3f4f6;stroke:#8a94a6;stroke-width:1.5}
#topology .node.ready-True rect{fill:#e7f6ec;stroke:#1b7f3b}
#topology .node.ready-False rect{fill:#fdecec;stroke:#c62828;stroke-width:2.5}
#topology .node.external rect{stroke-dasharray:4 3}
#topology text{font:12px system-ui,sans-serif}#topology .kind{fill:#667;font-size:10px;text-transform:uppercase}
#topology .name{font-weight:600}#topology .state{fill:#444;font-size:11px}
#topology .column{fill:#667;font-weight:600}
#topology .edge path{fill:none;stroke:#5b6b88;stroke-width:1.6}
#topology .edge.role-dead-letter path{stroke:#c62828;stroke-dasharray:5 4}
#topology .edge.role-reply path{stroke-dasharray:2 3}
#topology .edge-label{fill:#234;font-size:11px;paint-order:stroke;stroke:#fff;stroke-width:3px}
#topology marker path{fill:#5b6b88}
.controls{display:flex;gap:8px;align-items:center;margin-bottom:6px}
input[type=text]{width:420px;padding:4px 6px;font:13px ui-monospace,monospace}
#tail-status{color:#555}#tail-status.error,.error{color:#c62828}
#tail td.data{font:12px ui-monospace,monospace;max-width:380px;overflow:hidden;text-overflow:ellipsis;
white-space:nowrap}.badge{background:#e4e8f7;color:#1d2330;border-radius:4px;padding:1px 6px;font-size:12px}
</style></head>
<body>
<header><h1>keventing console</h1><span class="meta">{{mode}} · instance {{instance}} · {{scope}}</span>
<span class="badge" title="the console changes nothing">read-only</span></header>
<main>
<section><h2>Topology</h2><div id="graph">{{graph}}</div></section>
<section><h2>Live tail</h2>
<div class="controls"><label>at <select id="tail-target">{{options}}</select></label>
<input type="text" id="tail-filter" placeholder="CESQL filter, e.g. type LIKE 'com.example.%'">
<button id="tail-start">Tail</button><button id="tail-stop" disabled>Stop</button>
<span id="tail-status">stopped</span></div>
<table id="tail"><thead><tr><th>TIME</th><th>PARTITION/OFFSET</th><th>ID</th><th>TYPE</th><th>SOURCE</th>
<th>DATA</th></tr></thead><tbody></tbody></table></section>
<section><h2>Resources</h2><div id="resources">{{resources}}</div></section>
<section><h2>Dead-letter sinks</h2><div id="deadletters">{{deadletters}}</div></section>
</main>
<script>
"use strict";
const refresh = {{refresh}};
async function swap(id, url) {
  try {
    const r = await fetch(url, {cache: "no-store"});
    if (!r.ok) return;
    const text = await r.text();
    const el = document.getElementById(id);
    const open = [...el.querySelectorAll("details[open]")].map(d => d.closest("tr")?.dataset.id);
    el.innerHTML = text;
    for (const id of open) el.querySelector(`tr[data-id="${CSS.escape(id || "")}"] details`)?.setAttribute("open", "");
  } catch (e) { /* the next poll tries again */ }
}
const scope = location.search;  // ?namespace=NS: the fragments show the same namespace
setInterval(() => swap("graph", "graph.svg" + scope), refresh);
setInterval(() => swap("resources", "resources.html" + scope), refresh * 2);
setInterval(() => swap("deadletters", "deadletters.html" + scope), refresh * 3);

let source = null;
const status = document.getElementById("tail-status");
const rows = document.querySelector("#tail tbody");
function setStatus(text, error) { status.textContent = text; status.className = error ? "error" : ""; }
function cell(text, cls) { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; return td; }
function stop() {
  if (source) source.close();
  source = null;
  document.getElementById("tail-stop").disabled = true;
}
async function start() {
  stop();
  const target = document.getElementById("tail-target").value;
  const filter = document.getElementById("tail-filter").value;
  if (!target) { setStatus("nothing to tail: no Broker or channel yet", true); return; }
  if (filter.trim()) {
    const check = await fetch("api/filter?expression=" + encodeURIComponent(filter));
    if (!check.ok) { setStatus((await check.json()).error, true); return; }
  }
  rows.replaceChildren();
  setStatus("connecting…");
  const query = "target=" + encodeURIComponent(target) + "&filter=" + encodeURIComponent(filter);
  source = new EventSource("api/events?" + query);
  // Tail again restarts with the target and filter as they are now.
  document.getElementById("tail-stop").disabled = false;
  source.addEventListener("ready", (m) => setStatus("live on " + JSON.parse(m.data).topic));
  source.addEventListener("failure", (m) => { setStatus(JSON.parse(m.data).error, true); stop(); });
  source.onmessage = (m) => {
    const e = JSON.parse(m.data);
    const tr = document.createElement("tr");
    tr.className = "tailed";
    tr.dataset.id = e.attributes.id;
    tr.append(cell(new Date(e.timestamp_ms).toISOString().substring(11, 23)), cell(e.partition + "/" + e.offset),
      cell(e.attributes.id), cell(e.attributes.type), cell(e.attributes.source), cell(e.data ?? "", "data"));
    rows.prepend(tr);
    while (rows.children.length > 200) rows.lastChild.remove();
  };
  source.onerror = () => { if (source && source.readyState === EventSource.CONNECTING) setStatus("reconnecting…", true); };
}
document.getElementById("tail-start").onclick = start;
document.getElementById("tail-stop").onclick = () => { stop(); setStatus("stopped"); };
</script>
</body></html>
"""
