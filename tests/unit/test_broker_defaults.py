"""config-br-defaults: a Broker's class, config reference and delivery when the Broker names none."""

from __future__ import annotations

import pytest
import yaml
from helpers import broker_doc, trigger_doc

from controller.brokerdefaults import BrokerDefaultsInvalid, broker_class, parse_defaults
from controller.reconciler import ControllerConfig, reconcile
from keventing.resources import ResourceKey, parse_resource

CONFIG = ControllerConfig(ingress_url="http://localhost:8080", system_namespace="system")


def _defaults_doc(document: dict, namespace: str = "system") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "config-br-defaults", "namespace": namespace},
        "data": {"default-br-config": yaml.safe_dump(document)},
    }


def _config_map(name: str, namespace: str, **data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def _reconcile(*documents: dict):
    return reconcile([parse_resource(d) for d in documents], CONFIG)


def test_a_namespace_default_wins_over_the_cluster_default_field_by_field() -> None:
    defaults = parse_defaults(
        _defaults_doc(
            {
                "clusterDefault": {"brokerClass": "Kafka", "delivery": {"retry": 3}},
                "namespaceDefaults": {"team": {"brokerClass": "MTChannelBasedBroker"}},
            }
        )["data"]
    )
    assert defaults.broker_class("team") == "MTChannelBasedBroker"
    assert defaults.broker_class("other") == "Kafka"
    assert defaults.delivery("team").retry == 3  # type: ignore[union-attr]
    assert broker_class({}, "team", defaults) == "MTChannelBasedBroker"
    assert broker_class({"eventing.knative.dev/broker.class": "Kafka"}, "team", defaults) == "Kafka"


def test_without_config_br_defaults_a_broker_is_kafka_class() -> None:
    assert broker_class({}, "ns1", parse_defaults({})) == "Kafka"


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ("clusterDefault: [", "is not YAML"),
        ("- a list", "must be a mapping"),
        ("clusterDefault: {delivery: {retry: 1000}}", "clusterDefault.delivery.retry"),
        ("clusterDefault: {brokerClass: [1]}", "clusterDefault.brokerClass"),
    ],
)
def test_invalid_config_br_defaults_says_what_is_wrong(text: str, wanted: str) -> None:
    with pytest.raises(BrokerDefaultsInvalid, match="config-br-defaults") as raised:
        parse_defaults({"default-br-config": text})
    assert wanted in str(raised.value)


def test_a_broker_without_config_reads_the_default_config_reference() -> None:
    desired = _reconcile(
        _defaults_doc(
            {
                "clusterDefault": {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "cfg",
                    "namespace": "system",
                }
            }
        ),
        _config_map("cfg", "system", **{"default.topic.partitions": "3"}),
        broker_doc("b", "ns1"),
    )
    assert desired.topics["knative-broker-ns1-b"].partitions == 3


def test_a_default_config_reference_to_a_missing_config_map_makes_the_broker_not_ready() -> None:
    desired = _reconcile(
        _defaults_doc({"clusterDefault": {"kind": "ConfigMap", "name": "gone", "namespace": "system"}}),
        broker_doc("b", "ns1"),
    )
    ready = desired.statuses[ResourceKey("Broker", "ns1", "b")].condition("ConfigParsed")
    assert (ready.status, ready.reason) == ("False", "ConfigMapNotFound")
    assert ready.message == 'ConfigMap "gone" in namespace "system" does not exist'


def test_the_missing_default_kafka_broker_config_leaves_the_controller_defaults() -> None:
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "kafka-broker-config", "namespace": "system"}
    desired = _reconcile(broker_doc("b", "ns1", config=ref))
    assert desired.statuses[ResourceKey("Broker", "ns1", "b")].ready
    assert desired.topics["knative-broker-ns1-b"].partitions == CONFIG.default_partitions


def test_triggers_of_a_broker_without_delivery_get_the_default_delivery() -> None:
    defaults = _defaults_doc(
        {
            "clusterDefault": {
                "delivery": {
                    "retry": 7,
                    "backoffPolicy": "linear",
                    "backoffDelay": "PT2S",
                    "deadLetterSink": {"uri": "http://dls.example/"},
                }
            }
        }
    )
    desired = _reconcile(defaults, broker_doc("b", "ns1"), trigger_doc("t", "ns1", "b", "http://sink"))
    delivery = desired.contract["Trigger/ns1/t"].egress.delivery  # type: ignore[union-attr]
    assert (delivery.retry, delivery.backoff_policy, delivery.backoff_delay) == (7, "linear", 2.0)
    assert delivery.dead_letter_url == "http://dls.example/"


def test_a_broker_s_own_delivery_wins_over_the_default() -> None:
    defaults = _defaults_doc({"clusterDefault": {"delivery": {"retry": 7}}})
    broker = broker_doc("b", "ns1", delivery={"retry": 2})
    desired = _reconcile(defaults, broker, trigger_doc("t", "ns1", "b", "http://sink"))
    assert desired.contract["Trigger/ns1/t"].egress.delivery.retry == 2  # type: ignore[union-attr]


def test_an_invalid_config_br_defaults_makes_brokers_that_rely_on_it_not_ready() -> None:
    desired = _reconcile(
        {**_defaults_doc({}), "data": {"default-br-config": "clusterDefault: ["}},
        broker_doc("relies", "ns1"),
    )
    parsed = desired.statuses[ResourceKey("Broker", "ns1", "relies")].condition("ConfigParsed")
    assert (parsed.status, parsed.reason) == ("False", "ConfigInvalid")
    assert "config-br-defaults" in parsed.message


def test_locally_a_broker_of_a_class_keventing_does_not_claim_says_so_and_gets_nothing() -> None:
    other = broker_doc("mt", "ns1")
    other["metadata"]["annotations"] = {"eventing.knative.dev/broker.class": "MTChannelBasedBroker"}
    resources = [parse_resource(d) for d in (other, trigger_doc("t", "ns1", "mt", "http://s"))]
    desired = reconcile(resources, ControllerConfig(broker_classes=frozenset({"Kafka"})))
    ready = desired.statuses[ResourceKey("Broker", "ns1", "mt")].condition("Ready")
    assert ready is not None and (ready.status, ready.reason) == ("False", "BrokerClassNotClaimed")
    assert "'MTChannelBasedBroker'" in (ready.message or "") and "KEVENTING_BROKER_CLASSES" in (
        ready.message or ""
    )
    assert desired.topics == {} and "Broker/ns1/mt" not in desired.contract
    trigger_ready = desired.statuses[ResourceKey("Trigger", "ns1", "t")].condition("Ready")
    assert trigger_ready is not None and trigger_ready.reason == "BrokerNotReady"
    # Claiming the class serves it.
    claimed = reconcile(
        resources, ControllerConfig(broker_classes=frozenset({"Kafka", "MTChannelBasedBroker"}))
    )
    assert claimed.statuses[ResourceKey("Broker", "ns1", "mt")].ready
