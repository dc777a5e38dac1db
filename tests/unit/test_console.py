"""The console's pure core: the topology graph from resources, its SVG and HTML, and an event's path."""

from __future__ import annotations

from typing import Any

from helpers import broker_doc, ping_source_doc, sink_ref, subscription_doc, trigger_doc

from kev.console.render import (
    DeadLetters,
    PageContext,
    render_dead_letters,
    render_page,
    render_resources,
    render_svg,
)
from kev.console.topology import ROUTERS, ROUTES, SOURCES, SUBSCRIBERS, Flow, build_topology
from kev.eventpath import dead_letter_ingress, egresses_on, hops, lag
from kev.tail import TailedEvent, cesql_filter
from keventing.contract import ContractEntry, DeliveryPolicy, Egress, FilterSpec, Ingress
from keventing.resources import Condition, Resource, parse_resource


def ready(resource: Resource, status: str = "True", reason: str = "", message: str = "") -> Resource:
    resource.status.conditions = [
        Condition(type="Ready", status=status, reason=reason or None, message=message or None)  # type: ignore[arg-type]
    ]
    return resource


def quickstart(extra: list[dict[str, Any]] | None = None) -> list[Resource]:
    docs = [
        broker_doc("default", "default"),
        trigger_doc("event-display", "default", "default", "http://localhost:8081"),
        ping_source_doc("ping", "default", sink_ref("Broker", "default")),
        *(extra or []),
    ]
    return [ready(parse_resource(d)) for d in docs]


def test_quickstart_topology_runs_source_to_broker_to_trigger_to_subscriber() -> None:
    topology = build_topology(quickstart())
    columns = {n.id: n.column for n in topology.nodes.values()}
    assert columns == {
        "PingSource/default/ping": SOURCES,
        "Broker/default/default": ROUTERS,
        "Trigger/default/event-display": ROUTES,
        "uri:http://localhost:8081": SUBSCRIBERS,
    }
    edges = {(e.source, e.target, e.role) for e in topology.edges}
    assert edges == {
        ("PingSource/default/ping", "Broker/default/default", "sink"),
        ("Broker/default/default", "Trigger/default/event-display", "trigger"),
        ("Trigger/default/event-display", "uri:http://localhost:8081", "subscriber"),
    }


def test_trigger_of_a_missing_broker_shows_the_broker_as_not_ready() -> None:
    orphan = ready(
        parse_resource(trigger_doc("orphan", "default", "gone", "http://x")), "False", "BrokerDoesNotExist"
    )
    topology = build_topology([orphan])
    broker = topology.nodes["Broker/default/gone"]
    assert (broker.ready, broker.resource, broker.reason) == ("False", False, "does not exist")
    assert topology.nodes["Trigger/default/orphan"].ready == "False"


def test_not_reconciled_resource_is_unknown_and_says_so() -> None:
    broker = parse_resource(broker_doc("new", "default"))
    node = build_topology([broker]).nodes["Broker/default/new"]
    assert (node.ready, node.reason) == ("Unknown", "not reconciled yet")


def test_flows_label_the_trigger_edges_and_ingress_rates_the_brokers() -> None:
    topology = build_topology(
        quickstart(),
        {"Trigger/default/event-display": Flow(rate=2.5, lag=7)},
        {"Broker/default/default": 3.0},
    )
    edge = next(e for e in topology.edges if e.role == "trigger")
    assert (edge.rate, edge.lag, edge.label) == (2.5, 7, "2.5/s · lag 7")
    assert topology.nodes["Broker/default/default"].rate == 3.0


