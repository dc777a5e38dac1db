"""KafkaSource: records become Knative's CloudEvents; CloudEvent records pass through; the egress it gets."""

from __future__ import annotations

import asyncio
import struct

import pytest
from aiokafka import ConsumerRecord
from helpers import broker_doc, kafka_source_doc, sink_ref

from controller.reconciler import ControllerConfig, reconcile
from dispatcher.decode import record_decoder
from dispatcher.kafkasource import read_key, record_to_event
from dispatcher.manager import Running
from keventing.contract import Egress
from keventing.ownership import owned_slots, partition_for
from keventing.resources import ResourceInvalid, ResourceKey, parse_resource
from keventing.resources.sources import KAFKA_SOURCE_MAX_CONSUMERS

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


def test_kafka_source_consumers_are_run_by_the_dispatcher_and_reported_in_its_status() -> None:
    source = parse_resource(kafka_source_doc("s", "ns", "k:9092", ["t"], {"uri": "http://sink"}, consumers=3))
    assert source.warnings() == []  # applied, nothing to warn about
    desired = reconcile([source], CONFIG)
    status = desired.statuses[ResourceKey("KafkaSource", "ns", "s")]
    assert status.consumers == 3
    assert "3 consumer(s)" in (status.condition("Deployed").message or "")
    assert desired.contract["KafkaSource/ns/s"].egress.consumers == 3


def test_kafka_source_without_consumers_has_knatives_one() -> None:
    source = parse_resource(kafka_source_doc("s", "ns", "k:9092", ["t"], {"uri": "http://sink"}))
    desired = reconcile([source], CONFIG)
    assert desired.statuses[ResourceKey("KafkaSource", "ns", "s")].consumers == 1
    assert desired.contract["KafkaSource/ns/s"].egress.consumers == 1


def test_kafka_source_scaled_to_zero_is_ready_and_runs_no_consumer() -> None:
    # Knative's too: spec.consumers 0 (kubectl scale --replicas=0, or KEDA) is a valid, Ready source.
    source = parse_resource(kafka_source_doc("s", "ns", "k:9092", ["t"], {"uri": "http://sink"}, consumers=0))
    desired = reconcile([source], CONFIG)
    status = desired.statuses[ResourceKey("KafkaSource", "ns", "s")]
    assert status.ready and status.consumers == 0
    assert "0 consumer(s)" in (status.condition("Deployed").message or "")
    egress = desired.contract["KafkaSource/ns/s"].egress
    assert egress is not None and egress.consumers == 0
    everything = frozenset(range(12))
    assert owned_slots("KafkaSource/ns/s", egress.consumers, 12, everything) == []  # no dispatcher runs one


def _round_robin(partitions: int, replicas: int) -> list[frozenset[int]]:
    """What Kafka's round-robin assignor gives each of ``replicas`` members of the assignment group."""
    return [frozenset(p for p in range(partitions) if p % replicas == r) for r in range(replicas)]


@pytest.mark.parametrize(
    ("consumers", "replicas"), [(1, 1), (3, 1), (3, 2), (3, 3), (7, 3), (12, 4), (2, 5), (30, 4), (100, 12)]
)
def test_kafka_source_consumers_are_run_exactly_once_between_the_dispatcher_replicas(
    consumers: int, replicas: int
) -> None:
    partitions = 12
    shares = [
        owned_slots("KafkaSource/ns/s", consumers, partitions, owned)
        for owned in _round_robin(partitions, replicas)
    ]
    assert sorted(slot for share in shares for slot in share) == list(range(consumers))
    if consumers <= partitions:  # consecutive slots on consecutive partitions: an even spread
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_kafka_source_consumers_all_run_on_a_lone_dispatcher_and_none_before_it_owns_anything() -> None:
    everything = frozenset(range(12))
    assert owned_slots("KafkaSource/ns/s", 5, 12, everything) == [0, 1, 2, 3, 4]
    assert owned_slots("KafkaSource/ns/s", 5, 12, frozenset()) == []
    assert owned_slots("KafkaSource/ns/s", 5, 0, everything) == []  # the topic not known yet


def test_kafka_source_consumers_start_on_different_partitions_for_different_sources() -> None:
    firsts = {partition_for(f"KafkaSource/ns/s{i}", 12) for i in range(50)}
    assert len(firsts) > 6  # slot 0 of every source is not on one replica


@pytest.mark.parametrize("consumers", [-1, KAFKA_SOURCE_MAX_CONSUMERS + 1])
def test_kafka_source_with_consumers_out_of_bounds_is_invalid(consumers: int) -> None:
    document = kafka_source_doc("s", "ns", "k:9092", ["t"], {"uri": "http://sink"}, consumers=consumers)
    with pytest.raises(ResourceInvalid, match="spec.consumers") as raised:
        parse_resource(document)
    assert f"got {consumers}" in str(raised.value)


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


class _Member:
    """Stands in for an EgressConsumer: it runs until cancelled, and says whether it is running."""

    def __init__(self, live: set[_Member]) -> None:
        self.live = live

    async def run(self) -> None:
        self.live.add(self)
        try:
            await asyncio.Event().wait()
        finally:
            self.live.discard(self)


def test_a_new_share_of_consumers_starts_and_stops_only_the_members_that_changed() -> None:
    async def scenario() -> None:
        live: set[_Member] = set()
        egress = Egress(
            id="KafkaSource/ns/s",
            kind="KafkaSource",
            namespace="ns",
            name="s",
            uid="u",
            topics=("t",),
            consumer_group="g",
            consumers=4,
        )
        running = Running(egress, lambda: _Member(live))
        await running.place([0, 1, 2])
        await asyncio.sleep(0)
        assert len(live) == 3
        kept = {slot: running.members[slot][0] for slot in (1, 2)}
        await running.place([1, 2, 3])  # slot 0 went to another dispatcher, slot 3 came here
        await asyncio.sleep(0)
        assert sorted(running.members) == [1, 2, 3]
        assert all(running.members[slot][0] is member for slot, member in kept.items())  # undisturbed
        assert live == {member for member, _ in running.members.values()}
        await running.stop()
        assert live == set() and running.members == {}

    asyncio.run(scenario())
