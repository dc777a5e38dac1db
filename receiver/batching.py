"""Producing many small records with one future and one timer per batch instead of one per record.

aiokafka's ``send()`` costs a coroutine, a future, a partitioner call and a metadata lookup per record, and
a caller that bounds its wait adds a timer per record: most of a receiver's Kafka cost at thousands of
events per second. :class:`BatchProducer` appends keyless records to one open batch per topic and hands the
batch to the producer as soon as the topic has no batch in flight (records arriving meanwhile wait for the
next one: no linger, batching comes from concurrency). Every record of a batch shares its outcome: the
acknowledgement, the error, or :class:`TimeoutError` once ``timeout`` seconds passed since the batch opened.

Keyed records (``partitionkey``) and records too large for a batch go through ``send()`` unchanged, so
partitioning by key stays the producer's (murmur2, like the Java client).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

Headers = list[tuple[str, bytes]]
# Larger values go through send(): a batch of them would be one record anyway.
SINGLE_RECORD_BYTES = 64 * 1024


class _Batch:
    __slots__ = ("builder", "future", "timer", "started")

    def __init__(self, builder: BatchBuilder, future: asyncio.Future[object], timer: asyncio.TimerHandle):
        self.builder = builder
        self.future = future
        self.timer = timer
        self.started = False


def _fail(future: asyncio.Future[object], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)


def _expire(future: asyncio.Future[object]) -> None:
    _fail(future, TimeoutError("Kafka did not acknowledge the batch in time"))


class BatchProducer:
    def __init__(self, producer: AIOKafkaProducer, timeout: float) -> None:
        self.producer = producer
        self.timeout = timeout
        self._open: dict[str, _Batch] = {}
        self._in_flight: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

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
            if batch.builder.append(timestamp=None, key=None, value=value, headers=headers) is None:
                del self._open[topic]
                batch.timer.cancel()
                return self._send_single(topic, key, value, headers)
        if not self._in_flight.get(topic):
            # Soon, not now: records of requests handled in this same loop iteration join the batch.
            asyncio.get_running_loop().call_soon(self._start, topic, batch)
        return batch.future

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
        task = asyncio.get_running_loop().create_task(self._deliver(topic, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, topic: str, batch: _Batch) -> None:
        try:
            # Each batch to one partition picked at random: keyless records spread evenly, batches stay whole.
            partitions = sorted(await self.producer.partitions_for(topic))
            acknowledged = await self.producer.send_batch(
                batch.builder, topic, partition=random.choice(partitions)
            )
            result = await acknowledged
        except asyncio.CancelledError:
            _fail(batch.future, ConnectionError("the producer stopped before Kafka acknowledged"))
            raise
        except Exception as err:
            _fail(batch.future, err)
        else:
            if not batch.future.done():
                batch.future.set_result(result)
        finally:
            batch.timer.cancel()
            self._in_flight[topic] -= 1
            waiting = self._open.get(topic)
            if waiting is not None and not self._in_flight[topic]:
                self._start(topic, waiting)

    async def _send_single(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers
    ) -> object:
        async with asyncio.timeout(self.timeout):
            acknowledged = await self.producer.send(topic, value=value, key=key, headers=headers)
            return await acknowledged
