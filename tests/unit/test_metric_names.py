"""Knative's metric names and labels beside keventing's own, read from the registries the services serve."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from controller.context import Desired
from controller.driver import ControllerMetrics
from dispatcher.dispatch import RecordDispatcher
from dispatcher.metrics import DispatcherMetrics
from dispatcher.replies import ReplyPublisher
from dispatcher.transport import Response
from keventing.contract import FilterSpec
from keventing.resources import Condition, ResourceKey, Status
from unit.test_dispatch import FakeKafka, FakePost, Sleeps, _binary, _egress, _record


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 0.25  # every reading is a quarter of a second after the one before
        return self.now


def _dispatcher(registry: CollectorRegistry, clock: Clock) -> RecordDispatcher:
    egress = _egress(filter=FilterSpec(attributes={"type": "dev.wanted"}))
    post = FakePost({"http://subscriber/": [Response(202)]})
    replies = ReplyPublisher(FakeKafka().produce, post, lambda topic, e: None)
    metrics = DispatcherMetrics(registry).for_egress(egress)
    return RecordDispatcher(egress, post, replies, metrics, 5.0, sleep=Sleeps(), clock=clock)


def _served(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    """What Prometheus would scrape: sample name → [(labels, value)]."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


async def test_process_duration_is_knatives_from_the_records_arrival_to_the_start_of_its_delivery() -> None:
    registry, clock = CollectorRegistry(), Clock()
    dispatcher = _dispatcher(registry, clock)
    assert dispatcher.select(_record(_binary("dev.other"))) is None  # filtered: not processed for delivery
    event = dispatcher.select(_record(_binary("dev.wanted")))
    assert event is not None
    outcome = await dispatcher.dispatch(event)
    assert outcome.result == "delivered"
    served = _served(registry)
    destination = {"messaging_destination_name": "trigger:ns/t"}
    assert served["kn_eventing_process_duration_seconds_count"] == [(destination, 1.0)]
    assert served["kn_eventing_process_duration_seconds_sum"] == [(destination, 0.25)]
    buckets = {labels["le"]: value for labels, value in served["kn_eventing_process_duration_seconds_bucket"]}
    assert (buckets["0.1"], buckets["0.25"]) == (0.0, 1.0)  # Knative's bounds, in seconds
    assert "10.0" in buckets and "+Inf" in buckets


async def test_dispatch_duration_is_served_in_seconds_under_knatives_name_and_attributes() -> None:
    registry = CollectorRegistry()
    dispatcher = _dispatcher(registry, Clock())
    event = dispatcher.select(_record(_binary("dev.wanted")))
    assert event is not None
    await dispatcher.dispatch(event)
    served = _served(registry)
    [(legacy, milliseconds)] = served["event_dispatch_latencies_sum"]
    [(labels, seconds)] = served["kn_eventing_dispatch_duration_seconds_sum"]
    assert labels == {"messaging_destination_name": "trigger:ns/t", "http_response_status_code": "202"}
    assert seconds == milliseconds / 1000
    assert "kn_eventing_dispatch_duration_seconds_created" not in served


def test_in_flight_deliveries_are_served_under_knative_kafka_brokers_name() -> None:
    registry = CollectorRegistry()
    metrics = DispatcherMetrics(registry).for_egress(_egress())
    metrics.in_flight.inc(3)
    served = _served(registry)
    assert served["event_dispatch_in_flight_count"] == [
        ({"namespace_name": "ns", "kind": "Trigger", "name": "t", "sender_context": "subscriber"}, 3.0)
    ]
    metrics.in_flight.dec(3)
    assert _served(registry)["event_dispatch_in_flight_count"][0][1] == 0.0


def test_views_declare_their_labels_for_readers_of_the_registry() -> None:
    registry = CollectorRegistry()
    DispatcherMetrics(registry)
    labelled = {
        min(names, key=len): tuple(getattr(collector, "_labelnames", ()))
        for collector, names in registry._collector_to_names.items()
    }
    assert labelled["kn_eventing_dispatch_duration_seconds"] == (
        "messaging_destination_name",
        "http_response_status_code",
    )
    assert labelled["event_dispatch_in_flight_count"] == ("namespace_name", "kind", "name", "sender_context")
    assert labelled["kn_eventing_process_duration_seconds"] == ("messaging_destination_name",)


def _status(ready: str) -> Status:
    return Status(conditions=[Condition(type="Ready", status=ready)])  # type: ignore[arg-type]


def test_the_controller_serves_each_resources_readiness_and_forgets_deleted_ones() -> None:
    registry = CollectorRegistry()
    metrics = ControllerMetrics(registry)
    desired = Desired()
    desired.statuses[ResourceKey("Broker", "ns", "default")] = _status("True")
    desired.statuses[ResourceKey("Trigger", "ns", "orphan")] = _status("False")
    desired.statuses[ResourceKey("Trigger", "ns", "new")] = _status("Unknown")
    metrics.count(desired)
    ready = {
        (labels["kind"], labels["name"]): value
        for labels, value in _served(registry)["keventing_controller_resource_ready"]
    }
    assert ready == {("Broker", "default"): 1.0, ("Trigger", "orphan"): 0.0, ("Trigger", "new"): 0.0}
    counts = {
        (labels["kind"], labels["ready"]): value
        for labels, value in _served(registry)["keventing_controller_resources"]
    }
    assert counts == {("Broker", "true"): 1.0, ("Trigger", "false"): 2.0}

    del desired.statuses[ResourceKey("Trigger", "ns", "orphan")]
    metrics.count(desired)
    names = {labels["name"] for labels, _ in _served(registry)["keventing_controller_resource_ready"]}
    assert names == {"default", "new"}
