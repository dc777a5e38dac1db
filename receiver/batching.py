"""Producing many small records with one future and one timer per batch instead of one per record.

aiokafka's ``send()`` costs a coroutine, a future, a partitioner call and a metadata lookup per record, and
a caller that bounds its wait adds a timer per record: most of a receiver's Kafka cost at thousands of
events per second. :class:`BatchProducer` appends keyless records to one open batch per topic and hands the
batch to the producer as soon as the topic has no batch in flight (records arriving meanwhile wait for the
next one: no linger, batching comes from concurrency). Every record of a batch shares its outcome: the
acknowledgement, the error, or :class:`TimeoutError` once ``timeout`` seconds passed since the batch opened.

Keyed records (``partitionkey``) and records too large to share a batch are sent as batches of one, keyed
ones to the partition the producer's own partitioner picks (murmur2, like the Java client).

A batch Kafka refuses must not break the partition for later ones. The idempotent producer numbers records
per partition, and a refused batch never reaches the log, so every later batch would be refused as
``OutOfOrderSequenceNumber`` until a restart (the Java client bumps its epoch; aiokafka does nothing).
:func:`_renew_producer_id` makes the producer ask Kafka for a new producer id, so numbering starts again,
and the records of a batch refused as too large with others, or refused out of order while that happens,
are sent again as batches of their own (``RetryAlone``): only a record that is itself too large fails.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable
from functools import partial

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError, OutOfOrderSequenceNumber
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.producer.transaction_manager import NO_PRODUCER_EPOCH, NO_PRODUCER_ID, PidAndEpoch

log = logging.getLogger("keventing.receiver")

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


class RetryAlone(Exception):
    """Kafka refused the batch this record shared with others (too large together, or numbered out of
    order after an earlier refusal): sent alone, it may well be stored."""


def _renew_producer_id(producer: AIOKafkaProducer, sent: asyncio.Future[object]) -> None:
    """Once Kafka refused a batch for good, have the producer fetch a new id before its next batch.

    Batches already numbered under the old id after the refused one are refused out of order, and resent
    alone; batches taken afterwards are numbered from 0 under the new id. aiokafka's sender asks for an id
    whenever it has none, at the top of each round.
    """
    if sent.cancelled():
        return
    error = sent.exception()
    if not isinstance(error, KafkaError) or error.retriable:
        return  # acknowledged, or still the producer's to retry
    state = producer._txn_manager  # noqa: SLF001 (aiokafka's idempotence state; no public reset)
    if state is None or not state.has_pid() or state.transactional_id is not None:
        return  # not idempotent, a renewal already pending, or transactions (not used here)
    state._pid_and_epoch = PidAndEpoch(NO_PRODUCER_ID, NO_PRODUCER_EPOCH)  # noqa: SLF001
    state._pid_waiter = asyncio.get_running_loop().create_future()  # noqa: SLF001
    state._sequence_numbers.clear()  # noqa: SLF001
    log.warning("Kafka refused a batch: renewing the producer id", extra={"error": repr(error)})


class BatchProducer:
    def __init__(self, producer: AIOKafkaProducer, timeout: float) -> None:
        self.producer = producer
        self.timeout = timeout
        self._open: dict[str, _Batch] = {}
        self._in_flight: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
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
            result = await self._send_built(topic, random.choice(partitions), batch.builder)
        except asyncio.CancelledError:
            _fail(batch.future, ConnectionError("the producer stopped before Kafka acknowledged"))
            raise
        except (MessageSizeTooLargeError, OutOfOrderSequenceNumber) as err:
            alone = batch.builder.record_count() == 1 and isinstance(err, MessageSizeTooLargeError)
            _fail(batch.future, err if alone else RetryAlone(repr(err)))
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

    def send_alone(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers
    ) -> Awaitable[object]:
        """Send one record as a batch of its own (after ``RetryAlone``)."""
        return self._send_single(topic, key, value, headers)

    async def _send_single(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers
    ) -> object:
        async with asyncio.timeout(self.timeout):
            partitions = sorted(await self.producer.partitions_for(topic))
            if key is None:
                partition = random.choice(partitions)
            else:
                partition = self._partitioner(key, partitions, partitions)
            builder = self._one_record(key, value, headers)
            while True:
                try:
                    acknowledged = await self.producer.send_batch(builder, topic, partition=partition)
                    break
                except KafkaTimeoutError:
                    # Still queued behind the partition's earlier batch (the records of a refused batch,
                    # resent alone, queue one by one, and aiokafka's wait counts its time more than once):
                    # nothing was sent, so queue it again, within this call's own bound.
                    continue
            try:
                return await self._acknowledged(acknowledged)
            except OutOfOrderSequenceNumber:  # numbered under the id being renewed: once more, renewed
                return await self._send_built(topic, partition, self._one_record(key, value, headers))

    def _one_record(self, key: bytes | None, value: bytes | None, headers: Headers) -> BatchBuilder:
        # A sent builder is closed, so a resend builds the batch again.
        builder = self.producer.create_batch()
        builder.append(timestamp=None, key=key, value=value, headers=headers)
        return builder

    async def _send_built(self, topic: str, partition: int, builder: BatchBuilder) -> object:
        return await self._acknowledged(await self.producer.send_batch(builder, topic, partition=partition))

    async def _acknowledged(self, acknowledged: asyncio.Future[object]) -> object:
        acknowledged.add_done_callback(partial(_renew_producer_id, self.producer))
        return await acknowledged
