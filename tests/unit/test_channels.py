"""Channels, KafkaChannels, Subscriptions and destination resolution, reconciled as pure functions."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import (
    broker_doc,
    channel_doc,
    in_memory_channel_doc,
    kafka_channel_doc,
    ref,
    subscription_doc,
    trigger_doc,
)

from controller.reconciler import ControllerConfig, Desired, reconcile
from keventing.resources import ResourceInvalid, ResourceKey, kind_for, parse_resource

CONFIG = ControllerConfig(ingress_url="http://localhost:8080")


def _reconcile(*documents: dict[str, Any], topic_errors: dict[str, str] | None = None) -> Desired:
    resources = [parse_resource(d) for d in documents]
    for resource in resources:
        resource.metadata.uid = f"uid-{resource.name}"
    return reconcile(resources, CONFIG, topic_errors)


def _ready(desired: Desired, kind: str, name: str, namespace: str = "ns1") -> Any:
    return desired.statuses[ResourceKey(kind, namespace, name)].condition("Ready")


# ------------------------------------------------------------------------------------------ channels


def test_kafka_channel_gets_knative_topic_and_an_address_on_the_receiver() -> None:
    desired = _reconcile(
        kafka_channel_doc("orders", "ns1", numPartitions=3, replicationFactor=1, retentionDuration="PT1H")
    )
    topic = desired.topics["knative-messaging-kafka.ns1.orders"]
    assert (topic.partitions, topic.replication_factor) == (3, 1)
    assert topic.config["retention.ms"] == str(3600 * 1000)
    status = desired.statuses[ResourceKey("KafkaChannel", "ns1", "orders")]
    assert status.ready
    assert status.address.url == "http://localhost:8080/channels/ns1/orders"
    ingress = desired.contract["KafkaChannel/ns1/orders"].ingress
    assert (ingress.path, ingress.topic) == ("/channels/ns1/orders", "knative-messaging-kafka.ns1.orders")


def test_kafka_channel_defaults_are_knatives() -> None:
    channel = parse_resource(kafka_channel_doc("c", "ns1"))
    assert (channel.spec.numPartitions, channel.spec.replicationFactor) == (1, 1)
    assert channel.spec.retentionDuration == "PT168H"


def test_failed_topic_creation_makes_kafka_channel_not_ready_and_leaves_no_ingress() -> None:
    desired = _reconcile(
        kafka_channel_doc("c", "ns1"), topic_errors={"knative-messaging-kafka.ns1.c": "no space"}
    )
    assert _ready(desired, "KafkaChannel", "c").reason == "TopicCreationFailed"
    assert "KafkaChannel/ns1/c" not in desired.contract


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"numPartitions": 0}, "spec.numPartitions"),
        ({"replicationFactor": -1}, "spec.replicationFactor"),
        ({"retentionDuration": "7 days"}, "spec.retentionDuration"),
    ],
)
def test_invalid_kafka_channel_names_the_bad_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ResourceInvalid, match=field.replace(".", r"\.")):
        parse_resource(kafka_channel_doc("c", "ns1", **spec))


def test_channel_is_backed_by_a_kafka_channel_of_its_own_name() -> None:
    desired = _reconcile(
        channel_doc("events", "ns1", template_spec={"numPartitions": 4}, delivery={"retry": 2})
    )
    backing = desired.children[ResourceKey("KafkaChannel", "ns1", "events")]
    assert backing.spec.numPartitions == 4
    assert backing.spec.delivery.retry == 2
    assert [(r.kind, r.name, r.controller) for r in backing.metadata.ownerReferences] == [
        ("Channel", "events", True)
    ]
    status = desired.statuses[ResourceKey("Channel", "ns1", "events")]
    assert status.ready
    assert status.address.url == "http://localhost:8080/channels/ns1/events"
    assert status.channel.kind == "KafkaChannel" and status.channel.name == "events"
    assert desired.topics["knative-messaging-kafka.ns1.events"].partitions == 4


@pytest.mark.parametrize(
    ("template_kind", "backing", "topic"),
    [
        ("InMemoryChannel", "InMemoryChannel", "knative-messaging-inmemory.ns1.c"),
        (None, "KafkaChannel", "knative-messaging-kafka.ns1.c"),
    ],
)
def test_a_channel_is_backed_by_the_kind_its_template_names_on_a_topic_of_its_own(
    template_kind: str | None, backing: str, topic: str
) -> None:
    desired = _reconcile(channel_doc("c", "ns1", template_kind=template_kind))
    assert set(desired.children) == {ResourceKey(backing, "ns1", "c")}
    assert topic in desired.topics
    status = desired.statuses[ResourceKey("Channel", "ns1", "c")]
    assert status.channel.kind == backing and status.channel.name == "c"
    assert _ready(desired, "Channel", "c").status == "True"


def test_channel_template_of_another_kind_is_rejected() -> None:
    with pytest.raises(ResourceInvalid, match="NatssChannel"):
        parse_resource(channel_doc("c", "ns1", template_kind="NatssChannel"))


def test_channel_does_not_take_over_a_kafka_channel_it_does_not_own() -> None:
    desired = _reconcile(kafka_channel_doc("shared", "ns1"), channel_doc("shared", "ns1"))
    assert ResourceKey("KafkaChannel", "ns1", "shared") not in desired.children
    ready = _ready(desired, "Channel", "shared")
    assert ready.status == "False"
    assert "not owned by Channel" in ready.message
    assert _ready(desired, "KafkaChannel", "shared").status == "True"


def test_channel_with_unresolvable_dead_letter_sink_is_not_ready() -> None:
    desired = _reconcile(channel_doc("c", "ns1", delivery={"deadLetterSink": ref("Broker", "absent")}))
    ready = _ready(desired, "Channel", "c")
    assert ready.status == "False"
    assert 'Broker "absent"' in ready.message


# ------------------------------------------------------------------------------------- subscriptions


def test_subscription_egress_reads_the_channel_topic_in_its_own_knative_group() -> None:
    desired = _reconcile(
        broker_doc("b", "ns1"),
        kafka_channel_doc("c", "ns1"),
        subscription_doc("s", "ns1", "c", subscriber={"uri": "http://sink/s"}, reply=ref("Broker", "b")),
    )
    status = desired.statuses[ResourceKey("Subscription", "ns1", "s")]
    assert status.ready
    assert status.physicalSubscription.subscriberUri == "http://sink/s"
    assert status.physicalSubscription.replyUri == "http://localhost:8080/ns1/b"
    egress = desired.contract["Subscription/ns1/s"].egress
    assert egress.topics == ("knative-messaging-kafka.ns1.c",)
    assert egress.consumer_group == "kafka.ns1.c.uid-s"
    assert egress.destination == "http://sink/s"
    assert (egress.reply.strategy, egress.reply.url) == ("url", "http://localhost:8080/ns1/b")
    assert egress.delivery_order == "ordered"
    assert egress.delivery.retry == 0


def test_subscription_without_reply_discards_replies() -> None:
    desired = _reconcile(
        kafka_channel_doc("c", "ns1"), subscription_doc("s", "ns1", "c", subscriber={"uri": "http://sink"})
    )
    assert desired.contract["Subscription/ns1/s"].egress.reply.strategy == "discard"


def test_subscription_with_only_a_reply_forwards_events_to_it() -> None:
    desired = _reconcile(
        kafka_channel_doc("c", "ns1"), subscription_doc("s", "ns1", "c", reply={"uri": "http://next"})
    )
    egress = desired.contract["Subscription/ns1/s"].egress
    assert egress.destination is None
    assert (egress.reply.strategy, egress.reply.url) == ("url", "http://next")


def test_subscription_needs_a_subscriber_or_a_reply() -> None:
    with pytest.raises(ResourceInvalid, match="at least one of"):
        parse_resource(subscription_doc("s", "ns1", "c", subscriber={}))


def test_subscription_to_a_channel_reads_its_backing_kafka_channel() -> None:
    desired = _reconcile(
        channel_doc("c", "ns1", delivery={"retry": 5, "backoffDelay": "PT2S"}),
        subscription_doc(
            "s", "ns1", "c", "Channel", subscriber={"uri": "http://sink"}, delivery={"retry": 1}
        ),
    )
    egress = desired.contract["Subscription/ns1/s"].egress
    assert egress.topics == ("knative-messaging-kafka.ns1.c",)
    # The subscription's delivery wins field by field over its channel's.
    assert (egress.delivery.retry, egress.delivery.backoff_delay) == (1, 2.0)
    for kind in ("Channel", "KafkaChannel"):
        subscribers = desired.statuses[ResourceKey(kind, "ns1", "c")].subscribers
        assert [(s.uid, s.ready) for s in subscribers] == [("uid-s", "True")]


def test_unordered_annotation_reaches_the_subscription_egress() -> None:
    subscription = subscription_doc(
        "s",
        "ns1",
        "c",
        subscriber={"uri": "http://sink"},
        annotations={"kafka.eventing.knative.dev/delivery.order": "unordered"},
    )
    desired = _reconcile(kafka_channel_doc("c", "ns1"), subscription)
    assert desired.contract["Subscription/ns1/s"].egress.delivery_order == "unordered"


def test_subscription_with_an_unknown_delivery_order_is_rejected() -> None:
    subscription = subscription_doc(
        "s",
        "ns1",
        "c",
        subscriber={"uri": "http://sink"},
        annotations={"kafka.eventing.knative.dev/delivery.order": "random"},
    )
    with pytest.raises(ResourceInvalid, match="delivery.order"):
        parse_resource(subscription)


def test_subscription_to_a_missing_channel_is_not_ready_until_it_appears() -> None:
    subscription = subscription_doc("s", "ns1", "later", subscriber={"uri": "http://sink"})
    ready = _ready(_reconcile(subscription), "Subscription", "s")
    assert (ready.status, ready.reason) == ("False", "ChannelReferenceFailed")
    assert 'KafkaChannel "later" in namespace "ns1" does not exist' in ready.message
    assert (
        _ready(_reconcile(subscription, kafka_channel_doc("later", "ns1")), "Subscription", "s").status
        == "True"
    )


def test_subscription_with_a_missing_subscriber_ref_says_which_and_why() -> None:
    desired = _reconcile(
        kafka_channel_doc("c", "ns1"), subscription_doc("s", "ns1", "c", subscriber=ref("Broker", "nope"))
    )
    ready = _ready(desired, "Subscription", "s")
    assert (ready.status, ready.reason) == ("False", "SubscriberResolveFailed")
    assert 'Broker "nope" in namespace "ns1" does not exist' in ready.message
    assert "Subscription/ns1/s" not in desired.contract


def test_subscription_on_a_not_ready_channel_is_not_ready() -> None:
    desired = _reconcile(
        kafka_channel_doc("c", "ns1"),
        subscription_doc("s", "ns1", "c", subscriber={"uri": "http://sink"}),
        topic_errors={"knative-messaging-kafka.ns1.c": "boom"},
    )
    ready = _ready(desired, "Subscription", "s")
    assert (ready.status, ready.reason) == ("False", "ChannelNotReady")
    assert "boom" in ready.message


# ------------------------------------------------------------------------------------- destinations


def test_uri_next_to_a_ref_is_resolved_against_the_refs_address() -> None:
    trigger = trigger_doc(
        "t", "ns1", "b", "unused", subscriber={**ref("KafkaChannel", "c"), "uri": "/other/path"}
    )
    desired = _reconcile(broker_doc("b", "ns1"), kafka_channel_doc("c", "ns1"), trigger)
    assert (
        desired.statuses[ResourceKey("Trigger", "ns1", "t")].subscriberUri
        == "http://localhost:8080/other/path"
    )


def test_absolute_uri_next_to_a_ref_is_rejected() -> None:
    trigger = trigger_doc("t", "ns1", "b", "unused", subscriber={**ref("Broker", "b"), "uri": "http://x/y"})
    with pytest.raises(ResourceInvalid, match=r"spec\.subscriber\.uri"):
        parse_resource(trigger)


@pytest.mark.parametrize(
    ("kind", "path"),
    [("Channel", "channels"), ("KafkaChannel", "channels"), ("InMemoryChannel", "inmemorychannels")],
)
def test_refs_to_channels_resolve_to_their_address(kind: str, path: str) -> None:
    documents = {
        "Channel": channel_doc,
        "KafkaChannel": kafka_channel_doc,
        "InMemoryChannel": in_memory_channel_doc,
    }
    trigger = trigger_doc("t", "ns1", "b", "unused", subscriber=ref(kind, "c"))
    desired = _reconcile(broker_doc("b", "ns1"), documents[kind]("c", "ns1"), trigger)
    assert desired.statuses[ResourceKey("Trigger", "ns1", "t")].subscriberUri == (
        f"http://localhost:8080/{path}/ns1/c"
    )


def test_an_in_memory_channel_is_a_durable_topic_with_an_ingress_and_subscribers() -> None:
    desired = _reconcile(
        in_memory_channel_doc("c", "ns1", delivery={"retry": 2}),
        # A KafkaChannel of the same name is another channel: its own topic, path and subscribers.
        kafka_channel_doc("c", "ns1"),
        subscription_doc("s", "ns1", "c", channel_kind="InMemoryChannel", subscriber={"uri": "http://sink/"}),
    )
    topic = desired.topics["knative-messaging-inmemory.ns1.c"]
    assert (topic.partitions, topic.replication_factor) == (1, 1)
    assert "knative-messaging-kafka.ns1.c" in desired.topics
    status = desired.statuses[ResourceKey("InMemoryChannel", "ns1", "c")]
    assert status.ready
    assert status.address.url == "http://localhost:8080/inmemorychannels/ns1/c"
    assert [s.ready for s in status.subscribers] == ["True"]
    assert desired.statuses[ResourceKey("KafkaChannel", "ns1", "c")].subscribers == []
    ingress = desired.contract["InMemoryChannel/ns1/c"].ingress
    assert (ingress.path, ingress.topic) == ("/inmemorychannels/ns1/c", topic.name)
    egress = desired.contract["Subscription/ns1/s"].egress
    assert egress.topics == (topic.name,)
    assert egress.delivery.retry == 2  # the channel's delivery, as for a KafkaChannel


def test_a_subscription_to_a_missing_in_memory_channel_is_not_ready() -> None:
    desired = _reconcile(
        kafka_channel_doc("c", "ns1"),
        subscription_doc("s", "ns1", "c", channel_kind="InMemoryChannel", subscriber={"uri": "http://sink/"}),
    )
    ready = desired.statuses[ResourceKey("Subscription", "ns1", "s")].condition("Ready")
    assert (ready.status, ready.reason) == ("False", "ChannelReferenceFailed")
    assert 'InMemoryChannel "c" in namespace "ns1" does not exist' in ready.message


def test_ref_to_a_kind_keventing_cannot_address_says_to_use_a_uri() -> None:
    service = {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "display"}}
    desired = _reconcile(broker_doc("b", "ns1"), trigger_doc("t", "ns1", "b", "unused", subscriber=service))
    ready = _ready(desired, "Trigger", "t")
    assert ready.status == "False"
    assert "Service is not a kind keventing can address" in ready.message
    assert "use uri" in ready.message


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("ch", "Channel"),
        ("channels", "Channel"),
        ("kc", "KafkaChannel"),
        ("kafkachannels.messaging.knative.dev", "KafkaChannel"),
        ("sub", "Subscription"),
        ("subscriptions", "Subscription"),
        ("sequence", "Sequence"),
        ("parallels", "Parallel"),
    ],
)
def test_messaging_and_flows_kinds_are_named_as_kubectl_names_them(name: str, kind: str) -> None:
    assert kind_for(name).KIND == kind
