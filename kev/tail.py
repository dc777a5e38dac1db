"""Reading events off a Broker's or a dead-letter sink's topic without joining any consumer group.

``kev events``, ``kev trace`` and the console read with a consumer of their own (no group, so nothing is
committed and no Trigger's group is disturbed): the last records of every partition, everything from the end
on (:func:`tail`), or every record carrying one event id (:func:`find_event`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from keventing import events
from keventing.filters import Filter, FilterError, compile_trigger_filter
from keventing.kafka.client import make_consumer
from keventing.kafka.connection import Connectable


class TailError(Exception):
    """The topic cannot be read (it does not exist, or Kafka refused); the message says which and why."""


@dataclass(frozen=True)
class TailedEvent:
    """One record of a topic, decoded: where it is, when it was written, and the CloudEvent it carries."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    attributes: dict[str, str]
    data: bytes | None

    @property
    def id(self) -> str:
        return self.attributes.get("id", "")

    def to_json(self) -> dict[str, Any]:
        """What the console's live tail sends: the record's place and the event, data as text."""
        data = None
        if self.data is not None:
            data = self.data[:4096].decode("utf-8", errors="replace")
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp_ms": self.timestamp_ms,
            "attributes": self.attributes,
            "data": data,
        }


def cesql_filter(expression: str | None) -> Filter | None:
    """A CESQL expression compiled exactly as a Trigger's ``filters: [{cesql: ...}]`` is; None for none.
    Raises :class:`FilterError` naming what is wrong with it."""
    if expression is None or not expression.strip():
        return None
    return compile_trigger_filter(None, [{"cesql": expression}])


def decode(record: Any) -> TailedEvent | None:
    """The event a record carries, or None for a record that is no CloudEvent (never raised: a tail skips it)."""
    try:
        event = events.from_kafka(record.headers or [], record.value)
    except events.InvalidEvent:
        return None
    return TailedEvent(
        record.topic, record.partition, record.offset, record.timestamp, dict(event.attributes), event.data
    )


async def partitions_of(consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    """Every partition of ``topics`` that exist. A consumer assigned nothing yet has no metadata for them:
    it is fetched once when missing (aiokafka's public ``topics()`` returns a copy its client never uses)."""

    def known() -> list[TopicPartition]:
        return [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]

    if len({tp.topic for tp in known()}) < len(set(topics)):
        await consumer._client.force_metadata_update()
    return known()


@contextlib.asynccontextmanager
async def _assigned(connection: Connectable, topic: str) -> AsyncIterator[tuple[AIOKafkaConsumer, list]]:
    consumer = make_consumer(connection, None, auto_offset_reset="latest", fetch_max_wait_ms=100)
    try:
        await consumer.start()
    except Exception as err:
        await consumer.stop()
        raise TailError(f"cannot connect to Kafka to read {topic}: {err}") from None
    try:
        partitions = await partitions_of(consumer, [topic])
        if not partitions:
            raise TailError(f"topic {topic} does not exist")
        assigned = sorted(partitions, key=lambda tp: tp.partition)
        consumer.assign(assigned)
        yield consumer, assigned
    finally:
        await asyncio.shield(consumer.stop())


async def recent(
    connection: Connectable, topic: str, count: int, matches: Filter | None = None
) -> list[TailedEvent]:
    """The last ``count`` events of ``topic`` (of those ``matches`` selects), oldest first."""
    async with _assigned(connection, topic) as (consumer, partitions):
        return await _recent(consumer, partitions, count, matches)


async def _recent(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], count: int, matches: Filter | None
) -> list[TailedEvent]:
    if count <= 0:
        return []
    ends = await consumer.end_offsets(partitions)
    starts = await consumer.beginning_offsets(partitions)
    found: list[TailedEvent] = []
    for tp in partitions:
        # A filter may select few of the last records: reading back ``count`` per partition is a bound, not
        # a promise of ``count`` matches (a tail is for looking, not for scanning a whole topic).
        start = max(starts[tp], ends[tp] - count)
        found.extend(await _read_range(consumer, tp, start, ends[tp], matches))
    found.sort(key=lambda e: (e.timestamp_ms, e.partition, e.offset))
    return found[-count:]


async def _read_range(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    start: int,
    end: int,
    matches: Filter | None,
    stop: Callable[[TailedEvent], bool] | None = None,
) -> list[TailedEvent]:
    out: list[TailedEvent] = []
    if start >= end:
        return out
    consumer.seek(tp, start)
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=1000)
        for record in batch.get(tp, []):
            if record.offset >= end:
                return out
            event = decode(record)
            if event is not None and (matches is None or matches(event.attributes)):
                out.append(event)
                if stop is not None and stop(event):
                    return out
    return out


async def tail(
    connection: Connectable,
    topic: str,
    matches: Filter | None = None,
    last: int = 0,
    on_ready: Callable[[], Awaitable[None]] | None = None,
) -> AsyncGenerator[TailedEvent, None]:
    """The last ``last`` events, then every event written from now on, forever (cancel to stop).

    ``on_ready`` is awaited once the position at the end of every partition is fixed: an event produced
    after it is never missed (a lazily resolved "latest" could land after it).
    """
    async with _assigned(connection, topic) as (consumer, partitions):
        ends = await consumer.end_offsets(partitions)
        for earlier in await _recent(consumer, partitions, last, matches):
            yield earlier
        for tp in partitions:
            consumer.seek(tp, ends[tp])
        if on_ready is not None:
            await on_ready()
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for tp in sorted(batch, key=lambda t: t.partition):
                for record in batch[tp]:
                    event = decode(record)
                    if event is not None and (matches is None or matches(event.attributes)):
                        yield event


async def find_event(connection: Connectable, topic: str, event_id: str) -> list[TailedEvent]:
    """Every record of ``topic`` that carries the event ``event_id`` (a retried produce can write it twice).

    Reads the whole topic up to its current end: a trace is a look-up by id, and Kafka has no index by
    header. ``kev trace`` names the topic it scans.
    """
    async with _assigned(connection, topic) as (consumer, partitions):
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)

        def same(e: Mapping[str, object]) -> bool:
            return e.get("id") == event_id

        found: list[TailedEvent] = []
        for tp in partitions:
            found.extend(await _read_range(consumer, tp, starts[tp], ends[tp], same))
        return found


async def since(connection: Connectable, topic: str, from_ms: int | None = None) -> list[TailedEvent]:
    """Every event of ``topic`` up to its current end, from its oldest record or from the first one written
    at or after ``from_ms`` (ms since the epoch), in partition then offset order."""
    async with _assigned(connection, topic) as (consumer, partitions):
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        if from_ms is not None:
            at = await consumer.offsets_for_times({tp: from_ms for tp in partitions})
            starts = {tp: (found.offset if found is not None else ends[tp]) for tp, found in at.items()}
        found: list[TailedEvent] = []
        for tp in partitions:
            found.extend(await _read_range(consumer, tp, starts[tp], ends[tp], None))
        return found


async def end_offsets(connection: Connectable, topics: list[str]) -> dict[tuple[str, int], int]:
    """The end offset of every partition of ``topics`` (missing topics are left out)."""
    consumer = make_consumer(connection, None)
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, topics)
        if not partitions:
            return {}
        ends = await consumer.end_offsets(partitions)
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}
    finally:
        await asyncio.shield(consumer.stop())


__all__ = [
    "FilterError",
    "TailError",
    "TailedEvent",
    "cesql_filter",
    "end_offsets",
    "find_event",
    "partitions_of",
    "recent",
    "since",
    "tail",
]
