"""A key-value table on a compacted, single-partition Kafka topic (resources, statuses, the contract).

Readers replay the topic from the beginning and then follow it; a ``None`` value is a tombstone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaProducer, TopicPartition

from keventing.kafka.client import admin_client, compacted, ensure_topic, make_consumer, make_producer
from keventing.kafka.connection import Connectable

Change = tuple[str, bytes | None]


class CompactedTopic:
    def __init__(self, connection: Connectable, topic: str, replication_factor: int = 1) -> None:
        self.connection = connection
        self.topic = topic
        self.replication_factor = replication_factor
        self._producer: AIOKafkaProducer | None = None

    async def ensure(self) -> None:
        async with admin_client(self.connection) as admin:
            await ensure_topic(admin, compacted(replication_factor=self.replication_factor, name=self.topic))

    async def start(self) -> None:
        if self._producer is None:
            self._producer = make_producer(self.connection, linger_ms=0)
            await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def put(self, key: str, value: bytes | None) -> None:
        await self.start()
        assert self._producer is not None
        await self._producer.send_and_wait(self.topic, value=value, key=key.encode(), partition=0)

    async def snapshot(self) -> dict[str, bytes]:
        """Everything the table holds now."""
        async for batch in self._read(follow=False):
            table: dict[str, bytes] = {}
            _apply(table, batch)
            return table
        return {}

    async def follow(self) -> AsyncIterator[list[Change]]:
        """Yield the whole table as the first batch (possibly empty), then each later batch of changes."""
        async for batch in self._read(follow=True):
            yield batch

    async def _read(self, follow: bool) -> AsyncIterator[list[Change]]:
        await self.ensure()  # readers may start before the writer ever wrote
        consumer = make_consumer(self.connection, None, auto_offset_reset="earliest")
        await consumer.start()
        try:
            partition = TopicPartition(self.topic, 0)
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            end = (await consumer.end_offsets([partition]))[partition]
            initial: list[Change] = []
            while await consumer.position(partition) < end:
                records = await consumer.getmany(partition, timeout_ms=500)
                for record in records.get(partition, []):
                    initial.append((record.key.decode(), record.value))
            yield initial
            while follow:
                records = await consumer.getmany(partition, timeout_ms=1000)
                batch = [(r.key.decode(), r.value) for r in records.get(partition, [])]
                if batch:
                    yield batch
        finally:
            await asyncio.shield(consumer.stop())


def _apply(table: dict[str, bytes], batch: list[Change]) -> None:
    for key, value in batch:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
