"""Kubernetes API objects to resource models and back: the pure half of the Kubernetes adapter."""

from __future__ import annotations

import pytest

from controller.kubernetes.kinds import by_kind, custom_kinds
from controller.kubernetes.objects import ObjectInvalid, child_object, status_patch, to_resource
from controller.kubernetes.operator import KubernetesIndex
from keventing.resources import Broker, ResourceKey

SERVER_FIELDS = {
    "resourceVersion": "812",
    "managedFields": [{"manager": "kubectl"}],
    "finalizers": ["keventing.knative.dev/cleanup"],
}


def broker_object(name: str = "default", **annotations: str) -> dict:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": "0b7c",
            "generation": 3,
            "annotations": annotations,
            **SERVER_FIELDS,
        },
        "spec": {"delivery": {"retry": 2}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_an_api_object_becomes_its_model_without_the_api_servers_fields_or_status() -> None:
    broker = to_resource(broker_object())
    assert isinstance(broker, Broker)
    assert broker.key == ResourceKey("Broker", "shop", "default")
    assert broker.metadata.uid == "0b7c" and broker.metadata.generation == 3
    dumped = broker.model_dump()
    assert not {"resourceVersion", "managedFields", "finalizers"} & set(dumped["metadata"])
    assert broker.status.conditions == []  # the reconciler decides the status; it does not read it back


def test_an_object_the_schema_rejects_is_reported_with_its_key_and_field() -> None:
    body = broker_object()
    body["spec"] = {"delivery": {"retry": "often"}}
    with pytest.raises(ObjectInvalid) as raised:
        to_resource(body)
    assert raised.value.key == ResourceKey("Broker", "shop", "default")
    assert "retry" in str(raised.value)


def test_status_patch_is_none_when_nothing_changed_and_nulls_what_is_gone() -> None:
    current = {"observedGeneration": 1, "address": {"url": "http://x"}, "conditions": []}
    assert status_patch(dict(current), current) is None
    patch = status_patch({"observedGeneration": 2, "conditions": []}, current)
    assert patch == {"status": {"observedGeneration": 2, "conditions": [], "address": None}}


def test_a_generated_child_is_applied_without_server_assigned_metadata() -> None:
    child = to_resource(broker_object())
    document = child_object(child)
    assert not {"uid", "generation", "creationTimestamp"} & set(document["metadata"])
    assert document["metadata"]["name"] == "default"


def test_the_index_claims_brokers_by_class_and_forgets_deleted_objects() -> None:
    index = KubernetesIndex(
        lambda key, annotations: annotations.get("eventing.knative.dev/broker.class") == "Kafka"
    )
    assert index.observe(broker_object("ours", **{"eventing.knative.dev/broker.class": "Kafka"}))
    assert not index.observe(
        broker_object("theirs", **{"eventing.knative.dev/broker.class": "MTChannelBasedBroker"})
    )
    assert set(index.resources) == {ResourceKey("Broker", "shop", "ours")}
    assert not index.observe(broker_object("ours", **{"eventing.knative.dev/broker.class": "Kafka"}))
    deleting = broker_object("ours", **{"eventing.knative.dev/broker.class": "Kafka"})
    deleting["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    assert index.observe(deleting)
    assert index.resources == {}


def test_the_index_claims_unannotated_brokers_again_when_the_default_class_changes() -> None:
    default_class = ["MTChannelBasedBroker"]
    index = KubernetesIndex(
        lambda key, annotations: (
            key.kind != "Broker"
            or annotations.get("eventing.knative.dev/broker.class", default_class[0]) == "Kafka"
        )
    )
    assert not index.observe(broker_object("unannotated"))
    assert not index.observe(
        broker_object("invalid", **{"x": "y"}) | {"spec": {"delivery": {"retry": "many"}}}
    )
    assert index.resources == {} and not index.claimed(ResourceKey("Broker", "shop", "invalid"))
    assert not index.reclaim()
    default_class[0] = "Kafka"
    assert index.reclaim()
    assert set(index.resources) == {ResourceKey("Broker", "shop", "unannotated")}
    assert index.claimed(ResourceKey("Broker", "shop", "invalid"))


def test_every_custom_kind_is_served_at_knatives_group() -> None:
    groups = {api.kind: api.group for api in custom_kinds()}
    assert groups["Broker"] == "eventing.knative.dev"
    assert groups["Sequence"] == "flows.knative.dev"
    assert groups["KafkaChannel"] == "messaging.knative.dev"
    assert "ConfigMap" not in groups
    assert by_kind("PingSource").api_version == "sources.knative.dev/v1"


def test_a_warning_event_is_due_only_when_ready_turns_false_or_fails_for_a_new_reason() -> None:
    from controller.kubernetes.recorder import failure
    from keventing.resources import Condition

    def ready(status: str, reason: str | None = None) -> list[Condition]:
        return [Condition(type="Ready", status=status, reason=reason)]

    assert failure([], ready("True")) is None
    assert failure([], ready("Unknown")) is None
    assert failure([], ready("False", "BrokerDoesNotExist")) == ready("False", "BrokerDoesNotExist")[0]
    assert failure(ready("True"), ready("False", "X")) is not None
    assert failure(ready("False", "X"), ready("False", "X")) is None
    assert failure(ready("False", "X"), ready("False", "Y")) is not None
