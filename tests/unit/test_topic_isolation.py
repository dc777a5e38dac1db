"""Tenant isolation of topics: reserved topics, other tenants' topics, the topic policy, injective names."""

from __future__ import annotations

import asyncio

import pytest
from helpers import broker_doc, kafka_channel_doc, kafka_sink_doc, kafka_source_doc, trigger_doc
from prometheus_client import CollectorRegistry

from controller.context import Published
from controller.reconciler import ControllerConfig, Desired, reconcile
from keventing import naming
from keventing.contract import Egress, Ingress, Reply
from keventing.resources import ResourceInvalid, ResourceKey, parse_resource
from keventing.topics import TopicPolicy, egress_reserved_reason, reserved_reason
from receiver.ingress import IngressHandler, IngressTable
from receiver.metrics import IngressMetrics

CONFIG = ControllerConfig(ingress_url="http://localhost:8080")
RESERVED = [
    "keventing.contract",
    "keventing.resources",
    "keventing.status",
    "keventing.source-reports",
    "keventing.source-assignments",
    "keventing.dispatcher-assignments",
    "keventing.topics",
    "keventing_contract",  # Kafka treats '.' and '_' alike
    "__consumer_offsets",
    "__transaction_state",
    "other-instance.contract",
]


def _sink(topic: str, namespace: str = "ns", **spec: object) -> dict:
    return kafka_sink_doc("s", namespace, topic, numPartitions=1, replicationFactor=1, **spec)


def _source(topics: list[str], namespace: str = "ns", **spec: object) -> dict:
    return kafka_source_doc("k", namespace, "localhost:9092", topics, {"uri": "http://sink"}, **spec)


def _reconcile(
    *documents: dict, config: ControllerConfig = CONFIG, published: Published | None = None
) -> Desired:
    return reconcile([parse_resource(d) for d in documents], config, published=published)


def _refused(desired: Desired, kind: str, condition: str, namespace: str = "ns") -> tuple[str | None, str]:
    status = desired.statuses[ResourceKey(kind, namespace, "s" if kind == "KafkaSink" else "k")]
    assert not status.ready
    found = status.condition(condition)
    assert found is not None and found.status == "False"
    return found.reason, found.message or ""


# ---------------------------------------------------------------------------------- reserved topics


@pytest.mark.parametrize("topic", RESERVED)
def test_kafka_sink_on_a_reserved_topic_is_not_ready_and_gets_no_topic_or_ingress(topic: str) -> None:
    desired = _reconcile(_sink(topic))
    reason, message = _refused(desired, "KafkaSink", "TopicReady")
    assert reason == "TopicReserved" and "reserved" in message
    assert topic not in desired.topics
    assert "KafkaSink/ns/s" not in desired.contract


@pytest.mark.parametrize("topic", RESERVED)
def test_kafka_source_on_a_reserved_topic_is_not_ready_and_gets_no_egress(topic: str) -> None:
    desired = _reconcile(_source(["fine", topic]))
    reason, message = _refused(desired, "KafkaSource", "Deployed")
    assert reason == "TopicReserved" and topic in message
    assert "KafkaSource/ns/k" not in desired.contract


def test_the_reserved_topics_follow_the_instance_name() -> None:
    assert reserved_reason("prod.contract", "prod") is not None
    assert reserved_reason("prod.anything", "prod") is not None
    assert reserved_reason("keventing.anything", "prod") is None
    assert reserved_reason("orders", "prod") is None


# ------------------------------------------------------------------------------ other tenants' topics


def test_kafka_sink_may_not_write_to_another_namespace_broker_topic() -> None:
    topic = naming.broker_topic("victim", "default")
    desired = _reconcile(broker_doc("default", "victim"), _sink(topic, "attacker"))
    reason, message = _refused(desired, "KafkaSink", "TopicReady", "attacker")
    assert reason == "TopicNotAllowed" and "namespace attacker" in message
    assert "KafkaSink/attacker/s" not in desired.contract


def test_kafka_source_may_not_read_another_namespace_channel_topic() -> None:
    topic = naming.channel_topic("victim", "orders")
    desired = _reconcile(kafka_channel_doc("orders", "victim"), _source([topic], "attacker"))
    reason, _ = _refused(desired, "KafkaSource", "Deployed", "attacker")
    assert reason == "TopicNotAllowed"


def test_a_broker_topic_name_is_refused_before_that_broker_exists() -> None:
    desired = _reconcile(_sink(naming.broker_topic("later", "b"), "attacker"))
    assert _refused(desired, "KafkaSink", "TopicReady", "attacker")[0] == "TopicNotAllowed"


