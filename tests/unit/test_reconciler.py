"""The reconciler is a pure function: resources in, topics + contract + statuses out."""

from __future__ import annotations

from helpers import broker_doc, trigger_doc

from controller.reconciler import ControllerConfig, reconcile
from keventing.resources import ResourceKey, parse_resource

CONFIG = ControllerConfig(ingress_url="http://localhost:8080")


def _reconcile(*documents: dict, topic_errors: dict | None = None):
    return reconcile([parse_resource(d) for d in documents], CONFIG, topic_errors)


def test_broker_gets_knative_topic_address_and_ingress() -> None:
    desired = _reconcile(broker_doc("default", "ns1"))
    topic = desired.topics["knative-broker-ns1-default"]
    assert (topic.partitions, topic.replication_factor) == (10, 1)
    status = desired.statuses[ResourceKey("Broker", "ns1", "default")]
    assert status.ready
    assert status.address.url == "http://localhost:8080/ns1/default"
    ingress = desired.contract["Broker/ns1/default"].ingress
    assert ingress.path == "/ns1/default"
    assert ingress.topic == "knative-broker-ns1-default"


def test_broker_config_map_sets_partitions_and_replication() -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "my-config", "namespace": "ns1"},
        "data": {"default.topic.partitions": "4", "default.topic.replication.factor": "1"},
    }
    broker = broker_doc("b", "ns1", config={"apiVersion": "v1", "kind": "ConfigMap", "name": "my-config"})
    topic = _reconcile(config_map, broker).topics["knative-broker-ns1-b"]
    assert topic.partitions == 4


def test_broker_with_missing_config_map_is_not_ready() -> None:
    broker = broker_doc("b", "ns1", config={"apiVersion": "v1", "kind": "ConfigMap", "name": "absent"})
    desired = _reconcile(broker)
    ready = desired.statuses[ResourceKey("Broker", "ns1", "b")].condition("Ready")
    assert ready.status == "False"
    assert "absent" in ready.message
    assert not desired.topics and not desired.contract


def test_failed_topic_creation_makes_broker_not_ready() -> None:
    desired = _reconcile(broker_doc("b", "ns1"), topic_errors={"knative-broker-ns1-b": "no space"})
    ready = desired.statuses[ResourceKey("Broker", "ns1", "b")].condition("Ready")
    assert (ready.status, ready.reason) == ("False", "TopicCreationFailed")
    assert "Broker/ns1/b" not in desired.contract


def test_trigger_with_missing_broker_is_not_ready() -> None:
    desired = _reconcile(trigger_doc("t", "ns1", "missing", "http://sink"))
    ready = desired.statuses[ResourceKey("Trigger", "ns1", "t")].condition("Ready")
    assert (ready.status, ready.reason) == ("False", "BrokerDoesNotExist")
    assert "Trigger/ns1/t" not in desired.contract


def test_trigger_egress_uses_knative_group_and_replies_to_the_broker_topic() -> None:
    desired = _reconcile(
        broker_doc("b", "ns1"),
        trigger_doc("t", "ns1", "b", "http://sink/path", filter={"attributes": {"type": "x"}}),
    )
    status = desired.statuses[ResourceKey("Trigger", "ns1", "t")]
    assert status.ready
    assert status.subscriberUri == "http://sink/path"
    egress = desired.contract["Trigger/ns1/t"].egress
    assert egress.consumer_group == "knative-trigger-ns1-t"
    assert egress.topics == ("knative-broker-ns1-b",)
    assert egress.reply.strategy == "topic" and egress.reply.topic == "knative-broker-ns1-b"
    assert egress.filter.attributes == {"type": "x"}
    assert egress.delivery_order == "unordered"


def test_trigger_delivery_replaces_broker_delivery() -> None:
    broker = broker_doc("b", "ns1", delivery={"retry": 5, "backoffPolicy": "linear", "backoffDelay": "PT2S"})
    plain = trigger_doc("plain", "ns1", "b", "http://sink")
    own = trigger_doc("own", "ns1", "b", "http://sink", delivery={"retry": 1, "timeout": "PT3S"})
    desired = _reconcile(broker, plain, own)
    inherited = desired.contract["Trigger/ns1/plain"].egress.delivery
    assert (inherited.retry, inherited.backoff_policy, inherited.backoff_delay) == (5, "linear", 2.0)
    replaced = desired.contract["Trigger/ns1/own"].egress.delivery
    assert (replaced.retry, replaced.timeout) == (1, 3.0)


def test_subscriber_ref_to_a_broker_resolves_to_its_address() -> None:
    trigger = trigger_doc("t", "ns1", "a", "unused")
    trigger["spec"]["subscriber"] = {
        "ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "b"}
    }
    desired = _reconcile(broker_doc("a", "ns1"), broker_doc("b", "ns1"), trigger)
    assert desired.statuses[ResourceKey("Trigger", "ns1", "t")].subscriberUri == "http://localhost:8080/ns1/b"


def test_dead_letter_sink_that_cannot_be_resolved_makes_trigger_not_ready() -> None:
    trigger = trigger_doc(
        "t",
        "ns1",
        "b",
        "http://sink",
        delivery={"deadLetterSink": {"ref": {"kind": "Broker", "name": "nope"}}},
    )
    ready = (
        _reconcile(broker_doc("b", "ns1"), trigger)
        .statuses[ResourceKey("Trigger", "ns1", "t")]
        .condition("Ready")
    )
    assert ready.status == "False"
    assert "nope" in ready.message


def test_ordered_annotation_reaches_the_contract() -> None:
    trigger = trigger_doc(
        "t", "ns1", "b", "http://sink", annotations={"kafka.eventing.knative.dev/delivery.order": "ordered"}
    )
    assert (
        _reconcile(broker_doc("b", "ns1"), trigger).contract["Trigger/ns1/t"].egress.delivery_order
        == "ordered"
    )


def test_stored_trigger_with_an_invalid_filter_is_not_ready_and_says_why() -> None:
    trigger = trigger_doc("t", "ns1", "b", "http://sink", filters=[{"exact": {"type": "a", "source": "b"}}])
    stored = parse_resource(trigger, semantics=False)  # as if it had been stored before a stricter validation
    desired = reconcile([parse_resource(broker_doc("b", "ns1")), stored], CONFIG)
    ready = desired.statuses[ResourceKey("Trigger", "ns1", "t")].condition("Ready")
    assert (ready.status, ready.reason) == ("False", "InvalidSpec")
    assert "spec.filters[0].exact" in ready.message
    assert "Trigger/ns1/t" not in desired.contract


def test_internal_ingress_url_is_what_the_data_plane_uses_and_users_still_see_the_public_one() -> None:
    config = ControllerConfig(
        ingress_url="http://localhost:8080", internal_ingress_url="http://receiver:8080"
    )
    trigger = trigger_doc("t", "ns1", "a", "unused", delivery={"deadLetterSink": {"uri": "http://dls/x"}})
    trigger["spec"]["subscriber"] = {
        "ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "b"}
    }
    documents = [broker_doc("a", "ns1"), broker_doc("b", "ns1"), trigger]
    desired = reconcile([parse_resource(d) for d in documents], config)
    assert desired.statuses[ResourceKey("Trigger", "ns1", "t")].subscriberUri == "http://localhost:8080/ns1/b"
    egress = desired.contract["Trigger/ns1/t"].egress
    assert egress.destination == "http://receiver:8080/ns1/b"
    assert egress.delivery.dead_letter_url == "http://dls/x"  # not on the ingress: unchanged
    assert desired.statuses[ResourceKey("Broker", "ns1", "b")].address.url == "http://localhost:8080/ns1/b"
