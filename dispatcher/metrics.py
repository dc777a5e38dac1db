"""Dispatcher metrics: Knative's broker-filter names plus what at-least-once delivery needs watched.

``DispatcherMetrics`` holds the families, registered on one registry (the process's ``METRICS``; a test's own);
``EgressMetrics`` holds one egress's labelled children, which the consumer and the dispatcher are given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from keventing.contract import Egress
from keventing.metrics import GaugeView, SecondsView

_EGRESS = ["namespace_name", "kind", "name"]
# keventing_dispatcher_dropped_total's reasons.
DropReason = Literal["no_dead_letter_sink", "dead_letter_sink_failed", "internal_error"]
DROP_REASONS: tuple[DropReason, ...] = get_args(DropReason)
# Knative's broker filter's bounds for kn.eventing.{dispatch,process}.duration, in seconds.
_KNATIVE_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


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
        self.shared_fetch_records = Counter(
            "keventing_dispatcher_shared_fetch_records_total",
            "Records a shared fetch read once for every Trigger of the dispatcher on the topic",
            ["topic"],
            registry=registry,
        )
        self.shared_fetch_detached = Counter(
            "keventing_dispatcher_shared_fetch_detached_total",
            "Times a backed-up Trigger left the shared fetch of a partition to read it alone",
            _EGRESS,
            registry=registry,
        )
        self.shared_fetch_attached = Gauge(
            "keventing_dispatcher_shared_fetch_attached_partitions",
            "Partitions of the Trigger read by the shared fetch (the others it reads alone)",
            _EGRESS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "keventing_consumer_lag",
            "Records not yet committed, per partition",
            [*_EGRESS, "partition"],
            registry=registry,
        )

        # Knative's kn.eventing.process.duration: from the record's arrival at its Trigger / Subscription
        # (decoding, the filter) to the start of the delivery, for the events the filter selected.
        self.process_duration = Histogram(
            "kn_eventing_process_duration_seconds",
            "The duration of processing an event before dispatching it",
            ["messaging_destination_name"],
            buckets=_KNATIVE_SECONDS,
            registry=registry,
        )

        registry.register(
            SecondsView(
                self.event_dispatch_latencies.collect,
                "event_dispatch_latencies",
                "kn_eventing_dispatch_duration_seconds",
                "The duration to dispatch the event, retries included",
                _knative_labels,
                ("messaging_destination_name", "http_response_status_code"),
            )
        )
        registry.register(
            GaugeView(
                self.in_flight.collect,
                "keventing_dispatcher_in_flight",
                "event_dispatch_in_flight_count",
                "Number of events currently dispatched to a destination waiting to be processed",
                _in_flight_labels,
                (*_EGRESS, "sender_context"),
            )
        )

    def for_egress(self, egress: Egress) -> EgressMetrics:
        return EgressMetrics(self, (egress.namespace, egress.kind, egress.name))


def destination_name(kind: str, namespace: str, name: str) -> str:
    """Knative's messaging.destination.name: "<kind>:<namespace>/<name>" ("trigger:default/t")."""
    return f"{kind.lower()}:{namespace}/{name}"


def _knative_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Knative's attributes: the destination, the HTTP status code."""
    destination = destination_name(labels["kind"], labels["namespace_name"], labels["name"])
    return {"messaging_destination_name": destination, "http_response_status_code": labels["response_code"]}


def _in_flight_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Knative Kafka broker's labels: a delivery in flight is one to the subscriber (its dead letter and
    reply included: keventing counts the delivery, not each request)."""
    return {**{label: labels[label] for label in _EGRESS}, "sender_context": "subscriber"}


class EgressMetrics:
    """One egress's series. Children are looked up once: labels() per event costs more than the filter."""

    def __init__(self, families: DispatcherMetrics, labels: tuple[str, str, str]) -> None:
        self.families = families
        self.labels = labels
        self.filtered = families.filtered.labels(*labels)
        self.in_flight = families.in_flight.labels(*labels)
        self.retries = families.retries.labels(*labels)
        self.detached = families.shared_fetch_detached.labels(*labels)
        self.attached = families.shared_fetch_attached.labels(*labels)
        self.processing = families.event_processing_latencies.labels(*labels)
        self.process = families.process_duration.labels(destination_name(labels[1], labels[0], labels[2]))
        self._by_code: dict[int, tuple[Counter, Histogram]] = {}
        # The outcomes alerts watch start at 0 (Prometheus' advice): a series born at its first increment
        # hides that increment from rate() and increase(), and a burst of dead letters would not alert.
        families.dead_lettered.labels(*labels)
        for reason in DROP_REASONS:
            families.dropped.labels(*labels, reason)

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

    def dead_lettered(self) -> Counter:
        return self.families.dead_lettered.labels(*self.labels)

    def dropped(self, reason: DropReason) -> Counter:
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