def test_kafka_source_may_read_its_own_namespace_broker_topic() -> None:
    desired = _reconcile(broker_doc("default", "ns"), _source([naming.broker_topic("ns", "default")]))
    assert desired.statuses[ResourceKey("KafkaSource", "ns", "k")].ready


def test_a_topic_keventing_created_for_another_namespace_is_refused() -> None:
    published = Published(topic_owners={"orders": "KafkaSink/victim/archive"})
    desired = _reconcile(_source(["orders"], "attacker"), published=published)
    reason, message = _refused(desired, "KafkaSource", "Deployed", "attacker")
    assert reason == "TopicNotAllowed" and "victim" not in message and "archive" not in message
    same_namespace = _reconcile(_source(["orders"], "victim"), published=published)
    assert same_namespace.statuses[ResourceKey("KafkaSource", "victim", "k")].ready


@pytest.mark.parametrize(
    "group",
    ["knative-trigger-victim-t", "knative-trigger.vic-tim.t", "keventing.sources", "keventing.dispatchers"],
)
def test_kafka_source_may_not_join_keventing_consumer_groups(group: str) -> None:
    desired = _reconcile(_source(["orders"], consumerGroup=group))
    assert _refused(desired, "KafkaSource", "Deployed")[0] == "ConsumerGroupNotAllowed"


def test_user_topic_prefixes_confine_each_namespace_to_its_own_topics() -> None:
    config = ControllerConfig(topic_policy=TopicPolicy(user_prefixes=("{namespace}.", "shared-")))
    ok = _reconcile(_sink("ns.orders"), config=config)
    assert ok.statuses[ResourceKey("KafkaSink", "ns", "s")].ready
    shared = _reconcile(_source(["shared-audit"]), config=config)
    assert shared.statuses[ResourceKey("KafkaSource", "ns", "k")].ready
    other = _reconcile(_sink("other.orders"), config=config)
    reason, message = _refused(other, "KafkaSink", "TopicReady")
    assert reason == "TopicNotAllowed" and "'ns.'" in message and "KEVENTING_USER_TOPIC_PREFIXES" in message


def test_by_default_any_other_topic_is_allowed() -> None:
    desired = _reconcile(_sink("orders"), _source(["orders"]))
    assert desired.statuses[ResourceKey("KafkaSink", "ns", "s")].ready
    assert desired.statuses[ResourceKey("KafkaSource", "ns", "k")].ready


# ----------------------------------------------------------------------------------- injective names


def test_brokers_whose_knative_names_collide_get_different_topics_and_trigger_groups() -> None:
    desired = _reconcile(
        broker_doc("x-y", "a"),
        broker_doc("y", "a-x"),
        trigger_doc("x-y", "a", "x-y", "http://one"),
        trigger_doc("y", "a-x", "y", "http://two"),
    )
    first = desired.contract["Broker/a/x-y"].ingress
    second = desired.contract["Broker/a-x/y"].ingress
    assert first is not None and second is not None
    assert first.topic == "knative-broker-a-x-y"  # Knative's name where it is unambiguous
    assert second.topic == "knative-broker.a-x.y"
    one, two = desired.contract["Trigger/a/x-y"].egress, desired.contract["Trigger/a-x/y"].egress
    assert one is not None and two is not None
    assert (one.consumer_group, two.consumer_group) == ("knative-trigger-a-x-y", "knative-trigger.a-x.y")
    assert two.topics == ("knative-broker.a-x.y",) and two.reply.topic == "knative-broker.a-x.y"


@pytest.mark.parametrize(
    ("first", "second"),
    [(("a", "x-y"), ("a-x", "y")), (("a-b", "c.d"), ("a-b-c", "d")), (("ab", "c"), ("a", "b-c"))],
)
def test_topic_and_group_names_are_injective(first: tuple[str, str], second: tuple[str, str]) -> None:
    assert naming.broker_topic(*first) != naming.broker_topic(*second)
    assert naming.trigger_group(*first) != naming.trigger_group(*second)


def test_a_namespace_that_is_not_a_dns_label_is_invalid() -> None:
    with pytest.raises(ResourceInvalid, match="metadata.namespace"):
        parse_resource(broker_doc("b", "a.b"))
    desired = reconcile([parse_resource(broker_doc("b", "Bad_NS"), semantics=False)], CONFIG)
    assert not desired.statuses[ResourceKey("Broker", "Bad_NS", "b")].ready


