"""The topology as a graph: sources → brokers/channels → triggers/subscriptions → subscribers.

:func:`build_topology` is a pure function of the resources (with their statuses) and of what was measured
on Kafka (:class:`Flow` per Trigger or Subscription, ingress rate per Broker or Channel): the console
renders it, the tests check it without Kafka.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from keventing.resources import (
    Broker,
    Channel,
    Destination,
    InMemoryChannel,
    KafkaChannel,
    Parallel,
    Resource,
    Sequence,
    Subscription,
    Trigger,
)

# Columns, left to right.
SOURCES, ROUTERS, ROUTES, SUBSCRIBERS = 0, 1, 2, 3
CHANNEL_KINDS = (Channel, KafkaChannel, InMemoryChannel)
# Kinds that are configuration, not a step of any event's path.
NOT_IN_GRAPH = ("ConfigMap", "Secret", "EventType")
EdgeRole = Literal["sink", "trigger", "subscriber", "reply", "dead-letter", "subscription", "step"]
ReadyState = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Flow:
    """What was measured for one Trigger or Subscription: events per second it committed, records its
    consumer group has not committed yet. None where nothing was measured (yet)."""

    rate: float | None = None
    lag: int | None = None


@dataclass
class Node:
    id: str
    kind: str
    name: str
    namespace: str
    column: int
    ready: ReadyState = "Unknown"
    reason: str = ""
    # False for a node only referenced (a Service, a URI): it has no status of its own here.
    resource: bool = True
    rate: float | None = None


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    role: EdgeRole
    rate: float | None = None
    lag: int | None = None

    @property
    def label(self) -> str:
        parts = []
        if self.rate is not None:
            parts.append(f"{self.rate:.1f}/s")
        if self.lag is not None:
            parts.append(f"lag {self.lag}")
        return " · ".join(parts)


@dataclass
class Topology:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)

    def column(self, index: int) -> list[Node]:
        return sorted((n for n in self.nodes.values() if n.column == index), key=lambda n: n.id)

    def to_json(self) -> dict[str, object]:
        return {
            "nodes": [
                {
                    "id": n.id,
                    "kind": n.kind,
                    "name": n.name,
                    "namespace": n.namespace,
                    "column": n.column,
                    "ready": n.ready,
                    "reason": n.reason,
                    "rate": n.rate,
                }
                for n in sorted(self.nodes.values(), key=lambda n: (n.column, n.id))
            ],
            "edges": [
                {"source": e.source, "target": e.target, "role": e.role, "rate": e.rate, "lag": e.lag}
                for e in self.edges
            ],
        }


def column_of(resource: Resource) -> int:
    if isinstance(resource, (Broker, Sequence, Parallel, *CHANNEL_KINDS)):
        return ROUTERS
    if isinstance(resource, Trigger | Subscription):
        return ROUTES
    # An addressable with a sink (an EventTransform) is a subscriber that passes events on.
    if not resource.ADDRESSABLE and _sink_of(resource) is not None:
        return SOURCES
    return SUBSCRIBERS


def _sink_of(resource: Resource) -> Destination | None:
    spec = resource.spec
    sink = getattr(spec, "sink", None) if spec is not None else None
    return sink if isinstance(sink, Destination) else None


def _ready(resource: Resource) -> tuple[ReadyState, str]:
    ready = resource.status.condition("Ready")
    if ready is None:
        return "Unknown", "not reconciled yet"
    reason = "" if ready.status == "True" else (ready.message or ready.reason or "")
    return ready.status, reason


def destination_id(destination: Destination, namespace: str) -> str:
    """The node a Destination points at: the referenced resource (a ``uri`` beside a ``ref`` is relative
    to it), else the URI itself."""
    if destination.ref is not None:
        ref = destination.ref
        return f"{ref.kind}/{ref.namespace or namespace}/{ref.name}"
    return f"uri:{destination.uri}"


class _Builder:
    def __init__(self, resources: Iterable[Resource]) -> None:
        self.topology = Topology()
        self.resources = [r for r in resources if r.KIND not in NOT_IN_GRAPH]

    def add_resource(self, resource: Resource) -> None:
        ready, reason = _ready(resource)
        self.topology.nodes[str(resource.key)] = Node(
            str(resource.key),
            resource.KIND,
            resource.name,
            resource.namespace,
            column_of(resource),
            ready,
            reason,
        )

    def target(self, destination: Destination | None, namespace: str) -> str | None:
        """The node id of ``destination``, adding a node for a target that is not a resource here."""
        if destination is None or (destination.ref is None and not destination.uri):
            return None
        node_id = destination_id(destination, namespace)
        if node_id not in self.topology.nodes:
            if destination.ref is not None:
                ref = destination.ref
                kind, name, ns = ref.kind, ref.name, ref.namespace or namespace
            else:
                kind, name, ns = "URI", destination.uri or "", ""
            self.topology.nodes[node_id] = Node(node_id, kind, name, ns, SUBSCRIBERS, resource=False)
        return node_id

    def edge(self, source: str, target: str | None, role: EdgeRole, flow: Flow | None = None) -> None:
        if target is None:
            return
        flow = flow or Flow()
        self.topology.edges.append(Edge(source, target, role, flow.rate, flow.lag))


def build_topology(
    resources: Iterable[Resource],
    flows: Mapping[str, Flow] | None = None,
    ingress_rates: Mapping[str, float] | None = None,
) -> Topology:
    """The graph of ``resources``. ``flows`` is keyed by a Trigger's or Subscription's key
    (``Trigger/ns/name``), ``ingress_rates`` (events per second written) by a Broker's or Channel's."""
    flows = flows or {}
    builder = _Builder(resources)
    for resource in builder.resources:
        builder.add_resource(resource)
    for resource in builder.resources:
        key = str(resource.key)
        ns = resource.namespace
        flow = flows.get(key)
        if isinstance(resource, Trigger):
            broker_ns, broker_name = resource.broker_namespace, resource.broker_name
            broker = f"Broker/{broker_ns}/{broker_name}"
            if broker not in builder.topology.nodes:
                builder.topology.nodes[broker] = Node(
                    broker, "Broker", broker_name, broker_ns, ROUTERS, "False", "does not exist", False
                )
            builder.edge(broker, key, "trigger", flow)
            # The lag is the group's, shown once (on the way in); deliveries per second on the way out too.
            out = Flow(rate=flow.rate) if flow else None
            builder.edge(key, builder.target(resource.spec.subscriber, ns), "subscriber", out)
            delivery = resource.spec.delivery
            if delivery is not None:
                builder.edge(key, builder.target(delivery.deadLetterSink, ns), "dead-letter")
        elif isinstance(resource, Subscription):
            channel = resource.spec.channel
            channel_ns = resource.channel_namespace
            channel_id = f"{channel.kind}/{channel_ns}/{channel.name}"
            if channel_id not in builder.topology.nodes:
                builder.topology.nodes[channel_id] = Node(
                    channel_id,
                    channel.kind,
                    channel.name,
                    channel_ns,
                    ROUTERS,
                    "False",
                    "does not exist",
                    False,
                )
            builder.edge(channel_id, key, "subscription", flow)
            out = Flow(rate=flow.rate) if flow else None
            builder.edge(key, builder.target(resource.spec.subscriber, ns), "subscriber", out)
            builder.edge(key, builder.target(resource.spec.reply, ns), "reply")
            if resource.spec.delivery is not None:
                builder.edge(key, builder.target(resource.spec.delivery.deadLetterSink, ns), "dead-letter")
        elif isinstance(resource, Sequence):
            for step in resource.spec.steps:
                builder.edge(key, builder.target(step.destination(), ns), "step")
            builder.edge(key, builder.target(resource.spec.reply, ns), "reply")
        elif isinstance(resource, Parallel):
            for branch in resource.spec.branches:
                builder.edge(key, builder.target(branch.subscriber, ns), "step")
            builder.edge(key, builder.target(resource.spec.reply, ns), "reply")
        elif isinstance(resource, Broker):
            if resource.spec.delivery is not None:
                builder.edge(key, builder.target(resource.spec.delivery.deadLetterSink, ns), "dead-letter")
        else:
            builder.edge(key, builder.target(_sink_of(resource), ns), "sink")
    for key, rate in (ingress_rates or {}).items():
        node = builder.topology.nodes.get(key)
        if node is not None:
            node.rate = rate
    return builder.topology
