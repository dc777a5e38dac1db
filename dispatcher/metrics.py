"""Dispatcher metrics: Knative's broker-filter names plus what at-least-once delivery needs watched.

``DispatcherMetrics`` holds the families, registered on one registry (the process's ``METRICS``; a test's own);
``EgressMetrics`` holds one egress's labelled children, which the consumer and the dispatcher are given.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from keventing.contract import Egress
from keventing.metrics import SecondsView

_EGRESS = ["namespace_name", "kind", "name"]


class DispatcherMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.event_count = Counter(
            "event_count",
            "Events dispatched to subscribers, by response code",
            [*_EGRESS, "response_code", "response_code_class"],
            registry=registry,
        )
        self.event_dispatch_latencies = Histogram(
            "event_dispatch_latencies",
            "Time spent dispatching an event to a subscriber, in milliseconds",
            [*_EGRESS, "response_code", "response_code_class"],
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000),
            registry=registry,
        )
        self.event_processing_latencies = Histogram(
            "event_processing_latencies",
            "Time from the event's arrival on Kafka to the end of its delivery, in milliseconds",
            _EGRESS,
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 30000, 120000),
            registry=registry,
        )
        self.filtered = Counter(
            "keventing_dispatcher_filtered_total",
            "Events a filter did not select",
            _EGRESS,
            registry=registry,
        )
        self.retries = Counter(
            "keventing_dispatcher_retries_total", "Delivery retries", _EGRESS, registry=registry
        )
        self.dead_lettered = Counter(
            "keventing_dispatcher_dead_lettered_total",
            "Events sent to the dead-letter sink",
            _EGRESS,
            registry=registry,
        )
        self.dropped = Counter(
            "keventing_dispatcher_dropped_total",
            "Events given up on: no dead-letter sink, or the dead-letter sink failed too",
            [*_EGRESS, "reason"],
            registry=registry,
        )
        self.replies = Counter(
            "keventing_dispatcher_replies_total", "Replies forwarded", _EGRESS, registry=registry
        )
        self.in_flight = Gauge(
            "keventing_dispatcher_in_flight", "Deliveries in flight", _EGRESS, registry=registry
        )
        self.consumer_lag = Gauge(
            "keventing_consumer_lag",
            "Records not yet committed, per partition",
            [*_EGRESS, "partition"],
            registry=registry,
        )

        registry.register(
            SecondsView(
                self.event_dispatch_latencies.collect,
                "event_dispatch_latencies",
                "kn_eventing_dispatch_duration_seconds",
                "The duration to dispatch the event, retries included",
                _knative_labels,
            )
        )

    def for_egress(self, egress: Egress) -> EgressMetrics:
        return EgressMetrics(self, (egress.namespace, egress.kind, egress.name))


def _knative_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Knative's attributes: the destination as "<kind>:<namespace>/<name>", the HTTP status code."""
    destination = f"{labels['kind'].lower()}:{labels['namespace_name']}/{labels['name']}"
    return {"messaging_destination_name": destination, "http_response_status_code": labels["response_code"]}


class EgressMetrics:
    """One egress's series. Children are looked up once: labels() per event costs more than the filter."""

    def __init__(self, families: DispatcherMetrics, labels: tuple[str, str, str]) -> None:
        self.families = families
        self.labels = labels
        self.filtered = families.filtered.labels(*labels)
        self.in_flight = families.in_flight.labels(*labels)
        self.retries = families.retries.labels(*labels)
        self.processing = families.event_processing_latencies.labels(*labels)
        self._by_code: dict[int, tuple[Counter, Histogram]] = {}

    def by_code(self, code: int) -> tuple[Counter, Histogram]:
        """The event count and the dispatch latency for a response code (500 for a transport error)."""
        children = self._by_code.get(code)
        if children is None:
            text = str(code)
            children = (
                self.families.event_count.labels(*self.labels, text, f"{text[0]}xx"),
                self.families.event_dispatch_latencies.labels(*self.labels, text, f"{text[0]}xx"),
            )
            self._by_code[code] = children
        return children

    # Rare outcomes: their series appear only once something happened.
    def dead_lettered(self) -> Counter:
        return self.families.dead_lettered.labels(*self.labels)

    def dropped(self, reason: str) -> Counter:
        return self.families.dropped.labels(*self.labels, reason)

    def replied(self) -> Counter:
        return self.families.replies.labels(*self.labels)

    def lag(self, partition: int) -> Gauge:
        return self.families.consumer_lag.labels(*self.labels, str(partition))

    def forget_lag(self, partition: int) -> None:
        try:
            self.families.consumer_lag.remove(*self.labels, str(partition))
        except KeyError:
            pass


METRICS = DispatcherMetrics()  # the process's families: importing this module registers them