def test_an_upgraded_broker_keeps_the_knative_topic_keventing_created_for_it() -> None:
    legacy = "knative-broker-my-app-default"
    published = Published(
        topic_owners={legacy: "Broker/my-app/default"},
        consumer_groups={"Trigger/my-app/t": "knative-trigger-my-app-t"},
    )
    desired = _reconcile(
        broker_doc("default", "my-app"),
        trigger_doc("t", "my-app", "default", "http://s"),
        published=published,
    )
    ingress = desired.contract["Broker/my-app/default"].ingress
    egress = desired.contract["Trigger/my-app/t"].egress
    assert ingress is not None and egress is not None
    assert ingress.topic == legacy and legacy in desired.topics
    assert egress.topics == (legacy,) and egress.consumer_group == "knative-trigger-my-app-t"
    status = desired.statuses[ResourceKey("Trigger", "my-app", "t")]
    assert status.annotations == {
        naming.GROUP_ANNOTATION: "knative-trigger-my-app-t",
        naming.TOPIC_ANNOTATION: legacy,
    }


def test_an_upgraded_name_gives_way_to_the_broker_whose_injective_name_it_is() -> None:
    legacy = "knative-broker-a-x-y"
    published = Published(topic_owners={legacy: "Broker/a-x/y"}, consumer_groups={"Trigger/a-x/y": legacy})
    desired = _reconcile(broker_doc("y", "a-x"), broker_doc("x-y", "a"), published=published)
    assert desired.contract["Broker/a/x-y"].ingress.topic == legacy  # type: ignore[union-attr]
    assert desired.contract["Broker/a-x/y"].ingress.topic == "knative-broker.a-x.y"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- the receiver's defence


def test_the_receiver_never_produces_to_a_reserved_topic_whatever_the_contract_says() -> None:
    produced: list[str] = []

    async def produce(ingress: Ingress, key: bytes | None, value: bytes | None, headers: list) -> object:
        produced.append(ingress.topic)
        return None

    table = IngressTable()
    handler = IngressHandler(table, produce, 1024, 1, IngressMetrics(CollectorRegistry()))
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-type": "t", "ce-source": "/s"}
    hijack = Ingress(
        id="x", kind="KafkaSink", namespace="ns", name="s", path="/x", topic="keventing.contract"
    )
    answer = asyncio.run(handler.handle(hijack, headers, b"{}"))
    assert answer.status == 403 and b"reserved" in answer.body
    fine = hijack.model_copy(update={"topic": "orders"})
    assert asyncio.run(handler.handle(fine, headers, b"{}")).status == 202
    assert produced == ["orders"]


def test_the_dispatcher_refuses_an_egress_reading_or_replying_to_a_reserved_topic() -> None:
    identity = {"id": "x", "kind": "Trigger", "namespace": "ns", "name": "t", "uid": "u"}
    fine = Egress(
        **identity, topics=("orders",), consumer_group="g", reply=Reply(strategy="topic", topic="o")
    )
    assert egress_reserved_reason(fine, "keventing") is None
    reads = fine.model_copy(update={"topics": ("orders", "keventing.resources")})
    assert "reserved" in (egress_reserved_reason(reads, "keventing") or "")
    replies = fine.model_copy(update={"reply": Reply(strategy="topic", topic="keventing.contract")})
    assert "reserved" in (egress_reserved_reason(replies, "keventing") or "")


def _external(name: str, namespace: str, topic: str) -> dict:
    document = broker_doc(name, namespace)
    document["metadata"].setdefault("annotations", {})["kafka.eventing.knative.dev/external.topic"] = topic
    return document


def test_an_external_topic_broker_uses_its_topic_and_never_creates_or_deletes_it() -> None:
    desired = _reconcile(_external("b", "ns", "orders"), trigger_doc("t", "ns", "b", "http://s"))
    status = desired.statuses[ResourceKey("Broker", "ns", "b")]
    assert status.ready and status.annotations == {naming.TOPIC_ANNOTATION: "orders"}
    assert "orders" not in desired.topics and desired.topics == {}
    assert desired.contract["Broker/ns/b"].ingress.topic == "orders"
    assert desired.contract["Trigger/ns/t"].egress.topics == ("orders",)


@pytest.mark.parametrize("topic", ["keventing.contract", "__consumer_offsets", "knative-broker.other.x"])
def test_an_external_topic_broker_may_not_name_a_reserved_or_another_tenant_s_topic(topic: str) -> None:
    desired = _reconcile(broker_doc("x", "other"), _external("b", "ns", topic))
    status = desired.statuses[ResourceKey("Broker", "ns", "b")]
    topic_ready = status.condition("TopicReady")
    assert topic_ready is not None and topic_ready.status == "False"
    assert topic_ready.reason in ("TopicReserved", "TopicNotAllowed")
    assert "Broker/ns/b" not in desired.contract


def test_an_external_topic_that_kafka_would_refuse_is_invalid() -> None:
    with pytest.raises(ResourceInvalid, match="external.topic.*not a legal topic name"):
        parse_resource(_external("b", "ns", "no spaces please"))
