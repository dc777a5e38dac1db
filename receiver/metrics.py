"""Knative's broker-ingress metrics: event_count and event_dispatch_latencies (milliseconds), and the same
latencies as Knative's current OpenTelemetry metric, kn.eventing.dispatch.duration (seconds)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric

from keventing.metrics import MetricSet, SecondsView

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
        registry.register(knative_view(self.event_dispatch_latencies.collect))


def knative_view(source: Callable[[], Iterable[Metric]]) -> SecondsView:
    """kn_eventing_dispatch_duration_seconds from ``event_dispatch_latencies`` (also of several workers)."""
    return SecondsView(
        source,
        "event_dispatch_latencies",
        "kn_eventing_dispatch_duration_seconds",
        "The duration to dispatch the event (to Kafka)",
        _knative_labels,
        ("kn_broker_namespace", "kn_broker_name", "cloudevents_type", "http_response_status_code"),
    )


def _knative_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {
        "kn_broker_namespace": labels["namespace_name"],
        "kn_broker_name": labels["broker_name"],
        "cloudevents_type": labels["event_type"],
        "http_response_status_code": labels["response_code"],
    }
