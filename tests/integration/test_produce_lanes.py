"""receiver.produce.PartitionLanes against a real Kafka: order, idempotent resends, refusals, renewals."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.client import ConnectionGroup
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import TopicPartition

from keventing.kafka.client import TopicSpec, admin_client, ensure_topic
from receiver.batching import BatchProducer, RetryAlone
from receiver.produce import PartitionLanes, _Produce


def run(kafka: str, body: Callable[[AIOKafkaProducer, str], Awaitable[None]], **topic_config: str) -> None:
    async def main() -> None:
        topic = f"lanes-{uuid.uuid4().hex[:8]}"
        async with admin_client(kafka) as admin:
            await ensure_topic(admin, TopicSpec(topic, 2, 1, topic_config))
        producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            await producer.partitions_for(topic)
            await body(producer, topic)
        finally:
            await producer.stop()

    asyncio.run(main())


async def values(kafka: str, tp: TopicPartition) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        got: list[bytes] = []
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(tp, timeout_ms=2000)).values():
                got.extend(record.value or b"" for record in records)
        return got
    finally:
        await consumer.stop()


def batch(producer: AIOKafkaProducer, *items: bytes):  # type: ignore[no-untyped-def]
    builder = producer.create_batch()
    for value in items:
        assert builder.append(timestamp=None, key=None, value=value, headers=[]) is not None
    return builder


def test_batches_to_a_partition_land_in_the_order_submitted(kafka: str) -> None:
    async def body(producer: AIOKafkaProducer, topic: str) -> None:
        lanes = PartitionLanes(producer.client)
        tp = TopicPartition(topic, 1)
        sent = [lanes.submit(tp, batch(producer, f"{i}a".encode(), f"{i}b".encode())) for i in range(50)]
        offsets = await asyncio.gather(*sent)
        assert offsets == [2 * i for i in range(50)]  # one in flight at a time, each after the one before
        expected = [f"{i}{half}".encode() for i in range(50) for half in "ab"]
        assert await values(kafka, tp) == expected
        assert lanes.idle()

    run(kafka, body)


def test_a_batch_sent_again_with_its_numbers_is_stored_once(kafka: str) -> None:
    # What a resend after an unanswered request does: the same bytes, the same producer id and sequence.
    async def body(producer: AIOKafkaProducer, topic: str) -> None:
        lanes = PartitionLanes(producer.client)
        tp = TopicPartition(topic, 0)
        await lanes.submit(tp, batch(producer, b"first"))
        identity = lanes._identity  # noqa: SLF001
        builder = batch(producer, b"second")
        builder._set_producer_state(identity.producer_id, identity.epoch, identity.sequences[tp])  # noqa: SLF001
        records = builder._build()  # noqa: SLF001
        leader = producer.client.cluster.leader_for_partition(tp)
        answers = [await producer.client.send(leader, _Produce(lanes._head(tp), records)) for _ in range(3)]  # noqa: SLF001
        assert {error for error, _ in answers} <= {0, 46}  # stored, or DuplicateSequenceNumber
        assert await values(kafka, tp) == [b"first", b"second"]

    run(kafka, body)


def test_a_refused_batch_leaves_the_partition_numbered_for_the_next(kafka: str) -> None:
    async def body(producer: AIOKafkaProducer, topic: str) -> None:
        lanes = PartitionLanes(producer.client)
        tp = TopicPartition(topic, 0)
        await lanes.submit(tp, batch(producer, b"before"))
        identity = lanes._identity  # noqa: SLF001
        refused = lanes.submit(tp, batch(producer, b"x" * 5000))
        after = lanes.submit(tp, batch(producer, b"after"))
        try:
            await refused
        except MessageSizeTooLargeError:
            pass
        else:
            raise AssertionError("Kafka stored a record above the topic's max.message.bytes")
        await after
        assert lanes._identity is identity  # noqa: SLF001 (no renewal was needed)
        assert await values(kafka, tp) == [b"before", b"after"]

    run(kafka, body, **{"max.message.bytes": "2000"})


def test_a_renewed_producer_id_numbers_the_next_batches_from_the_start(kafka: str) -> None:
    async def body(producer: AIOKafkaProducer, topic: str) -> None:
        lanes = PartitionLanes(producer.client)
        tp = TopicPartition(topic, 0)
        await lanes.submit(tp, batch(producer, b"one", b"two"))
        old = lanes._identity  # noqa: SLF001
        lanes._renew(old, "test")  # noqa: SLF001
        await lanes.submit(tp, batch(producer, b"three"))
        new = lanes._identity  # noqa: SLF001
        assert new.producer_id >= 0 and new.producer_id != old.producer_id
        assert new.sequences[tp] == 1
        assert await values(kafka, tp) == [b"one", b"two", b"three"]

    run(kafka, body)


def test_a_batch_its_callers_gave_up_on_before_its_turn_is_not_sent(kafka: str) -> None:
    async def body(producer: AIOKafkaProducer, topic: str) -> None:
        lanes = PartitionLanes(producer.client)
        tp = TopicPartition(topic, 0)
        first = lanes.submit(tp, batch(producer, b"kept"))
        dropped = lanes.submit(tp, batch(producer, b"given up"), abandoned=lambda: True)
        last = lanes.submit(tp, batch(producer, b"also kept"))
        await first
        await last
        assert dropped.exception() is not None
        assert await values(kafka, tp) == [b"kept", b"also kept"]

    run(kafka, body)


def test_batch_producer_resends_alone_what_was_refused_together(kafka: str) -> None:
    async def body(producer: AIOKafkaProducer, topic: str) -> None:
        batches = BatchProducer(producer, 10.0)
        together = [batches.send(topic, None, b"y" * 900, []) for _ in range(3)]
        outcomes = await asyncio.gather(*together, return_exceptions=True)
        assert all(isinstance(outcome, RetryAlone) for outcome in outcomes), outcomes
        alone = await asyncio.gather(*(batches.send_alone(topic, None, b"y" * 900, []) for _ in range(3)))
        assert len(alone) == 3
        keyed = await batches.send(topic, b"k", b"keyed", [])
        assert isinstance(keyed, int)
        await batches.flush(5.0)

    run(kafka, body, **{"max.message.bytes": "2000"})


async def settled(lanes: PartitionLanes) -> None:
    """Until the tasks of acknowledged batches are gone (their done callbacks run a loop iteration later)."""
    for _ in range(100):
        if lanes.idle():
            return
        await asyncio.sleep(0)
    raise AssertionError("the lanes never became idle")


def test_a_batch_to_an_idle_partition_is_written_at_once_without_a_task(kafka: str) -> None:
    async def body(producer: AIOKafkaProducer, topic: str) -> None:
        lanes = PartitionLanes(producer.client)
        tp = TopicPartition(topic, 0)
        await lanes.submit(tp, batch(producer, b"first"))  # the producer id is known from here on
        await settled(lanes)
        sent = lanes.submit(tp, batch(producer, b"second"))
        behind = lanes.submit(tp, batch(producer, b"third"))  # the partition is busy: this one waits its turn
        assert len(lanes._answering) == 1 and len(lanes._tasks) == 1  # noqa: SLF001
        assert await sent == 1 and await behind == 2
        await settled(lanes)
        assert await values(kafka, tp) == [b"first", b"second", b"third"]

    run(kafka, body)


def test_a_request_written_at_once_that_times_out_is_sent_again_and_stored_once(kafka: str) -> None:
    async def body(producer: AIOKafkaProducer, topic: str) -> None:
        lanes = PartitionLanes(producer.client)
        tp = TopicPartition(topic, 0)
        await lanes.submit(tp, batch(producer, b"before"))
        leader = producer.client.cluster.leader_for_partition(tp)
        connection = producer.client._conns[(leader, ConnectionGroup.DEFAULT)]  # noqa: SLF001
        connection._request_timeout = 0.0  # noqa: SLF001 (the timer fires before Kafka can answer)
        answered = lanes.submit(tp, batch(producer, b"once"))
        assert len(lanes._answering) == 1  # noqa: SLF001
        assert await answered == 1
        assert not connection.connected()  # renewed, as aiokafka's client does on a timeout
        assert await values(kafka, tp) == [b"before", b"once"]

    run(kafka, body)


def test_closing_the_lanes_fails_a_batch_written_at_once(kafka: str) -> None:
    async def body(producer: AIOKafkaProducer, topic: str) -> None:
        lanes = PartitionLanes(producer.client)
        tp = TopicPartition(topic, 0)
        await lanes.submit(tp, batch(producer, b"first"))
        await settled(lanes)
        pending = lanes.submit(tp, batch(producer, b"second"))
        assert len(lanes._answering) == 1  # noqa: SLF001
        lanes.close()
        assert isinstance(pending.exception(), ConnectionError)
        assert lanes.idle()
        await asyncio.sleep(0.5)  # Kafka's answer, arriving after the close, changes nothing

    run(kafka, body)
