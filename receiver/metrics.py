"""Knative's broker-ingress metrics: event_count and event_dispatch_latencies (milliseconds), and the
current OpenTelemetry-named kn.eventing.dispatch.duration as Prometheus renders it (seconds)."""

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


KN_LABELS = [
    "kn_broker_namespace",
    "kn_broker_name",
    "messaging_destination_name",
    "cloudevents_type",
    "http_response_status_code",
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
        # OpenTelemetry's kn.eventing.dispatch.duration (unit s), with Knative's attribute names.
        self.kn_dispatch_duration = Histogram(
            "kn_eventing_dispatch_duration_seconds",
            "The duration to dispatch the event (to Kafka)",
            KN_LABELS,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
            registry=registry,
        )
