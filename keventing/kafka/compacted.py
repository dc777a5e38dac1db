"""A key-value table on a compacted, single-partition Kafka topic (resources, statuses, the contract).

Readers replay the topic from the beginning and then follow it; a ``None`` value is a tombstone. Records
may carry headers (the contract's tags): ``follow_records`` yields them, the table readers ignore them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import NamedTuple

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

from keventing.kafka.client import admin_client, compacted, ensure_topic, make_consumer, make_producer
from keventing.kafka.connection import Connectable

Change = tuple[str, bytes | None]


class Record(NamedTuple):
    key: str
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    offset: int


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

    async def put(
        self, key: str, value: bytes | None, headers: Sequence[tuple[str, bytes]] | None = None
    ) -> int:
        """Write one record; its offset."""
        await self.start()
        assert self._producer is not None
        metadata = await self._producer.send_and_wait(
            self.topic, value=value, key=key.encode(), partition=0, headers=list(headers) if headers else None
        )
        return int(metadata.offset)

    async def snapshot(self) -> dict[str, bytes]:
        """Everything the table holds now."""
        table: dict[str, bytes] = {}
        _apply(table, [(record.key, record.value) for record in await self.records()])
        return table

    async def records(self) -> list[Record]:
        """Every record the topic holds now, in order (several of a key until compaction drops them)."""
        async for batch in self._read(follow=False):
            return batch
        return []

    async def follow(self) -> AsyncIterator[list[Change]]:
        """Yield the whole table as the first batch (possibly empty), then each later batch of changes."""
        async for batch in self._read(follow=True):
            yield [(record.key, record.value) for record in batch]

    async def follow_records(self) -> AsyncIterator[list[Record]]:
        """As ``follow``, with each record's headers: every record of the first batch, not just the last of
        each key, so that a reader can skip the ones it does not trust."""
        async for batch in self._read(follow=True):
            yield batch

    async def _read(self, follow: bool) -> AsyncIterator[list[Record]]:
        await self.ensure()  # readers may start before the writer ever wrote
        consumer = make_consumer(self.connection, None, auto_offset_reset="earliest")
        await consumer.start()
        try:
            partition = TopicPartition(self.topic, 0)
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            end = (await consumer.end_offsets([partition]))[partition]
            initial: list[Record] = []
            while await consumer.position(partition) < end:
                records = await consumer.getmany(partition, timeout_ms=500)
                initial.extend(_record(r) for r in records.get(partition, []))
            yield initial
            while follow:
                records = await consumer.getmany(partition, timeout_ms=1000)
                batch = [_record(r) for r in records.get(partition, [])]
                if batch:
                    yield batch
        finally:
            await asyncio.shield(consumer.stop())


def _record(record: ConsumerRecord[bytes, bytes]) -> Record:
    key = (record.key or b"").decode()  # a compacted topic's records all have a key
    return Record(key, record.value, record.headers, record.offset)


def _apply(table: dict[str, bytes], batch: list[Change]) -> None:
    for key, value in batch:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
