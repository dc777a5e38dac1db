"""KafkaSource: records become Knative's CloudEvents; CloudEvent records pass through; the egress it gets."""

from __future__ import annotations

import struct

import pytest
from aiokafka import ConsumerRecord
from helpers import broker_doc, kafka_source_doc, sink_ref

from controller.reconciler import ControllerConfig, reconcile
from dispatcher.decode import record_decoder
from dispatcher.kafkasource import read_key, record_to_event
from keventing.contract import Egress
from keventing.resources import ResourceInvalid, ResourceKey, parse_resource

CONFIG = ControllerConfig(ingress_url="http://localhost:8080")


def _record(value: bytes | None, key: bytes | None = None, headers=(), **fields) -> ConsumerRecord:
    defaults = {"topic": "orders", "partition": 2, "offset": 41, "timestamp": 1_700_000_000_123}
    defaults.update(fields)
    return ConsumerRecord(
        defaults["topic"],
        defaults["partition"],
        defaults["offset"],
        defaults["timestamp"],
        0,
        key,
        value,
        None,
        len(key or b""),
        len(value or b""),
        list(headers),
    )


def test_plain_record_becomes_a_knative_kafka_event() -> None:
    record = _record(
        b'{"order": 7}',
        key=b"customer-9",
        headers=[("Content-Type", b"Application/JSON"), ("X-Trace_Id", b"abc"), ("tenant", b"t1")],
    )
    event = record_to_event(record, "ns", "orders-source")
    assert event.attributes == {
        "specversion": "1.0",
        "id": "partition:2/offset:41",
        "source": "/apis/v1/namespaces/ns/kafkasources/orders-source#orders",
        "type": "dev.knative.kafka.event",
        "subject": "partition:2#41",
        "time": "2023-11-14T22:13:20.123Z",
        "partitionkey": "customer-9",
        "key": "customer-9",
        "datacontenttype": "application/json",
        "kafkaheaderxtraceid": "abc",
        "kafkaheadertenant": "t1",
    }
    assert event.data == b'{"order": 7}'


def test_record_without_key_or_headers_has_no_key_extensions() -> None:
    event = record_to_event(_record(b"raw bytes \x00\xff"), "ns", "s")
    assert "key" not in event.attributes and "partitionkey" not in event.attributes
    assert "datacontenttype" not in event.attributes
    assert event.data == b"raw bytes \x00\xff"


def test_binary_mode_cloudevent_record_passes_through_unchanged() -> None:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"e-1"),
        ("ce_type", b"order.created"),
        ("ce_source", b"/shop"),
        ("ce_myext", b"v"),
        ("content-type", b"application/json"),
    ]
    event = record_to_event(_record(b'{"a":1}', key=b"k", headers=headers), "ns", "s")
    assert event.attributes == {
        "specversion": "1.0",
        "id": "e-1",
        "type": "order.created",
        "source": "/shop",
        "myext": "v",
        "datacontenttype": "application/json",
    }
    assert event.data == b'{"a":1}'


def test_structured_mode_cloudevent_record_is_read_as_its_event() -> None:
    value = b'{"specversion":"1.0","id":"s-1","type":"t","source":"/s","data":{"x":1}}'
    event = record_to_event(
        _record(value, headers=[("content-type", b"application/cloudevents+json")]), "ns", "s"
    )
    assert (event.id, event.type, event.data) == ("s-1", "t", b'{"x":1}')


def test_record_with_invalid_ce_headers_becomes_a_kafka_event() -> None:
    event = record_to_event(_record(b"x", headers=[("ce_specversion", b"1.0"), ("ce_id", b"1")]), "ns", "s")
    assert event.type == "dev.knative.kafka.event"
    assert event.attributes["kafkaheaderceid"] == "1"


def test_ce_overrides_are_added_to_every_event() -> None:
    event = record_to_event(_record(b"x"), "ns", "s", ce_overrides={"team": "a"})
    assert event.attributes["team"] == "a"


@pytest.mark.parametrize(
    ("key", "key_type", "expected"),
    [
        (b"text", None, "text"),
        (b"text", "string", "text"),
        (struct.pack(">i", -42), "int", "-42"),
        (b"12345", "int", "12345"),  # not 4 bytes: read as a string, as Knative does
        (struct.pack(">f", 1.5), "float", "1.5"),
        (struct.pack(">d", 2.25), "float", "2.25"),
        (b"\x00\x01\xff", "byte-array", "AAH/"),
        (b"", None, None),
        (None, None, None),
    ],
)
def test_record_keys_are_read_by_key_type(
    key: bytes | None, key_type: str | None, expected: str | None
) -> None:
    assert read_key(key, key_type) == expected


