"""KafkaSink: its address and ingress, its content mode, and who owns its topic."""

from __future__ import annotations

import pytest
from helpers import kafka_sink_doc, ping_source_doc, sink_ref

from controller.context import Published
from controller.reconciler import ControllerConfig, reconcile
from keventing.resources import ResourceInvalid, ResourceKey, parse_resource

CONFIG = ControllerConfig(ingress_url="http://localhost:8080")


def test_kafka_sink_with_partitions_gets_its_topic_address_and_ingress() -> None:
    desired = reconcile(
        [parse_resource(kafka_sink_doc("s", "ns", "my-topic", numPartitions=3, replicationFactor=1))],
        CONFIG,
        published=Published(topic_owners={"my-topic": "KafkaSink/ns/s"}),
    )
    status = desired.statuses[ResourceKey("KafkaSink", "ns", "s")]
    assert status.ready
    assert status.address.url == "http://localhost:8080/sinks/ns/s"
    assert status.annotations == {"eventing.knative.dev/topic.owner": "kafkasink-controller"}
    assert desired.topics["my-topic"].partitions == 3
    ingress = desired.contract["KafkaSink/ns/s"].ingress
    assert (ingress.path, ingress.topic, ingress.content_mode) == ("/sinks/ns/s", "my-topic", "structured")
    assert ingress.owns_topic and not ingress.event_types


def test_kafka_sink_without_partitions_uses_an_existing_topic_it_never_deletes() -> None:
    desired = reconcile([parse_resource(kafka_sink_doc("s", "ns", "theirs", contentMode="binary"))], CONFIG)
    assert "theirs" not in desired.topics
    ingress = desired.contract["KafkaSink/ns/s"].ingress
    assert ingress.content_mode == "binary" and not ingress.owns_topic
    status = desired.statuses[ResourceKey("KafkaSink", "ns", "s")]
    assert status.condition("TopicReady").reason == "TopicExternal"


def test_kafka_sink_with_partitions_on_a_topic_keventing_did_not_create_never_owns_it() -> None:
    """The topic ledger does not say keventing created it for this sink: the sink uses it, and its contract
    entry and status say it is not the sink's (so deleting the sink leaves it, see controller.dataplane)."""
    desired = reconcile(
        [parse_resource(kafka_sink_doc("s", "ns", "existing", numPartitions=3, replicationFactor=1))], CONFIG
    )
    status = desired.statuses[ResourceKey("KafkaSink", "ns", "s")]
    assert status.ready
    assert status.condition("TopicReady").reason == "TopicExisted"
    assert status.annotations == {"eventing.knative.dev/topic.owner": "external"}
    assert not desired.contract["KafkaSink/ns/s"].ingress.owns_topic


def test_failed_topic_creation_makes_the_sink_unaddressable() -> None:
    document = kafka_sink_doc("s", "ns", "t", numPartitions=1, replicationFactor=3)
    desired = reconcile([parse_resource(document)], CONFIG, {"t": "replication factor 3 > brokers 1"})
    ready = desired.statuses[ResourceKey("KafkaSink", "ns", "s")].condition("Ready")
    assert (ready.status, ready.reason) == ("False", "TopicCreationFailed")
    assert "KafkaSink/ns/s" not in desired.contract


def test_a_source_can_send_to_a_kafka_sink() -> None:
    desired = reconcile(
        [
            parse_resource(kafka_sink_doc("s", "ns", "t", numPartitions=1, replicationFactor=1)),
            parse_resource(ping_source_doc("p", "ns", sink_ref("KafkaSink", "s"))),
        ],
        CONFIG,
    )
    assert (
        desired.statuses[ResourceKey("PingSource", "ns", "p")].sinkUri == "http://localhost:8080/sinks/ns/s"
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [({"numPartitions": 0}, "spec.numPartitions"), ({"contentMode": "batched"}, "spec.contentMode")],
)
def test_invalid_kafka_sink_is_rejected(spec: dict, field: str) -> None:
    with pytest.raises(ResourceInvalid) as err:
        parse_resource(kafka_sink_doc("s", "ns", "t", **spec))
    assert err.value.field == field
