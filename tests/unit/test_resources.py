"""Knative YAML reads unchanged; invalid resources are rejected with the bad field named."""

from __future__ import annotations

import pytest
from helpers import broker_doc, trigger_doc

from keventing.resources import ResourceInvalid, UnknownKind, kind_for, parse_resource


def test_knative_broker_yaml_with_class_annotation_and_config_parses() -> None:
    document = broker_doc("default", "default", config={"apiVersion": "v1", "kind": "ConfigMap", "name": "c"})
    document["metadata"]["annotations"] = {"eventing.knative.dev/broker.class": "Kafka"}
    broker = parse_resource(document)
    assert broker.spec.config.name == "c"
    assert broker.metadata.annotations["eventing.knative.dev/broker.class"] == "Kafka"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["spec"].update(delivery={"retry": -1}), "spec.delivery.retry"),
        (lambda d: d["spec"].update(delivery={"backoffDelay": "2s"}), "spec.delivery.backoffDelay"),
        (lambda d: d["spec"].update(delivery={"backoffPolicy": "random"}), "spec.delivery.backoffPolicy"),
        (lambda d: d["spec"].update(subscriber={}), "spec.subscriber"),
        (lambda d: d["spec"].update(unknownField=1), "spec.unknownField"),
        (lambda d: d["metadata"].pop("name"), "metadata.name"),
        (
            lambda d: d["metadata"].update(
                annotations={"kafka.eventing.knative.dev/delivery.order": "random"}
            ),
            "delivery.order",
        ),
    ],
)
def test_invalid_trigger_names_the_bad_field(mutate, field: str) -> None:
    document = trigger_doc("t", "default", "b", "http://sink")
    mutate(document)
    with pytest.raises(ResourceInvalid) as err:
        parse_resource(document)
    assert field in str(err.value)


def test_wrong_api_version_is_rejected() -> None:
    document = broker_doc("b", "default")
    document["apiVersion"] = "eventing.knative.dev/v1beta1"
    with pytest.raises(ResourceInvalid, match="apiVersion"):
        parse_resource(document)


@pytest.mark.parametrize("name", ["broker", "brokers", "Broker", "brokers.eventing.knative.dev"])
def test_kinds_are_named_as_kubectl_names_them(name: str) -> None:
    assert kind_for(name).KIND == "Broker"


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(UnknownKind, match="brokers"):
        kind_for("gadgets")


def test_an_empty_spec_is_no_spec_as_kubernetes_prunes_null() -> None:
    # Knative's docs print `spec:` with only a comment under it (YAML null): a Broker with its defaults.
    document = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": "b"},
        "spec": None,
    }
    broker = parse_resource(document)
    assert broker.spec.config is None and broker.to_document()["spec"] == {}
    # A kind whose spec has required fields still says which is missing.
    trigger = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": "t"},
        "spec": None,
    }
    with pytest.raises(ResourceInvalid) as err:
        parse_resource(trigger)
    assert err.value.field == "spec"


@pytest.mark.parametrize("name", ["<broker-name>", "My-Broker", "my_broker", "-b", "b.", "a" * 254])
def test_a_name_kubernetes_refuses_is_refused(name: str) -> None:
    # A template's placeholder name would apply locally and then fail on a cluster.
    with pytest.raises(ResourceInvalid) as err:
        parse_resource(broker_doc(name, "default"))
    assert err.value.field == "metadata.name"


@pytest.mark.parametrize("name", ["b", "dev.knative.source.github.push-34cnb", "a" * 253])
def test_a_dns_subdomain_name_is_accepted(name: str) -> None:
    assert parse_resource(broker_doc(name, "default")).name == name
