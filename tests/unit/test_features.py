"""config-features (controller.features) and what its flags change: a Trigger's brokerRef to a Broker in another
namespace (cross-namespace-event-links) and EventType auto-creation (eventtype-auto-create)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from helpers import broker_doc, kafka_channel_doc

from controller import features
from controller.reconciler import ControllerConfig, reconcile
from keventing import naming
from keventing.resources import ResourceInvalid, ResourceKey, parse_resource

CONFIG = ControllerConfig(ingress_url="http://localhost:8080")


def _features(**data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "config-features", "namespace": "knative-eventing"},
        "data": data,
    }


def _ref_trigger(name: str, namespace: str, ref: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"brokerRef": ref, "subscriber": {"uri": "http://sink.example/"}, **spec},
    }


BROKER_REF = {
    "apiVersion": "eventing.knative.dev/v1",
    "kind": "Broker",
    "name": "shared",
    "namespace": "infra",
}


def _reconcile(*documents: dict[str, Any]):
    return reconcile([parse_resource(d) for d in documents], CONFIG)


def test_a_trigger_reads_a_broker_of_another_namespace_when_cross_namespace_event_links_is_enabled() -> None:
    desired = _reconcile(
        _features(**{"cross-namespace-event-links": "enabled"}),
        broker_doc("shared", "infra"),
        _ref_trigger("t", "team-a", BROKER_REF),
    )
    status = desired.statuses[ResourceKey("Trigger", "team-a", "t")]
    assert status.ready, status.conditions
    egress = desired.contract["Trigger/team-a/t"].egress
    assert egress is not None
    # The Broker's topic, the Trigger's own group (named for the Trigger, in its namespace), replies to the Broker.
    assert egress.topics == ("knative-broker-infra-shared",)
    assert egress.consumer_group == naming.trigger_group("team-a", "t")
    assert egress.reply.topic == "knative-broker-infra-shared"


@pytest.mark.parametrize("flag", [None, "disabled", "allowed", "yes"])
def test_without_the_flag_a_cross_namespace_trigger_is_not_ready_and_names_the_flag(flag: str | None) -> None:
    documents = [broker_doc("shared", "infra"), _ref_trigger("t", "team-a", BROKER_REF)]
    if flag is not None:
        documents.append(_features(**{"cross-namespace-event-links": flag}))
    desired = _reconcile(*documents)
    ready = desired.statuses[ResourceKey("Trigger", "team-a", "t")].condition("Ready")
    assert (ready.status, ready.reason) == ("False", "CrossNamespaceEventLinksDisabled")
    assert "cross-namespace-event-links" in ready.message and "infra/shared" in ready.message
    assert "Trigger/team-a/t" not in desired.contract


def test_a_brokerref_in_the_triggers_own_namespace_needs_no_flag() -> None:
    ref = {"kind": "Broker", "name": "b"}
    desired = _reconcile(broker_doc("b", "ns1"), _ref_trigger("t", "ns1", ref))
    assert desired.statuses[ResourceKey("Trigger", "ns1", "t")].ready
    egress = desired.contract["Trigger/ns1/t"].egress
    assert egress is not None and egress.topics == ("knative-broker-ns1-b",)


def test_a_config_features_of_another_namespace_is_not_read() -> None:
    elsewhere = _features(**{"cross-namespace-event-links": "enabled"})
    elsewhere["metadata"]["namespace"] = "team-a"
    desired = _reconcile(elsewhere, broker_doc("shared", "infra"), _ref_trigger("t", "team-a", BROKER_REF))
    assert not desired.statuses[ResourceKey("Trigger", "team-a", "t")].ready


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ({"subscriber": {"uri": "http://x/"}}, "spec", "got neither: broker, brokerRef"),
        ({"broker": "a", "brokerRef": {"kind": "Broker", "name": "b"}}, "spec", "got both"),
        ({"brokerRef": {"kind": "Channel", "name": "b"}}, "spec.brokerRef.kind", "must be Broker"),
        (
            {"brokerRef": {"kind": "Broker", "name": "b", "apiVersion": "messaging.knative.dev/v1"}},
            "spec.brokerRef.apiVersion",
            "eventing.knative.dev",
        ),
    ],
)
def test_broker_and_brokerref_are_validated(spec: dict[str, Any], path: str, message: str) -> None:
    document = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": "t", "namespace": "ns1"},
        "spec": {"subscriber": {"uri": "http://x/"}, **spec},
    }
    with pytest.raises(ResourceInvalid) as err:
        parse_resource(document).validate_semantics()
    assert err.value.field == path
    assert message in str(err.value)


@pytest.mark.parametrize(("value", "expected"), [("enabled", True), ("disabled", False), (None, True)])
def test_eventtype_auto_create_in_config_features_wins_over_the_environment(
    value: str | None, expected: bool
) -> None:
    documents = [broker_doc("b", "ns1")]
    if value is not None:
        documents.append(_features(**{"eventtype-auto-create": value}))
    config = ControllerConfig(ingress_url="http://localhost:8080", event_type_auto_create=True)
    desired = reconcile([parse_resource(d) for d in documents], config)
    ingress = desired.contract["Broker/ns1/b"].ingress
    assert ingress is not None and ingress.event_types is expected


def test_a_service_flag_the_configmap_cannot_change_is_logged_with_the_variable_that_decides(
    caplog: pytest.LogCaptureFixture,
) -> None:
    features._logged.clear()
    with caplog.at_level(logging.WARNING, logger="keventing.controller.features"):
        for _ in range(3):
            _reconcile(_features(**{"transport-encryption": "strict"}), broker_doc("b", "ns1"))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1, messages  # once, not every pass
    assert "KEVENTING_TRANSPORT_ENCRYPTION=disabled" in messages[0]
    assert "transport-encryption" in messages[0]


def test_authentication_oidc_and_the_authorization_mode_in_config_features_reach_every_ingress() -> None:
    sink_ref = {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "other"}}
    documents = [
        broker_doc("b", "ns1"),
        broker_doc("other", "ns1"),
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {"name": "t", "namespace": "ns1"},
            "spec": {"broker": "b", "subscriber": sink_ref},
        },
    ]
    on = _reconcile(
        _features(**{"authentication-oidc": "enabled", "default-authorization-mode": "deny-all"}), *documents
    )
    ingress = on.contract["Broker/ns1/b"].ingress
    assert ingress is not None and ingress.oidc is True and ingress.default_authorization_mode == "deny-all"
    assert on.statuses[ResourceKey("Broker", "ns1", "b")].address.audience == ingress.audience
    # A Trigger delivering to a Broker sends a token for the Broker's audience.
    egress = on.contract["Trigger/ns1/t"].egress
    assert (
        egress is not None and egress.destination_audience == on.contract["Broker/ns1/other"].ingress.audience
    )

    # Off in the ConfigMap, on in the environment: the ConfigMap wins, nothing asks for a token.
    config = ControllerConfig(ingress_url="http://localhost:8080", oidc=True)
    off = reconcile(
        [parse_resource(d) for d in [_features(**{"authentication-oidc": "disabled"}), *documents]], config
    )
    assert off.contract["Broker/ns1/b"].ingress.oidc is False
    assert off.statuses[ResourceKey("Broker", "ns1", "b")].address.audience is None
    assert off.contract["Trigger/ns1/t"].egress.destination_audience is None


def _cross_subscription() -> dict[str, Any]:
    return {
        "apiVersion": "messaging.knative.dev/v1",
        "kind": "Subscription",
        "metadata": {"name": "s", "namespace": "team-a"},
        "spec": {
            "channel": {
                "apiVersion": "messaging.knative.dev/v1beta1",
                "kind": "KafkaChannel",
                "name": "c",
                "namespace": "infra",
            },
            "subscriber": {"uri": "http://sink.example/"},
        },
    }


def test_a_subscription_reads_a_channel_of_another_namespace_only_with_the_flag() -> None:
    channel = kafka_channel_doc("c", "infra")
    desired = _reconcile(
        _features(**{"cross-namespace-event-links": "enabled"}), channel, _cross_subscription()
    )
    assert desired.statuses[ResourceKey("Subscription", "team-a", "s")].ready
    egress = desired.contract["Subscription/team-a/s"].egress
    assert egress is not None and egress.topics == ("knative-messaging-kafka.infra.c",)
    # The channel lists it among its subscribers.
    subscribers = desired.statuses[ResourceKey("KafkaChannel", "infra", "c")].subscribers
    assert [s.ready for s in subscribers or []] == ["True"]

    desired = _reconcile(channel, _cross_subscription())
    ready = desired.statuses[ResourceKey("Subscription", "team-a", "s")].condition("Ready")
    assert (ready.status, ready.reason) == ("False", "CrossNamespaceEventLinksDisabled")
    assert 'KafkaChannel "c" in namespace "infra"' in ready.message
    assert "Subscription/team-a/s" not in desired.contract