def test_subscriptions_dead_letter_sinks_and_replies_are_edges() -> None:
    sub = subscription_doc(
        "sub",
        "default",
        "orders",
        subscriber={"uri": "http://svc"},
        reply={"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}},
        delivery={"deadLetterSink": {"uri": "http://dls"}},
    )
    topology = build_topology(quickstart([sub]))
    roles = {(e.source, e.target): e.role for e in topology.edges}
    channel = "KafkaChannel/default/orders"
    assert roles[(channel, "Subscription/default/sub")] == "subscription"
    assert roles[("Subscription/default/sub", "Broker/default/default")] == "reply"
    assert roles[("Subscription/default/sub", "uri:http://dls")] == "dead-letter"
    assert topology.nodes[channel].ready == "False"  # referenced, not applied


def test_secrets_and_config_maps_are_not_in_the_graph() -> None:
    secret = parse_resource({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {}})
    assert build_topology([secret]).nodes == {}


def test_svg_draws_every_node_with_its_ready_state_and_escapes_names() -> None:
    resources = quickstart()
    resources[1] = ready(resources[1], "False", "SubscriberResolved", "<script>alert(1)</script>")
    svg = render_svg(build_topology(resources))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert 'data-id="Trigger/default/event-display" data-ready="False"' in svg
    assert 'class="node ready-True" data-id="Broker/default/default"' in svg
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count('class="edge role-') == 3


def test_empty_topology_says_how_to_add_resources() -> None:
    assert "kev apply" in render_svg(build_topology([]))


def test_resources_table_lists_every_condition() -> None:
    trigger = quickstart()[1]
    trigger.status.conditions.append(Condition(type="BrokerReady", status="False", reason="BrokerNotReady"))
    html = render_resources([trigger])
    assert 'data-id="Trigger/default/event-display" data-ready="True"' in html
    assert "<td>BrokerReady</td><td class='ready-False'>False</td><td>BrokerNotReady</td>" in html


def test_dead_letters_say_when_the_sink_is_not_on_kafka() -> None:
    event = TailedEvent("t", 0, 4, 0, {"id": "e1", "type": "x", "knativeerrorcode": "500"}, None)
    html = render_dead_letters(
        [
            DeadLetters("Trigger/default/a", "default", "http://svc/", None),
            DeadLetters("Trigger/default/b", "default", "http://in/default/dls", "topic-dls", [event]),
        ]
    )
    assert "not on Kafka" in html
    assert "topic topic-dls" in html and "<td>e1</td>" in html and "<td>500</td>" in html
    assert "No Trigger" in render_dead_letters([])


def test_page_has_the_graph_the_tail_targets_and_no_external_resources() -> None:
    ctx = PageContext("local store", "keventing", [("Broker/default/default", "Broker default/default")])
    page = render_page(ctx, build_topology(quickstart()), quickstart(), "")
    assert '<option value="Broker/default/default">Broker default/default</option>' in page
    assert "<svg" in page and "EventSource" in page and "read-only" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
        "http://localhost:8081", ""
    )  # no CDN: everything is inline


# ------------------------------------------------------------------------------------------ event path


def egress(name: str, **fields: Any) -> Egress:
    return Egress(
        id=f"Trigger/default/{name}",
        kind="Trigger",
        namespace="default",
        name=name,
        uid=name,
        topics=("broker-topic",),
        consumer_group=f"group-{name}",
        destination=f"http://{name}",
        **fields,
    )


def test_hops_say_what_each_trigger_did_with_a_record() -> None:
    egresses = [
        egress("delivered"),
        egress("waiting"),
        egress("filtered", filter=FilterSpec(attributes={"type": "other"})),
        egress("failed"),
        egress("new"),
    ]
    committed = {
        "group-delivered": {("broker-topic", 1): 11},
        "group-waiting": {("broker-topic", 1): 10},
        "group-filtered": {("broker-topic", 1): 11},
        "group-failed": {("broker-topic", 1): 11},
    }
    found = hops(
        egresses, {"type": "order"}, "broker-topic", 1, 10, committed, {"Trigger/default/failed": True}
    )
    assert [(h.egress.name, h.matches, h.committed, h.state) for h in found] == [
        ("delivered", True, 11, "done"),
        ("waiting", True, 10, "pending"),
        ("filtered", False, 11, "filtered"),
        ("failed", True, 11, "dead-lettered"),
        ("new", True, None, "not-positioned"),
    ]


def test_hops_use_the_cesql_engine_of_triggers() -> None:
    cesql = egress("cesql", filter=FilterSpec(filters=[{"cesql": "type LIKE 'order.%'"}]))
    [hop] = hops([cesql], {"type": "order.created"}, "broker-topic", 0, 0, {})
    assert hop.matches is True


def test_lag_sums_uncommitted_records_and_is_unknown_before_a_commit() -> None:
    ends = {("t", 0): 10, ("t", 1): 5, ("other", 0): 99}
    assert lag({("t", 0): 7, ("t", 1): 5}, ends, ("t",)) == 3
    assert lag({}, ends, ("t",)) is None


