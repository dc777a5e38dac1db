"""Destinations that refer to objects of kinds keventing does not serve (Services, any Addressable)."""

from __future__ import annotations

from typing import Any

from helpers import (
    broker_doc,
    kafka_channel_doc,
    ping_source_doc,
    sequence_doc,
    subscription_doc,
    trigger_doc,
)

from controller.reconciler import ControllerConfig, Desired, reconcile
from controller.resolver import ObjectRef, foreign_refs
from keventing.resources import ResourceKey, parse_resource

CONFIG = ControllerConfig(ingress_url="http://localhost:8080")
SERVICE = {"apiVersion": "v1", "kind": "Service", "name": "display"}
KSERVICE = {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "display"}


def _reconcile(*documents: dict[str, Any], addressables: dict[ObjectRef, str | None]) -> Desired:
    return reconcile([parse_resource(d) for d in documents], CONFIG, None, addressables=addressables)


def _trigger(subscriber: dict[str, Any]) -> dict[str, Any]:
    return trigger_doc("t", "ns1", "b", "unused", subscriber=subscriber)


def _status(desired: Desired) -> Any:
    return desired.statuses[ResourceKey("Trigger", "ns1", "t")]


def test_a_core_service_resolves_to_its_cluster_dns_name_with_the_relative_uri() -> None:
    service = ObjectRef("v1", "Service", "ns1", "display")
    desired = _reconcile(
        broker_doc("b", "ns1"), _trigger({"ref": SERVICE, "uri": "/path"}), addressables={service: None}
    )
    assert _status(desired).ready
    assert _status(desired).subscriberUri == "http://display.ns1.svc.cluster.local/path"


def test_an_addressable_resolves_to_its_status_address() -> None:
    kservice = ObjectRef("serving.knative.dev/v1", "Service", "ns1", "display")
    desired = _reconcile(
        broker_doc("b", "ns1"),
        _trigger({"ref": KSERVICE}),
        addressables={kservice: "http://display.ns1.example.com"},
    )
    assert _status(desired).subscriberUri == "http://display.ns1.example.com"


def test_a_missing_service_makes_the_trigger_not_ready_with_knatives_reason() -> None:
    desired = _reconcile(broker_doc("b", "ns1"), _trigger({"ref": SERVICE}), addressables={})
    condition = _status(desired).condition("SubscriberResolved")
    assert (condition.status, condition.reason) == ("False", "Unable to get the Subscriber's URI")
    assert condition.message == 'Service "display" in namespace "ns1" does not exist'
    assert not _status(desired).ready


def test_an_addressable_without_an_address_is_not_resolved() -> None:
    kservice = ObjectRef("serving.knative.dev/v1", "Service", "ns1", "display")
    desired = _reconcile(broker_doc("b", "ns1"), _trigger({"ref": KSERVICE}), addressables={kservice: None})
    message = _status(desired).condition("Ready").message
    assert message == 'Service.serving.knative.dev "display" in namespace "ns1" has no status.address.url yet'


def test_a_foreign_ref_without_an_api_version_says_so() -> None:
    desired = _reconcile(
        broker_doc("b", "ns1"), _trigger({"ref": {"kind": "Service", "name": "x"}}), addressables={}
    )
    assert "has no apiVersion" in _status(desired).condition("Ready").message


def test_a_subscription_to_a_missing_service_has_knatives_reason() -> None:
    subscription = subscription_doc("s", "ns1", "c", subscriber={"ref": SERVICE})
    desired = _reconcile(kafka_channel_doc("c", "ns1"), subscription, addressables={})
    condition = desired.statuses[ResourceKey("Subscription", "ns1", "s")].condition("ReferencesResolved")
    assert condition.reason == "SubscriberResolveFailed"
    assert "does not exist" in condition.message


def test_foreign_refs_are_found_in_every_destination_with_the_referrers_namespace() -> None:
    resources = [
        parse_resource(_trigger({"ref": SERVICE})),
        parse_resource(ping_source_doc("p", "ns2", {"ref": {**KSERVICE, "namespace": "other"}})),
        parse_resource(sequence_doc("q", "ns3", [{"ref": SERVICE}])),
        parse_resource(trigger_doc("u", "ns1", "b", "http://example.com/")),
        parse_resource(
            trigger_doc("k", "ns1", "b", "unused", subscriber={"ref": {**SERVICE, "kind": "Broker"}})
        ),
    ]
    assert foreign_refs(resources) == {
        ObjectRef("v1", "Service", "ns1", "display"),
        ObjectRef("serving.knative.dev/v1", "Service", "other", "display"),
        ObjectRef("v1", "Service", "ns3", "display"),
    }
