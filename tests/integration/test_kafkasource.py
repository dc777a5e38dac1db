"""KafkaSource on a real Kafka: records written by an independent Kafka client reach the sink as CloudEvents."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer
from conftest import Kev, RecordingSink
from helpers import kafka_source_doc

from keventing.kafka.client import TopicSpec, admin_client, ensure_topic, group_positioned
from keventing.resources import KafkaSource


def _create_topic(kafka: str, topic: str) -> None:
    async def create() -> None:
        async with admin_client(kafka) as admin:
            await ensure_topic(admin, TopicSpec(topic, 1, 1))

    asyncio.run(create())


def _produce(kafka: str, topic: str, *records: tuple[bytes | None, bytes, list[tuple[str, bytes]]]) -> None:
    """Write (key, value, headers) records with a plain Kafka producer, as any application would."""

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka)
        await producer.start()
        try:
            for key, value, headers in records:
                await producer.send_and_wait(topic, value=value, key=key, headers=headers)
        finally:
            await producer.stop()

    asyncio.run(produce())


def _ready_and_positioned(kev: Kev, kafka: str, name: str, ns: str, topic: str) -> KafkaSource:
    """Ready, and its consumer group placed: what is produced from now on reaches the sink."""
    source = kev.wait_ready("KafkaSource", name, ns)
    assert isinstance(source, KafkaSource)

    async def positioned() -> bool:
        async with admin_client(kafka) as admin:
            try:
                return await group_positioned(admin, source.consumer_group, topic)
            except Exception:
                return False

    kev.wait_for(lambda: asyncio.run(positioned()), timeout=30, what="the KafkaSource's consumer group")
    return source


def test_plain_records_arrive_as_knative_kafka_events(
    kev: Kev, sink: RecordingSink, ns: str, kafka: str
) -> None:
    topic = f"{ns}-orders"
    _create_topic(kafka, topic)
    kev.apply(kafka_source_doc("orders", ns, kafka, [topic], {"uri": sink.url(f"{ns}/plain")}))
    _ready_and_positioned(kev, kafka, "orders", ns, topic)
    _produce(
        kafka,
        topic,
        (b"customer-1", b'{"order":1}', [("content-type", b"application/json"), ("trace-id", b"t-1")]),
        (None, b"\x00binary\xff", []),
    )
    first, second = sink.wait_for(f"{ns}/plain", 2)
    assert first.event is not None and second.event is not None
    source = f"/apis/v1/namespaces/{ns}/kafkasources/orders#{topic}"
    assert first.event.attributes["type"] == "dev.knative.kafka.event"
    assert first.event.attributes["source"] == source
    assert first.event.attributes["id"] == "partition:0/offset:0"
    assert first.event.attributes["subject"] == "partition:0#0"
    assert first.event.attributes["key"] == "customer-1"
    assert first.event.attributes["partitionkey"] == "customer-1"
    assert first.event.attributes["kafkaheadertraceid"] == "t-1"
    assert first.headers["content-type"] == "application/json"
    assert "time" in first.event.attributes
    assert first.body == b'{"order":1}'
    assert second.event.attributes["id"] == "partition:0/offset:1"
    assert "key" not in second.event.attributes
    assert second.body == b"\x00binary\xff"
    assert "prefer" not in first.headers  # KafkaSource discards replies, so it asks for none


def test_records_with_cloudevent_headers_arrive_unchanged(
    kev: Kev, sink: RecordingSink, ns: str, kafka: str
) -> None:
    topic = f"{ns}-events"
    _create_topic(kafka, topic)
    kev.apply(kafka_source_doc("events", ns, kafka, [topic], {"uri": sink.url(f"{ns}/ce")}))
    _ready_and_positioned(kev, kafka, "events", ns, topic)
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"original-1"),
        ("ce_type", b"com.example.order"),
        ("ce_source", b"https://shop.example/orders"),
        ("ce_time", b"2024-05-01T10:00:00.1234567Z"),
        ("ce_region", b"eu"),
        ("content-type", b"text/plain"),
    ]
    _produce(kafka, topic, (b"k", b"hello", headers))
    received = sink.wait_for(f"{ns}/ce", 1)[0]
    assert received.event is not None
    assert received.event.attributes == {
        "specversion": "1.0",
        "id": "original-1",
        "type": "com.example.order",
        "source": "https://shop.example/orders",
        "time": "2024-05-01T10:00:00.1234567Z",
        "region": "eu",
        "datacontenttype": "text/plain",
    }
    assert received.body == b"hello"


def test_initial_offset_earliest_reads_what_was_there_and_latest_does_not(
    kev: Kev, sink: RecordingSink, ns: str, kafka: str
) -> None:
    topic = f"{ns}-history"
    _create_topic(kafka, topic)
    _produce(kafka, topic, (None, b"before", []))
    kev.apply(
        kafka_source_doc(
            "early", ns, kafka, [topic], {"uri": sink.url(f"{ns}/early")}, initialOffset="earliest"
        ),
        kafka_source_doc("late", ns, kafka, [topic], {"uri": sink.url(f"{ns}/late")}, initialOffset="latest"),
    )
    _ready_and_positioned(kev, kafka, "early", ns, topic)
    _ready_and_positioned(kev, kafka, "late", ns, topic)
    _produce(kafka, topic, (None, b"after", []))
    assert [r.body for r in sink.wait_for(f"{ns}/early", 2)] == [b"before", b"after"]
    assert [r.body for r in sink.wait_for(f"{ns}/late", 1)] == [b"after"]
    time.sleep(0.5)
    assert len(sink.requests(f"{ns}/late")) == 1