def test_dead_letter_sink_is_found_by_its_ingress_path() -> None:
    dls = Ingress(
        id="Broker/default/dls",
        kind="Broker",
        namespace="default",
        name="dls",
        path="/default/dls",
        topic="dls-topic",
    )
    contract = {
        dls.id: ContractEntry(ingress=dls),
        "Trigger/default/a": ContractEntry(
            egress=egress("a", delivery=DeliveryPolicy(dead_letter_url="http://ingress:8080/default/dls"))
        ),
    }
    assert dead_letter_ingress(contract, "http://ingress:8080/default/dls/") == dls
    assert dead_letter_ingress(contract, "http://elsewhere/svc") is None
    assert dead_letter_ingress(contract, None) is None
    assert [e.id for e in egresses_on(contract, "broker-topic")] == ["Trigger/default/a"]


def test_cesql_filter_is_none_for_an_empty_expression_and_compiles_otherwise() -> None:
    assert cesql_filter("  ") is None
    matches = cesql_filter("source = 'a' AND type LIKE 'x%'")
    assert matches is not None and matches({"source": "a", "type": "xy"}) and not matches({"source": "b"})


def test_the_lag_is_shown_once_and_the_rate_on_the_way_out_too() -> None:
    topology = build_topology(quickstart(), {"Trigger/default/event-display": Flow(rate=1.0, lag=4)})
    out = next(e for e in topology.edges if e.role == "subscriber")
    assert (out.rate, out.lag) == (1.0, None)


# ------------------------------------------------------------------------------------- HTTP surface


class FixedResources:
    """A resource view that holds what it is given (the real ones follow Kafka or an API server)."""

    def __init__(self, resources: list[Resource], synced: bool = True) -> None:
        self._resources = resources
        self.synced = synced

    async def run(self) -> None:
        return None

    def resources(self) -> list[Resource]:
        return self._resources


def console_client(synced: bool = True, max_tails: int = 20) -> tuple[Any, Any]:
    import httpx
    from prometheus_client import CollectorRegistry

    from kev.console.app import Console
    from kev.console.state import ConsoleSettings

    settings = ConsoleSettings(KEVENTING_CONSOLE_MAX_TAILS=max_tails)  # type: ignore[call-arg]
    console = Console(settings, FixedResources(quickstart(), synced), CollectorRegistry())
    broker = Ingress(
        id="Broker/default/default",
        kind="Broker",
        namespace="default",
        name="default",
        path="/default/default",
        topic="knative-broker-default-default",
    )
    console.contract.entries = {broker.id: ContractEntry(ingress=broker)}
    console.contract.synced = synced
    return console, httpx.AsyncClient(
        transport=httpx.ASGITransport(app=console.app), base_url="http://console"
    )


async def test_console_is_ready_once_resources_and_contract_are_loaded() -> None:
    assert (await console_client(synced=False)[1].get("/readyz")).status_code == 503
    _, client = console_client()
    assert (await client.get("/readyz")).status_code == 200
    assert (await client.get("/healthz")).text == "ok"


async def test_console_page_fragments_and_json_views() -> None:
    _, client = console_client()
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<option value="Broker/default/default">' in page.text
    svg = await client.get("/graph.svg")
    assert svg.headers["content-type"] == "image/svg+xml" and svg.text.startswith("<svg")
    nodes = {n["id"] for n in (await client.get("/api/topology")).json()["nodes"]}
    assert "Trigger/default/event-display" in nodes
    assert (await client.get("/api/topology", params={"namespace": "other"})).json() == {
        "nodes": [],
        "edges": [],
    }
    assert (await client.get("/api/deadletters")).json() == {"items": []}  # no Trigger has a dead-letter sink
    kinds = [i["kind"] for i in (await client.get("/api/resources")).json()["items"]]
    assert sorted(kinds) == ["Broker", "PingSource", "Trigger"]


async def test_live_tail_refuses_bad_requests_with_the_right_status() -> None:
    _, client = console_client()
    target = {"target": "Broker/default/default"}
    assert (await client.get("/api/events", params={"target": "Broker/default/nope"})).status_code == 404
    bad = await client.get("/api/events", params={**target, "filter": "type = = 'x'"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("invalid CESQL filter")
    assert (await client.get("/api/events", params={**target, "last": "many"})).status_code == 400
    assert (await client.get("/api/events", params={**target, "last": "501"})).status_code == 400
    assert (await client.get("/api/filter", params={"expression": "type = = 'x'"})).status_code == 400


async def test_live_tails_beyond_the_limit_get_503_with_retry_after() -> None:
    console, client = console_client(max_tails=1)
    console._open_tails = 1  # one tail is streaming
    busy = await client.get("/api/events", params={"target": "Broker/default/default"})
    assert busy.status_code == 503 and busy.headers["retry-after"] == "5"
    assert console.metrics.registry.get_sample_value("keventing_console_tails_refused_total") == 1.0
