"""Dispatcher metrics: Knative's broker-filter names plus what at-least-once delivery needs watched."""

from prometheus_client import Counter, Gauge, Histogram

_EGRESS = ["namespace_name", "kind", "name"]
EVENT_COUNT = Counter(
    "event_count",
    "Events dispatched to subscribers, by response code",
    [*_EGRESS, "response_code", "response_code_class"],
)
EVENT_DISPATCH_LATENCIES = Histogram(
    "event_dispatch_latencies",
    "Time spent dispatching an event to a subscriber, in milliseconds",
    [*_EGRESS, "response_code_class"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000),
)
EVENT_PROCESSING_LATENCIES = Histogram(
    "event_processing_latencies",
    "Time from the event's arrival on Kafka to the end of its delivery, in milliseconds",
    _EGRESS,
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 30000, 120000),
)
FILTERED = Counter("keventing_dispatcher_filtered_total", "Events a filter did not select", _EGRESS)
RETRIES = Counter("keventing_dispatcher_retries_total", "Delivery retries", _EGRESS)
DEAD_LETTERED = Counter(
    "keventing_dispatcher_dead_lettered_total", "Events sent to the dead-letter sink", _EGRESS
)
DROPPED = Counter(
    "keventing_dispatcher_dropped_total",
    "Events given up on: no dead-letter sink, or the dead-letter sink failed too",
    [*_EGRESS, "reason"],
)
REPLIES = Counter("keventing_dispatcher_replies_total", "Replies forwarded", _EGRESS)
IN_FLIGHT = Gauge("keventing_dispatcher_in_flight", "Deliveries in flight", _EGRESS)
CONSUMER_LAG = Gauge(
    "keventing_consumer_lag", "Records not yet committed, per partition", [*_EGRESS, "partition"]
)
