"""EventType registry: Knative's generated names, one EventType per (type, source), the hot path's cost."""

from __future__ import annotations

import copy

import orjson
import pytest
from helpers import broker_doc
from prometheus_client import CollectorRegistry

from controller.reconciler import ControllerConfig, reconcile
from keventing import events
from keventing.contract import ContractEntry, Ingress
from keventing.eventtypes import (
    AUTO_CREATED_DESCRIPTION,
    EventTypeLimits,
    EventTypeMetrics,
    EventTypeRegistry,
    Sighting,
    auto_event_type,
    event_type_name,
    missing_event_types,
    plan_event_types,
)
from keventing.resources import ResourceInvalid, ResourceKey, parse_resource
from keventing.resources.eventtype import convert_document

INGRESS = Ingress(
    id="Broker/ns/default",
    kind="Broker",
    namespace="ns",
    name="default",
    path="/ns/default",
    topic="knative-broker-ns-default",
    event_types=True,
)


def _event(type_: str, source: str, **extra: str) -> events.Event:
    return events.Event({"specversion": "1.0", "id": "1", "type": type_, "source": source, **extra})


def _sighting(type_: str = "order.created", source: str = "/shop") -> Sighting:
    return Sighting("Broker/ns/default", "Broker", "ns", "default", type_, source)


def test_event_type_name_is_knatives_deterministic_name() -> None:
    name = event_type_name("default", "ns", "order.created", "/shop")
    assert name == event_type_name("default", "ns", "order.created", "/shop")
    assert name.startswith("et-default-") and len(name) == len("et-default-") + 32
    assert name != event_type_name("default", "ns", "order.created", "/other")
    assert event_type_name("My_Broker", "ns", "t", "s").startswith("et-mybroker-")


def test_auto_created_event_type_refers_to_its_broker() -> None:
    sighting = Sighting(
        "Broker/ns/default", "Broker", "ns", "default", "order.created", "/shop", "https://s/x"
    )
    document = auto_event_type(sighting).to_document(with_status=False)
    parsed = parse_resource(document)
    assert document["apiVersion"] == "eventing.knative.dev/v1beta3"
    assert (parsed.spec.type, parsed.spec.source, parsed.spec.schema_) == (
        "order.created",
        "/shop",
        "https://s/x",
    )
    assert document["spec"] == {
        "attributes": [
            {"name": "type", "value": "order.created", "required": True},
            {"name": "source", "value": "/shop", "required": True},
            {"name": "dataschema", "value": "https://s/x", "required": False},
        ],
        "reference": {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "namespace": "ns",
            "name": "default",
        },
        "description": AUTO_CREATED_DESCRIPTION,
    }
    assert document["metadata"]["ownerReferences"][0]["kind"] == "Broker"
    assert parsed.key == ResourceKey("EventType", "ns", document["metadata"]["name"])
    assert auto_event_type(sighting).metadata.uid == parsed.metadata.uid  # same on every writer


def test_registry_queues_each_pair_once_and_ignores_ingresses_without_event_types() -> None:
    registry = EventTypeRegistry("unused:9092", "unused")
    for _ in range(3):
        registry.observe(INGRESS, _event("a", "/s"))
    registry.observe(INGRESS, _event("a", "/other"))
    registry.observe(INGRESS.model_copy(update={"event_types": False, "id": "x"}), _event("b", "/s"))
    queued = [registry.queue.get_nowait() for _ in range(registry.queue.qsize())]
    assert [(s.type, s.source) for s in queued] == [("a", "/s"), ("a", "/other")]


def test_replies_published_to_a_broker_topic_count_as_seen_at_that_broker() -> None:
    registry = EventTypeRegistry("unused:9092", "unused")
    registry.track("Broker/ns/default", ContractEntry(ingress=INGRESS))
    registry.observe_reply("knative-broker-ns-default", _event("reply.type", "/responder"))
    registry.observe_reply("some-other-topic", _event("x", "/y"))
    assert registry.queue.get_nowait().type == "reply.type"
    assert registry.queue.empty()
    registry.track("Broker/ns/default", None)
    registry.observe_reply("knative-broker-ns-default", _event("again", "/y"))
    assert registry.queue.empty()


def test_missing_event_types_skips_stored_and_hand_applied_ones() -> None:
    stored_auto = auto_event_type(_sighting("a", "/s"))
    by_hand = parse_resource(
        {
            "apiVersion": "eventing.knative.dev/v1beta2",
            "kind": "EventType",
            "metadata": {"name": "orders", "namespace": "ns"},
            "spec": {
                "type": "b",
                "source": "/s",
                "reference": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"},
            },
        }
    )
    stored = {str(r.key): orjson.dumps(r.to_document(with_status=False)) for r in (stored_auto, by_hand)}
    wanted = missing_event_types(
        [_sighting("a", "/s"), _sighting("b", "/s"), _sighting("c", "/s"), _sighting("c", "/s")], stored
    )
    assert [e.spec.type for e in wanted] == ["c"]


