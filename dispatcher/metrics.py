"""Dispatcher metrics: Knative's broker-filter names plus what at-least-once delivery needs watched.

``DispatcherMetrics`` holds the families, registered on one registry (the process's ``METRICS``; a test's own);
``EgressMetrics`` holds one egress's labelled children, which the consumer and the dispatcher are given.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from keventing.contract import Egress

_EGRESS = ["namespace_name", "kind", "name"]
# Knative's OpenTelemetry attribute names, as Prometheus renders them; the destination is "<kind>:<ns>/<name>".
_KN = ["messaging_destination_name", "cloudevents_type"]
_SECONDS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 120)


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
            [*_EGRESS, "response_code_class"],
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

        # OpenTelemetry's kn.eventing.dispatch.duration and kn.eventing.process.duration (unit s).
        self.kn_dispatch_duration = Histogram(
            "kn_eventing_dispatch_duration_seconds",
            "The duration to dispatch the event, retries included",
            [*_KN, "http_response_status_code"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.kn_process_duration = Histogram(
            "kn_eventing_process_duration_seconds",
            "The duration of processing an event before dispatching it: from its arrival on Kafka",
            _KN,
            buckets=_SECONDS,
            registry=registry,
        )

    def for_egress(self, egress: Egress, event_type_label: bool = True) -> EgressMetrics:
        return EgressMetrics(self, (egress.namespace, egress.kind, egress.name), event_type_label)


class EgressMetrics:
    """One egress's series. Children are looked up once: labels() per event costs more than the filter."""

    def __init__(
        self, families: DispatcherMetrics, labels: tuple[str, str, str], event_type_label: bool = True
    ) -> None:
        self.families = families
        self.labels = labels
        namespace, kind, name = labels
        self.destination = f"{kind.lower()}:{namespace}/{name}"
        self.event_type_label = event_type_label  # False: "" (the cardinality of event types is not wanted)
        self._kn_dispatch: dict[tuple[int, str], Histogram] = {}
        self._kn_process: dict[str, Histogram] = {}
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
                self.families.event_dispatch_latencies.labels(*self.labels, f"{text[0]}xx"),
            )
            self._by_code[code] = children
        return children

    def kn_dispatch(self, code: int, event_type: str) -> Histogram:
        if not self.event_type_label:
            event_type = ""
        child = self._kn_dispatch.get((code, event_type))
        if child is None:
            child = self._kn_dispatch[(code, event_type)] = self.families.kn_dispatch_duration.labels(
                self.destination, event_type, str(code)
            )
        return child

    def kn_process(self, event_type: str) -> Histogram:
        if not self.event_type_label:
            event_type = ""
        child = self._kn_process.get(event_type)
        if child is None:
            child = self._kn_process[event_type] = self.families.kn_process_duration.labels(
                self.destination, event_type
            )
        return child

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
