"""One fetch and one decode per Broker partition, fanned out to every Trigger of the dispatcher reading it.

Each Trigger stays a member of its own consumer group (its position is its group's committed offset, its
lag is visible per Trigger), but pauses the partitions it is assigned and attaches them here instead: a
group-less consumer per Kafka cluster is assigned the union of the attached partitions, reads each once at
the lowest offset an attached Trigger needs, decodes the CloudEvent attributes of each record once, and
hands every Trigger its share (``fanout.FanOut`` says which). A Trigger filters and queues its share into
its own schedule, so in-flight limits, ordering and retries stay its own; one that is backed up detaches
and reads on alone from where its share ended, so it never holds up the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from dispatcher.fanout import FanOut
from dispatcher.metrics import DispatcherMetrics
from keventing import events
from keventing.kafka.client import make_consumer
from keventing.kafka.connection import KafkaConnection
from keventing.restarting import restarting

log = logging.getLogger("keventing.dispatcher")

# One consumer reads for many Triggers: the per-partition buffer that a consumer per Trigger kept small.
MAX_PARTITION_FETCH_BYTES = 1024 * 1024
# Records handed out per read: a Trigger's own consumer's batch, so an idle Trigger never backs up on one.
MAX_RECORDS = 500
# How close to the shared cursor a Trigger reading alone must be to attach again (what is re-read at most).
REJOIN_WINDOW = 500

Attributes = Mapping[str, str] | None  # a record's CloudEvent attributes from its headers; None: undecodable


class Member(Protocol):
    """A Trigger's consumer as the shared fetch sees it."""

    def feed(
        self, partition: TopicPartition, records: Sequence[ConsumerRecord], attributes: Sequence[Attributes]
    ) -> None:
        """Take the share of a batch; ``attributes`` are the records' header attributes, in order."""

    def read_alone(self, partition: TopicPartition, offset: int) -> None:
        """The shared fetch let go of ``partition`` (feeding failed): read it on alone from ``offset``."""


class SharedFetch:
    def __init__(
        self,
        connection: KafkaConnection,
        metrics: DispatcherMetrics,
        fetch_options: Mapping[str, int] | None = None,
    ) -> None:
        self.connection = connection
        self.metrics = metrics
        self.fetch_options = dict(fetch_options or {})  # make_consumer's fetch_min_bytes, fetch_max_wait_ms
        self.book: FanOut[TopicPartition, Member] = FanOut()
        self.consumer: AIOKafkaConsumer | None = None
        self._assigned: frozenset[TopicPartition] = frozenset()
        self._seek: dict[TopicPartition, int] = {}
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    # ---------------------------------------------------------------------------------- membership

    def attach(self, partition: TopicPartition, member: Member, offset: int) -> None:
        seek = self.book.attach(partition, member, offset)
        if seek is not None:
            self._seek[partition] = seek
        self._update()

    def detach(self, partition: TopicPartition, member: Member) -> int | None:
        """The offset ``member`` reads next on its own; None when it was not attached."""
        offset = self.book.detach(partition, member)
        self._update()
        return offset

    def near(self, partition: TopicPartition, offset: int, highwater: int | None) -> bool:
        """Whether a Trigger reading ``partition`` alone at ``offset`` caught up: near the shared cursor, or
        near the end of the partition when nobody else reads it (so that it does not come and go)."""
        shared = self.book.partitions.get(partition)
        if shared is None:
            return highwater is not None and highwater - offset <= REJOIN_WINDOW
        return abs(shared.cursor - offset) <= REJOIN_WINDOW

    def highwater(self, partition: TopicPartition) -> int | None:
        consumer = self.consumer
        if consumer is None or partition not in self._assigned:
            return None
        return consumer.highwater(partition)

    def _update(self) -> None:
        """Bring the consumer's assignment and positions in line with the book. aiokafka replaces the whole
        assignment (and forgets every position) on assign(): all partitions are put back at their cursors."""
        consumer = self.consumer
        if consumer is not None:
            wanted = frozenset(self.book.partitions)
            if wanted != self._assigned:
                consumer.assign(list(wanted))
                self._assigned = wanted
                for tp, shared in self.book.partitions.items():
                    consumer.seek(tp, shared.cursor)
            else:
                for tp, offset in self._seek.items():
                    if tp in wanted:
                        consumer.seek(tp, offset)
            self._seek.clear()
        self._changed.set()

    # --------------------------------------------------------------------------------------- reading

    async def run(self) -> None:
        await restarting(
            self._read, log, "shared fetch failed; restarting", {"kafka": self.connection.describe()}
        )

    async def _read(self) -> None:
        # Positions are the Triggers' own; one that retention deleted resets to the oldest record kept (the
        # least lost), not the newest.
        consumer = make_consumer(
            self.connection,
            None,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
            **self.fetch_options,
        )
        await consumer.start()
        self.consumer = consumer
        self._assigned = frozenset()
        log.info("shared fetch started", extra={"kafka": self.connection.describe()})
        try:
            self._update()  # (re)started: every attached partition at its cursor
            while True:
                if not self._assigned:
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                batches = await consumer.getmany(timeout_ms=100, max_records=MAX_RECORDS)
                for tp, records in batches.items():
                    self._fan_out(tp, records)
        finally:
            self.consumer = None
            self._assigned = frozenset()
            await consumer.stop()

    def _fan_out(self, partition: TopicPartition, records: list[ConsumerRecord]) -> None:
        shares = self.book.split(partition, records)
        if not shares:
            return
        self.metrics.shared_fetch_records.labels(partition.topic).inc(len(records))
        attributes = [_attributes(record) for record in records]
        for member, start in shares:
            share = records[start:] if start else records
            try:
                member.feed(partition, share, attributes[start:] if start else attributes)
            except Exception as err:  # one Trigger's failure must not cost the others their records
                log.warning("feeding a Trigger failed; it reads alone", extra={"error": repr(err)})
                self.book.detach(partition, member)
                self._update()
                member.read_alone(partition, share[0].offset)


def _attributes(record: ConsumerRecord) -> Attributes:
    try:
        return events.attributes_from_kafka(record.headers or ())
    except Exception:  # not UTF-8: each Trigger's own decoding says what to do with it
        return None


class SharedFetches:
    """The dispatcher's shared fetches, one per Kafka cluster that Triggers read."""

    def __init__(self, metrics: DispatcherMetrics, fetch_options: Mapping[str, int] | None = None) -> None:
        self.metrics = metrics
        self.fetch_options = dict(fetch_options or {})
        self.fetches: dict[KafkaConnection, SharedFetch] = {}

    def get(self, connection: KafkaConnection) -> SharedFetch:
        fetch = self.fetches.get(connection)
        if fetch is None:
            fetch = self.fetches[connection] = SharedFetch(connection, self.metrics, self.fetch_options)
            fetch.start()
        return fetch

    async def stop(self) -> None:
        await asyncio.gather(*(fetch.stop() for fetch in self.fetches.values()), return_exceptions=True)
        self.fetches.clear()
