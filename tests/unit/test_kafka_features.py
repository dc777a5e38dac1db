"""config-kafka-features' name templates (controller.kafkafeatures): Brokers' and Channels' topics, Triggers'
consumer groups; names fixed when first used; templates that could give two tenants one name refused; a name that
is another's makes the resource not Ready; and tenant isolation holds for names that look like nothing Knative's."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from helpers import broker_doc, kafka_channel_doc, kafka_source_doc, subscription_doc, trigger_doc

from controller import kafkafeatures
from controller.context import Published
from controller.kafkafeatures import NameTemplate, TemplateInvalid
from controller.reconciler import ControllerConfig, Desired, reconcile
from keventing import naming
from keventing.resources import ResourceKey, parse_resource

CONFIG = ControllerConfig(ingress_url="http://localhost:8080")


def _features(**data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "config-kafka-features", "namespace": "knative-eventing"},
        "data": data,
    }


def _reconcile(*documents: dict[str, Any], published: Published | None = None) -> Desired:
    return reconcile([parse_resource(d) for d in documents], CONFIG, published=published)


BROKER_TEMPLATE = {"brokers.topic.template": "team.{{ .Namespace }}.{{ .Name }}.events"}
GROUP_TEMPLATE = {"triggers.consumergroup.template": "cg.{{.Namespace}}.{{.Name}}"}


def test_a_new_broker_and_its_trigger_take_the_templates_names() -> None:
    desired = _reconcile(
        _features(**BROKER_TEMPLATE, **GROUP_TEMPLATE),
        broker_doc("b", "ns1"),
        trigger_doc("t", "ns1", "b", "http://sink/"),
    )
    assert "team.ns1.b.events" in desired.topics
    assert desired.contract["Broker/ns1/b"].ingress.topic == "team.ns1.b.events"
    egress = desired.contract["Trigger/ns1/t"].egress
    assert egress.topics == ("team.ns1.b.events",) and egress.consumer_group == "cg.ns1.t"
    status = desired.statuses[ResourceKey("Trigger", "ns1", "t")]
    assert status.annotations[naming.GROUP_ANNOTATION] == "cg.ns1.t"


def test_names_are_kept_once_used_whatever_the_template_says_later() -> None:
    # Created before the templates: the Broker's topic and the Trigger's group stay what they were.
    before = Published(
        topic_owners={"knative-broker-ns1-b": "Broker/ns1/b"},
        consumer_groups={"Trigger/ns1/t": "knative-trigger-ns1-t"},
    )
    desired = _reconcile(
        _features(**BROKER_TEMPLATE, **GROUP_TEMPLATE),
        broker_doc("b", "ns1"),
        trigger_doc("t", "ns1", "b", "http://sink/"),
        published=before,
    )
    assert desired.contract["Broker/ns1/b"].ingress.topic == "knative-broker-ns1-b"
    assert desired.contract["Trigger/ns1/t"].egress.consumer_group == "knative-trigger-ns1-t"
    # Created with a template since removed: the templated names stay too.
    templated = Published(
        topic_owners={"team.ns1.b.events": "Broker/ns1/b"}, consumer_groups={"Trigger/ns1/t": "cg.ns1.t"}
    )
    desired = _reconcile(
        broker_doc("b", "ns1"), trigger_doc("t", "ns1", "b", "http://sink/"), published=templated
    )
    assert desired.contract["Broker/ns1/b"].ingress.topic == "team.ns1.b.events"
    assert desired.contract["Trigger/ns1/t"].egress.consumer_group == "cg.ns1.t"


def test_a_channel_and_its_subscription_take_the_channel_template() -> None:
    desired = _reconcile(
        _features(**{"channels.topic.template": "chan-{{ .Namespace }}-{{ .Name }}"}),
        kafka_channel_doc("c", "ns1"),
        subscription_doc("s", "ns1", "c", subscriber={"uri": "http://sink/"}),
    )
    assert desired.contract["KafkaChannel/ns1/c"].ingress.topic == "chan-ns1-c"
    assert desired.contract["Subscription/ns1/s"].egress.topics == ("chan-ns1-c",)


def test_a_template_giving_two_tenants_one_topic_leaves_the_second_not_ready() -> None:
    # Knative's own default template is ambiguous: a/x-y and a-x/y both render knative-broker-a-x-y.
    desired = _reconcile(
        _features(**{"brokers.topic.template": "knative-broker-{{ .Namespace }}-{{ .Name }}"}),
        broker_doc("x-y", "a"),
        broker_doc("y", "a-x"),
    )
    assert desired.statuses[ResourceKey("Broker", "a", "x-y")].ready
    second = desired.statuses[ResourceKey("Broker", "a-x", "y")]
    ready = second.condition("Ready")
    assert (ready.status, ready.reason) == ("False", "TopicNameTaken")
    assert "knative-broker-a-x-y is another resource's" in ready.message
    assert "Broker/a-x/y" not in desired.contract
    assert [t for t in desired.topics if t.startswith("knative-broker")] == ["knative-broker-a-x-y"]


def test_a_template_giving_two_triggers_one_group_leaves_the_second_not_ready() -> None:
    desired = _reconcile(
        _features(**{"triggers.consumergroup.template": "g-{{ .Namespace }}-{{ .Name }}"}),
        broker_doc("b", "a"),
        broker_doc("b", "a-x"),
        trigger_doc("x-y", "a", "b", "http://sink/"),
        trigger_doc("y", "a-x", "b", "http://sink/"),
    )
    assert desired.contract["Trigger/a/x-y"].egress.consumer_group == "g-a-x-y"
    ready = desired.statuses[ResourceKey("Trigger", "a-x", "y")].condition("Ready")
    assert (ready.status, ready.reason) == ("False", "ConsumerGroupNameTaken")
    assert "Trigger/a-x/y" not in desired.contract


def test_a_kafka_source_may_not_read_another_namespaces_templated_topic_or_join_its_group() -> None:
    features = _features(**BROKER_TEMPLATE, **GROUP_TEMPLATE)
    victim = [broker_doc("b", "victim"), trigger_doc("t", "victim", "b", "http://sink/")]
    topic_thief = kafka_source_doc(
        "k", "attacker", "localhost:9092", ["team.victim.b.events"], {"uri": "http://x/"}
    )
    group_thief = kafka_source_doc(
        "g", "attacker", "localhost:9092", ["attacker-own"], {"uri": "http://x/"}, consumerGroup="cg.victim.t"
    )
    desired = _reconcile(features, *victim, topic_thief, group_thief)
    for name, reason in (("k", "TopicNotAllowed"), ("g", "ConsumerGroupNotAllowed")):
        status = desired.statuses[ResourceKey("KafkaSource", "attacker", name)]
        assert not status.ready
        assert any(c.reason == reason for c in status.conditions), status.conditions
        assert f"KafkaSource/attacker/{name}" not in desired.contract


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("knative-broker-{{ .Name }}", "must name {{ .Namespace }} and {{ .Name }}"),
        ("topic-{{ .Labels.team }}-{{ .Name }}", "is not rendered by keventing"),
        ('x-{{ printf "%s" .Name }}', "is not rendered by keventing"),
        ("x-{{ .Namespace }}-{{ .Name", "unbalanced"),
    ],
)
def test_templates_keventing_will_not_render_are_refused(text: str, message: str) -> None:
    with pytest.raises(TemplateInvalid) as err:
        NameTemplate.parse(text)
    assert message in str(err.value)


def test_a_refused_template_is_logged_and_the_default_names_apply(caplog: pytest.LogCaptureFixture) -> None:
    kafkafeatures._logged.clear()
    with caplog.at_level(logging.WARNING, logger="keventing.controller.kafkafeatures"):
        desired = _reconcile(
            _features(**{"brokers.topic.template": "{{ .Name }}", "controller.autoscaler": "enabled"}),
            broker_doc("b", "ns1"),
        )
    assert desired.contract["Broker/ns1/b"].ingress.topic == naming.broker_topic("ns1", "b")
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "brokers.topic.template" in messages and "default names apply" in messages
    assert "controller.autoscaler: enabled is not applied" in messages


def test_the_uid_alone_is_unique_enough_and_the_dashed_key_spelling_is_read() -> None:
    broker = broker_doc("b", "ns1")
    broker["metadata"]["uid"] = "1234-abcd"
    desired = _reconcile(_features(**{"brokers-topic-template": "broker-{{ .UID }}"}), broker)
    assert desired.contract["Broker/ns1/b"].ingress.topic == "broker-1234-abcd"