def test_event_type_status_says_whether_its_broker_exists() -> None:
    present = auto_event_type(_sighting()).to_document(with_status=False)
    absent = auto_event_type(Sighting("Broker/ns/gone", "Broker", "ns", "gone", "t", "/s")).to_document(
        with_status=False
    )
    desired = reconcile(
        [parse_resource(broker_doc("default", "ns")), parse_resource(present), parse_resource(absent)],
        ControllerConfig(),
    )
    ok = desired.statuses[ResourceKey("EventType", "ns", present["metadata"]["name"])]
    missing = desired.statuses[ResourceKey("EventType", "ns", absent["metadata"]["name"])]
    assert ok.ready
    assert missing.condition("ReferenceExists").reason == "ResourceDoesNotExist"


def test_the_registry_records_at_most_the_limit_per_addressable_and_in_all_and_counts_the_rest() -> None:
    metrics = EventTypeMetrics(CollectorRegistry())
    registry = EventTypeRegistry(
        "unused:9092", "unused", EventTypeLimits(per_addressable=3, total=5), metrics
    )
    other = INGRESS.model_copy(update={"id": "Broker/ns/other", "name": "other"})
    for i in range(10):
        registry.observe(INGRESS, _event(f"t{i}", "/s"))
    registry.observe(INGRESS, _event("t0", "/s"))  # seen already: neither queued nor refused
    for i in range(4):
        registry.observe(other, _event(f"o{i}", "/s"))
    queued = [registry.queue.get_nowait() for _ in range(registry.queue.qsize())]
    assert [s.type for s in queued] == ["t0", "t1", "t2", "o0", "o1"]  # 3 at the first, the total at 5
    assert metrics.registry.get_sample_value("keventing_eventtypes_skipped_total", {"reason": "limit"}) == 9


def test_planning_refuses_sightings_beyond_what_the_store_holds_for_an_addressable() -> None:
    stored = {}
    for i in range(2):
        existing = auto_event_type(_sighting(f"stored.{i}"))
        stored[str(existing.key)] = orjson.dumps(existing.to_document(with_status=False))
    wanted, refused = plan_event_types([_sighting("new.0"), _sighting("new.1")], stored, per_addressable=3)
    assert [e.spec.type for e in wanted] == ["new.0"]
    assert [s.type for s in refused] == ["new.1"]
    assert plan_event_types([_sighting("new.0")], stored, per_addressable=None)[1] == []


V1BETA2_DOC = {
    "apiVersion": "eventing.knative.dev/v1beta2",
    "kind": "EventType",
    "metadata": {"name": "orders", "namespace": "ns"},
    "spec": {"type": "order.created", "source": "/shop", "schema": "https://s/x", "broker": "default"},
}


def test_an_event_type_converts_to_v1beta3_attributes_and_back_as_knative_does() -> None:
    up = convert_document(V1BETA2_DOC, "eventing.knative.dev/v1beta3")
    assert up["apiVersion"] == "eventing.knative.dev/v1beta3"
    assert up["spec"] == {
        "attributes": [
            {"name": "type", "value": "order.created", "required": True},
            {"name": "source", "value": "/shop", "required": True},
            {"name": "dataschema", "value": "https://s/x", "required": False},
        ],
        # The deprecated broker becomes a reference.
        "reference": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"},
    }
    down = convert_document(up, "eventing.knative.dev/v1beta2")
    assert down["spec"] == {
        "type": "order.created",
        "source": "/shop",
        "schema": "https://s/x",
        "reference": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"},
    }
    # Attributes the older versions have no field for are dropped going down, as in Knative.
    extra = copy.deepcopy(up)
    extra["spec"]["attributes"].append({"name": "region", "value": "{region}"})
    assert convert_document(extra, "eventing.knative.dev/v1beta1")["spec"]["type"] == "order.created"
    assert "attributes" not in convert_document(extra, "eventing.knative.dev/v1beta1")["spec"]
    with pytest.raises(ValueError, match="v9"):
        convert_document(up, "eventing.knative.dev/v9")


def test_every_version_of_an_event_type_reads_as_the_same_type_and_source() -> None:
    for version in ("v1beta1", "v1beta2", "v1beta3"):
        parsed = parse_resource(convert_document(V1BETA2_DOC, f"eventing.knative.dev/{version}"))
        assert (parsed.spec.type, parsed.spec.source) == ("order.created", "/shop"), version
    no_type = convert_document(V1BETA2_DOC, "eventing.knative.dev/v1beta3")
    no_type["spec"]["attributes"] = [{"name": "source", "value": "/shop"}]
    with pytest.raises(ResourceInvalid, match='spec.attributes: an attribute named "type"'):
        parse_resource(no_type)