def test_dispatcher_decodes_kafka_source_records_and_keeps_the_timestamp() -> None:
    egress = Egress(
        id="KafkaSource/ns/s",
        kind="KafkaSource",
        namespace="ns",
        name="s",
        uid="u",
        topics=("orders",),
        consumer_group="g",
        key_type="int",
    )
    event = record_decoder(egress)(_record(b"v", key=struct.pack(">i", 7)))
    assert event is not None
    assert event.attributes["key"] == "7"
    assert event.meta["timestamp"] == 1_700_000_000_123


# ---------------------------------------------------------------------------------------- reconcile


def test_kafka_source_becomes_an_ordered_egress_with_discarded_replies() -> None:
    desired = reconcile(
        [
            parse_resource(broker_doc("default", "ns")),
            parse_resource(
                kafka_source_doc(
                    "s",
                    "ns",
                    "kafka-1:9092",
                    ["orders", "payments"],
                    sink_ref("Broker", "default"),
                    initialOffset="earliest",
                    ceOverrides={"extensions": {"team": "a"}},
                    labels={"kafkasources.sources.knative.dev/key-type": "int"},
                )
            ),
        ],
        CONFIG,
    )
    status = desired.statuses[ResourceKey("KafkaSource", "ns", "s")]
    assert status.ready
    assert status.sinkUri == "http://localhost:8080/ns/default"
    assert [a.source for a in status.ceAttributes] == [
        "/apis/v1/namespaces/ns/kafkasources/s#orders",
        "/apis/v1/namespaces/ns/kafkasources/s#payments",
    ]
    egress = desired.contract["KafkaSource/ns/s"].egress
    assert egress.kind == "KafkaSource"
    assert egress.topics == ("orders", "payments")
    assert egress.connection is not None and egress.connection.bootstrap_servers == "kafka-1:9092"
    assert egress.consumer_group.startswith("knative-kafka-source-")
    assert egress.initial_offset == "earliest"
    assert egress.delivery_order == "ordered"
    assert egress.reply.strategy == "discard" and not egress.prefer_reply
    assert (egress.delivery.retry, egress.delivery.backoff_delay) == (10, 10.0)
    assert egress.key_type == "int"
    assert egress.ce_overrides == {"team": "a"}


def test_kafka_source_consumers_it_does_not_apply_are_named_in_its_status() -> None:
    document = kafka_source_doc("s", "ns", "k:9092", ["t"], {"uri": "http://sink"}, consumers=3)
    source = parse_resource(document)
    assert [w.split(":")[0] for w in source.warnings()] == ["spec.consumers"]
    desired = reconcile([source], CONFIG)
    deployed = desired.statuses[ResourceKey("KafkaSource", "ns", "s")].condition("Deployed")
    assert deployed.status == "True"
    assert "spec.consumers: 3 is not applied" in (deployed.message or "")
    one = parse_resource(kafka_source_doc("s", "ns", "k:9092", ["t"], {"uri": "http://sink"}, consumers=1))
    assert one.warnings() == []


def test_kafka_source_with_unknown_key_type_is_not_ready() -> None:
    document = kafka_source_doc(
        "s",
        "ns",
        "k:9092",
        ["t"],
        {"uri": "http://sink"},
        labels={"kafkasources.sources.knative.dev/key-type": "uuid"},
    )
    desired = reconcile([parse_resource(document)], CONFIG)
    ready = desired.statuses[ResourceKey("KafkaSource", "ns", "s")].condition("Ready")
    assert (ready.status, ready.reason) == ("False", "KeyTypeNotSupported")
    assert "KafkaSource/ns/s" not in desired.contract


def test_kafka_source_needs_topics_and_bootstrap_servers() -> None:
    with pytest.raises(ResourceInvalid) as err:
        parse_resource(kafka_source_doc("s", "ns", "k:9092", [], {"uri": "http://sink"}))
    assert err.value.field == "spec.topics"
    with pytest.raises(ResourceInvalid) as err:
        parse_resource(kafka_source_doc("s", "ns", "", ["t"], {"uri": "http://sink"}))
    assert err.value.field == "spec.bootstrapServers"


def test_a_v1_kafka_source_is_the_same_resource_as_a_v1beta1_one() -> None:
    doc = kafka_source_doc("s", "ns", "kafka-1:9092", ["orders"], sink_ref("Broker", "default"))
    v1 = parse_resource({**doc, "apiVersion": "sources.knative.dev/v1"})
    v1beta1 = parse_resource(doc)
    assert type(v1) is type(v1beta1) and v1.key == v1beta1.key
    desired = reconcile([parse_resource(broker_doc("default", "ns")), v1], CONFIG)
    assert desired.statuses[ResourceKey("KafkaSource", "ns", "s")].ready
    with pytest.raises(ResourceInvalid):
        parse_resource({**doc, "apiVersion": "sources.knative.dev/v2"})
