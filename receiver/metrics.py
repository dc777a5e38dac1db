"""Knative's broker-ingress metrics: event_count and event_dispatch_latencies (milliseconds)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from keventing.metrics import MetricSet

LABELS = [
    "namespace_name",
    "broker_name",
    "event_type",
    "response_code",
    "response_code_class",
    "unique_name",
]


class IngressMetrics(MetricSet):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.event_count = Counter(
            "event_count", "Number of events received by a Broker", LABELS, registry=registry
        )
        self.event_dispatch_latencies = Histogram(
            "event_dispatch_latencies",
            "The time spent producing an event to Kafka, in milliseconds",
            LABELS,
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
            registry=registry,
        )
