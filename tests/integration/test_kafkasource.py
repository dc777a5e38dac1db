"""KafkaSource on a real Kafka: records written by an independent Kafka client reach the sink as CloudEvents."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from conftest import Kev, RecordingSink
from helpers import kafka_source_doc

from kev.kafka.embedded import free_port
from kev.stack import Stack
from keventing.kafka.client import TopicSpec, admin_client, ensure_topic, group_positioned
from keventing.resources import KafkaSource


def _create_topic(kafka: str, topic: str) -> None:
    _create_partitioned_topic(kafka, topic, 1)


def _create_partitioned_topic(kafka: str, topic: str, partitions: int) -> None:
    async def create() -> None:
        async with admin_client(kafka) as admin:
            await ensure_topic(admin, TopicSpec(topic, partitions, 1))

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


def _members_partitions(kafka: str, group: str, topic: str) -> list[list[int]]:
    """What ``kafka-consumer-groups --describe --members --verbose`` shows: each member's partitions of
    ``topic``, sorted (a member without any is ``[]``)."""

    async def describe() -> list[list[int]]:
        async with admin_client(kafka) as admin:
            [response] = await admin.describe_consumer_groups([group])
        members: list[list[int]] = []
        for described in response.groups:
            if described[1] != group or described[0]:
                continue
            for member in described[5]:
                raw = member[-1]
                owned = ConsumerProtocolMemberAssignment.decode(raw).partitions() if raw else []
                members.append(sorted(tp.partition for tp in owned if tp.topic == topic))
        return sorted(members)

    try:
        return asyncio.run(describe())
    except Exception:  # a coordinator being elected: nothing to see yet
        return []


def _produce_to_partitions(kafka: str, topic: str, count: int, partitions: int, tag: str) -> None:
    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka, linger_ms=5)
        await producer.start()
        try:
            for i in range(count):
                await producer.send(topic, f"{tag}-{i}".encode(), partition=i % partitions)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(produce())


def _lag_partitions(kev: Kev, port: int, namespace: str, name: str) -> set[int]:
    """The partitions of a KafkaSource whose consumer lag the dispatcher on ``port`` reports."""
    text = kev.http.get(f"http://127.0.0.1:{port}/metrics").text
    labels = (f'namespace_name="{namespace}"', 'kind="KafkaSource"', f'name="{name}"')
    return {
        int(line.split('partition="', 1)[1].split('"', 1)[0])
        for line in text.splitlines()
        if line.startswith("keventing_consumer_lag{") and all(label in line for label in labels)
    }


def _bodies(sink: RecordingSink, path: str) -> set[bytes]:
    return {r.body for r in sink.requests(path)}


def test_consumers_are_members_of_the_group_sharing_the_partitions_and_shrink_when_lowered(
    kev: Kev, sink: RecordingSink, ns: str, kafka: str
) -> None:
    topic, path = f"{ns}-parallel", f"{ns}/parallel"
    _create_partitioned_topic(kafka, topic, 3)
    document = kafka_source_doc("parallel", ns, kafka, [topic], {"uri": sink.url(path)}, consumers=3)
    kev.apply(document)
    source = _ready_and_positioned(kev, kafka, "parallel", ns, topic)
    assert source.status.consumers == 3
    group = source.consumer_group
    # Three members, each owning one partition: the dispatcher runs all three.
    kev.wait_for(
        lambda: _members_partitions(kafka, group, topic) == [[0], [1], [2]],
        timeout=60,
        what="three members with a partition each",
    )

    _produce_to_partitions(kafka, topic, 90, 3, "three")
    wanted = {f"three-{i}".encode() for i in range(90)}
    kev.wait_for(lambda: _bodies(sink, path) >= wanted, timeout=60, what="every record, once or more")
    # Ordered (the KafkaSource default): each member delivers its partition one record after the other.
    by_partition: dict[int, list[int]] = {}
    for received in sink.requests(path):
        assert received.event is not None
        partition, offset = received.event.attributes["id"].removeprefix("partition:").split("/offset:")
        by_partition.setdefault(int(partition), []).append(int(offset))
    assert sorted(by_partition) == [0, 1, 2]
    for offsets in by_partition.values():
        assert offsets == sorted(offsets)

    # Lowered to one: the group shrinks to a single member that owns every partition, and nothing is lost.
    kev.apply({**document, "spec": {**document["spec"], "consumers": 1}})
    kev.wait_for(
        lambda: _members_partitions(kafka, group, topic) == [[0, 1, 2]],
        timeout=60,
        what="one member owning the three partitions",
    )
    kev.wait_for(
        lambda: (s := kev.get("KafkaSource", "parallel", ns)) is not None and s.status.consumers == 1,
        what="status.consumers 1",
    )
    _produce_to_partitions(kafka, topic, 30, 3, "one")
    wanted |= {f"one-{i}".encode() for i in range(30)}
    kev.wait_for(lambda: _bodies(sink, path) >= wanted, timeout=60, what="the records after shrinking")


def test_two_dispatchers_run_exactly_the_consumers_between_them_and_one_takes_all_when_the_other_stops(
    sink: RecordingSink, ns: str, kafka: str, tmp_path: Path
) -> None:
    stack = Stack.on_free_ports(kafka, tmp_path / "logs", "consumers", {})
    try:
        stack.start_all(("controller",))
        ports = {"dispatcher-a": free_port(), "dispatcher-b": free_port()}
        for name, port in ports.items():
            service = stack.service("dispatcher", port=port)
            service.name = name
            stack.start(service)
        stack.wait_ready(90)
        kev = Kev(stack)
        topic, path = f"{ns}-pair", f"{ns}/pair"
        _create_partitioned_topic(kafka, topic, 3)
        document = kafka_source_doc(
            "pair", ns, kafka, [topic], {"uri": sink.url(path)}, consumers=3, initialOffset="earliest"
        )
        kev.apply(document)
        source = _ready_and_positioned(kev, kafka, "pair", ns, topic)
        # Three members in all, not three on each dispatcher.
        kev.wait_for(
            lambda: _members_partitions(kafka, source.consumer_group, topic) == [[0], [1], [2]],
            timeout=90,
            what="three members between the two dispatchers",
        )
        # Shared out: each dispatcher reports the lag of the partitions its own members own.
        kev.wait_for(
            lambda: sorted(map(len, (_lag_partitions(kev, p, ns, "pair") for p in ports.values()))) == [1, 2],
            timeout=30,
            what="the members on both dispatchers",
        )
        assert set().union(*(_lag_partitions(kev, p, ns, "pair") for p in ports.values())) == {0, 1, 2}
        _produce_to_partitions(kafka, topic, 60, 3, "both")
        wanted = {f"both-{i}".encode() for i in range(60)}
        kev.wait_for(lambda: _bodies(sink, path) >= wanted, timeout=60, what="every record")

        stack.stop("dispatcher-b")  # its consumers move to the other dispatcher
        time.sleep(1)
        kev.wait_for(
            lambda: _members_partitions(kafka, source.consumer_group, topic) == [[0], [1], [2]],
            timeout=90,
            what="the three members, all on the remaining dispatcher",
        )
        _produce_to_partitions(kafka, topic, 30, 3, "one")
        wanted |= {f"one-{i}".encode() for i in range(30)}
        kev.wait_for(lambda: _bodies(sink, path) >= wanted, timeout=60, what="the records after the stop")
    finally:
        stack.stop_all()


def test_a_source_scaled_to_zero_runs_no_consumer_and_scaled_up_reads_what_came_since_it_was_created(
    kev: Kev, sink: RecordingSink, ns: str, kafka: str
) -> None:
    topic, path = f"{ns}-zero", f"{ns}/zero"
    _create_partitioned_topic(kafka, topic, 2)
    _produce_to_partitions(kafka, topic, 6, 2, "before")
    document = kafka_source_doc("zero", ns, kafka, [topic], {"uri": sink.url(path)}, consumers=0)
    kev.apply(document)
    # Ready with no consumer (Knative's scale to zero), its group positioned at the end by the controller.
    source = _ready_and_positioned(kev, kafka, "zero", ns, topic)
    assert source.status.consumers == 0
    _produce_to_partitions(kafka, topic, 20, 2, "paused")
    time.sleep(3)  # time enough for a consumer that should not exist to join and deliver
    assert _members_partitions(kafka, source.consumer_group, topic) == []
    assert _bodies(sink, path) == set()

    kev.apply({**document, "spec": {**document["spec"], "consumers": 1}})
    wanted = {f"paused-{i}".encode() for i in range(20)}
    kev.wait_for(lambda: _bodies(sink, path) >= wanted, timeout=60, what="what was written while at zero")
    assert not any(body.startswith(b"before-") for body in _bodies(sink, path))  # from creation, not earlier
