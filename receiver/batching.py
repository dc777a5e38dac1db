"""Producing many small records with one future and one timer per batch instead of one per record.

aiokafka's ``send()`` costs a coroutine, a future, a partitioner call and a metadata lookup per record, and
a caller that bounds its wait adds a timer per record: most of a receiver's Kafka cost at thousands of
events per second. :class:`BatchProducer` appends keyless records to one open batch per topic and hands the
batch to Kafka as soon as the topic has no batch in flight (records arriving meanwhile wait for the next
one: no linger unless configured, batching comes from concurrency). Every record of a batch shares its
outcome: the acknowledgement, the error, or :class:`TimeoutError` once ``timeout`` seconds passed since the
batch opened.

Keyed records (``partitionkey``) and records too large to share a batch are sent as batches of one, keyed
ones to the partition the producer's own partitioner picks (murmur2, like the Java client).

Batches go out through :class:`receiver.produce.PartitionLanes` (one in flight per partition, in order,
idempotent under a producer id of its own), not aiokafka's sender: the lanes leave a refused batch's
numbers to the next one, so a refusal never breaks the partition. A batch Kafka refused as too large with
other records has each of them sent again as a batch of its own (``RetryAlone``): only a record that is
itself too large fails.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import TopicPartition

from receiver.produce import PartitionLanes

Headers = list[tuple[str, bytes]]
# Larger values go as batches of one: a batch of them would be one record anyway.
SINGLE_RECORD_BYTES = 64 * 1024


class _Batch:
    __slots__ = ("builder", "future", "timer", "started")

    def __init__(self, builder: BatchBuilder, future: asyncio.Future[object], timer: asyncio.TimerHandle):
        self.builder = builder
        self.future = future
        self.timer = timer
        self.started = False


def _fail(future: asyncio.Future[object], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _expire(future: asyncio.Future[object]) -> None:
    _fail(future, TimeoutError("Kafka did not acknowledge the batch in time"))


class RetryAlone(Exception):
    """Kafka refused the batch this record shared with others as too large together: sent alone, it may
    well be stored."""


class BatchProducer:
    def __init__(self, producer: AIOKafkaProducer, timeout: float, linger: float = 0.0) -> None:
        self.producer = producer
        self.timeout = timeout
        self.linger = linger
        self.lanes = PartitionLanes(producer.client, delivery_timeout=max(120.0, timeout))
        self._open: dict[str, _Batch] = {}
        self._in_flight: dict[str, int] = {}
        self._waiting: set[asyncio.Task[None]] = set()  # batches waiting for their topic's partitions
        self._partitioner = DefaultPartitioner()  # the producer's own default: murmur2 of the key

    def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> Awaitable[object]:
        """Queue one record; await the result for Kafka's acknowledgement (or its error)."""
        if key is not None or (value is not None and len(value) > SINGLE_RECORD_BYTES):
            return self._send_single(topic, key, value, headers)
        batch = self._open.get(topic)
        if batch is None:
            batch = self._open[topic] = self._new_batch()
        if batch.builder.append(timestamp=None, key=None, value=value, headers=headers) is None:
            self._start(topic, batch)  # full: send it now, whatever is in flight
            batch = self._open[topic] = self._new_batch()
            batch.builder.append(timestamp=None, key=None, value=value, headers=headers)  # the first fits
        if not self._in_flight.get(topic):
            # Soon, not now: records of requests handled in this same loop iteration join the batch.
            loop = asyncio.get_running_loop()
            if self.linger:
                loop.call_later(self.linger, self._start, topic, batch)
            else:
                loop.call_soon(self._start, topic, batch)
        return batch.future

    def send_alone(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers
    ) -> Awaitable[object]:
        """Send one record as a batch of its own (after ``RetryAlone``)."""
        return self._send_single(topic, key, value, headers)

    def close(self) -> None:
        """Stop at once (the producer is going): what was not acknowledged yet fails."""
        for task in self._waiting:
            task.cancel()
        self.lanes.close()

    async def flush(self, timeout: float | None) -> None:
        """Send what is open and wait for every batch's answer, up to ``timeout`` s."""
        for topic, batch in list(self._open.items()):
            self._start(topic, batch)
        if self._waiting:  # batches waiting for their topic's partitions, to reach their lanes
            await asyncio.wait(set(self._waiting), timeout=timeout)
        await self.lanes.flush(timeout)

    def _new_batch(self) -> _Batch:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        return _Batch(self.producer.create_batch(), future, loop.call_later(self.timeout, _expire, future))

    def _start(self, topic: str, batch: _Batch) -> None:
        if batch.started:
            return
        batch.started = True
        if self._open.get(topic) is batch:
            del self._open[topic]
        self._in_flight[topic] = self._in_flight.get(topic, 0) + 1
        batch.future.add_done_callback(lambda _: self._finished(topic, batch))
        partitions = self.producer.client.cluster.partitions_for_topic(topic)
        if partitions:
            self._submit(topic, random.choice(tuple(partitions)), batch)
        else:  # not in the metadata yet: the producer asks Kafka for it
            task = asyncio.get_running_loop().create_task(self._submit_known(topic, batch))
            self._waiting.add(task)
            task.add_done_callback(self._waiting.discard)

    async def _submit_known(self, topic: str, batch: _Batch) -> None:
        try:
            # Each batch to one partition picked at random: keyless records spread evenly, batches stay whole.
            partitions = sorted(await self.producer.partitions_for(topic))
        except asyncio.CancelledError:
            _fail(batch.future, ConnectionError("the producer stopped before Kafka acknowledged"))
            raise
        except Exception as err:
            _fail(batch.future, err)
            return
        self._submit(topic, random.choice(partitions), batch)

    def _submit(self, topic: str, partition: int, batch: _Batch) -> None:
        shared = batch.builder.record_count() > 1
        acknowledged = self.lanes.submit(TopicPartition(topic, partition), batch.builder, batch.future.done)
        acknowledged.add_done_callback(lambda done: self._settle(batch, shared, done))

    def _settle(self, batch: _Batch, shared: bool, acknowledged: asyncio.Future[int]) -> None:
        batch.timer.cancel()
        if batch.future.done():
            return
        error = acknowledged.exception()
        if error is None:
            batch.future.set_result(acknowledged.result())
        elif isinstance(error, MessageSizeTooLargeError) and shared:
            batch.future.set_exception(RetryAlone(repr(error)))
        else:
            batch.future.set_exception(error)

    def _finished(self, topic: str, batch: _Batch) -> None:
        self._in_flight[topic] -= 1
        waiting = self._open.get(topic)
        if waiting is not None and not self._in_flight[topic]:
            self._start(topic, waiting)

    async def _send_single(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers
    ) -> object:
        async with asyncio.timeout(self.timeout):
            partitions = sorted(await self.producer.partitions_for(topic))
            if key is None:
                partition = random.choice(partitions)
            else:
                partition = self._partitioner(key, partitions, partitions)
            builder = self.producer.create_batch()
            builder.append(timestamp=None, key=key, value=value, headers=headers)
            return await self.lanes.submit(TopicPartition(topic, partition), builder)
