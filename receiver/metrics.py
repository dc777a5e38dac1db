"""Knative's broker-ingress metrics: event_count and event_dispatch_latencies (milliseconds)."""

from prometheus_client import Counter, Histogram

LABELS = [
    "namespace_name",
    "broker_name",
    "event_type",
    "response_code",
    "response_code_class",
    "unique_name",
]
EVENT_COUNT = Counter("event_count", "Number of events received by a Broker", LABELS)
EVENT_DISPATCH_LATENCIES = Histogram(
    "event_dispatch_latencies",
    "The time spent producing an event to Kafka, in milliseconds",
    LABELS,
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
)
