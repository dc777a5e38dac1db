"""One consumer group per egress: fetch, filter, deliver, commit — at least once, in the chosen order.

The poll loop never waits for a delivery: records queue per partition, deliveries run as tasks, and a
partition is paused when its queue is long, so heartbeats and poll deadlines are always met however slow
the subscriber. An offset is committed only when every record before it was delivered, filtered out or
dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from dispatcher import metrics
from dispatcher.decode import record_decoder
from dispatcher.delivery import Attempt, Deliverer
from dispatcher.offsets import OffsetTracker
from keventing import events
from keventing.contract import Egress
from keventing.filters import compile_trigger_filter
from keventing.kafka.client import make_consumer
from keventing.kafka.rebalance import RebalanceListener

log = logging.getLogger("keventing.dispatcher")

COMMIT_INTERVAL = 0.2
PAUSE_BACKLOG = 1000  # records queued in one partition before it is paused


class PartitionState:
    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        # Created at the first known position: the first fetched record, or the position when idle.
        self.tracker: OffsetTracker | None = None
        self.backlog: deque[ConsumerRecord] = deque()
        self.tasks: set[asyncio.Task[None]] = set()
        self.committed = -1
        self.paused = False
        self.revoked = False

    def start_at(self, offset: int) -> OffsetTracker:
        if self.tracker is None:
            self.tracker = OffsetTracker(offset)
            self.committed = offset
        return self.tracker


class EgressConsumer:
    def __init__(
        self,
        egress: Egress,
        bootstrap_servers: str,
        deliverer: Deliverer,
        max_in_flight: int,
        on_event_seen: Callable[[Egress, events.Event], None] | None = None,
    ) -> None:
        self.egress = egress
        self.bootstrap_servers = egress.bootstrap_servers or bootstrap_servers
        self.deliverer = deliverer
        self.max_in_flight = 1 if egress.delivery_order == "ordered" else max_in_flight
        self.filter = compile_trigger_filter(egress.filter.attributes, egress.filter.filters)
        self.decode = record_decoder(egress)
        self.labels = (egress.namespace, egress.kind, egress.name)
        # Labelled metric children looked up once: labels() per event costs more than the rest of the filter.
        self.m_filtered = metrics.FILTERED.labels(*self.labels)
        self.m_in_flight = metrics.IN_FLIGHT.labels(*self.labels)
        self.m_retries = metrics.RETRIES.labels(*self.labels)
        self.m_processing = metrics.EVENT_PROCESSING_LATENCIES.labels(*self.labels)
        self._code_metrics: dict[int, tuple[Any, Any]] = {}
        self.partitions: dict[TopicPartition, PartitionState] = {}
        self.in_flight = 0
        self.consumer: AIOKafkaConsumer | None = None
        self._wake = asyncio.Event()
        self._new_partitions: set[TopicPartition] = set()
        self.ready = asyncio.Event()

    # ------------------------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning(
                    "consumer failed; restarting", extra={"egress": self.egress.id, "error": repr(err)}
                )
                await asyncio.sleep(1)

    async def _consume(self) -> None:
        consumer = make_consumer(
            self.bootstrap_servers,
            self.egress.consumer_group,
            auto_offset_reset=self.egress.initial_offset,
        )
        await consumer.start()
        self.consumer = consumer
        consumer.subscribe(
            list(self.egress.topics), listener=RebalanceListener(self.on_revoked, self.on_assigned)
        )
        log.info("consumer started", extra={"egress": self.egress.id, "group": self.egress.consumer_group})
        last_commit = time.monotonic()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=100, max_records=500)
                for tp, records in batches.items():
                    state = self.partitions.get(tp)
                    if state is None or state.revoked or not records:
                        continue
                    state.start_at(records[0].offset)
                    state.backlog.extend(records)
                    if len(state.backlog) >= PAUSE_BACKLOG and not state.paused:
                        consumer.pause(tp)
                        state.paused = True
                await self._init_new_partitions()
                self._pump()
                if time.monotonic() - last_commit >= COMMIT_INTERVAL:
                    await self._commit()
                    last_commit = time.monotonic()
        finally:
            await self._shutdown(consumer)

    async def _shutdown(self, consumer: AIOKafkaConsumer) -> None:
        tasks = [t for s in self.partitions.values() for t in s.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self._commit(), 5)
        except Exception:
            pass
        self._forget_lag(list(self.partitions))
        self.partitions.clear()
        self.consumer = None
        await consumer.stop()

    async def _init_new_partitions(self) -> None:
        """Pin the start of newly assigned partitions: a group without offsets starts at the latest record,
        and committing that position at once means a restart never skips what arrives in between."""
        if not self._new_partitions or self.consumer is None:
            return
        consumer = self.consumer
        initial: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp in list(self._new_partitions):
            state = self.partitions.get(tp)
            if state is None:
                continue
            if state.tracker is None:
                state.start_at(await consumer.position(tp))
            if await consumer.committed(tp) is None:
                assert state.tracker is not None
                initial[tp] = OffsetAndMetadata(state.tracker.committable(), "")
        self._new_partitions.clear()
        if initial:
            try:
                await consumer.commit(initial)
            except KafkaError as err:
                log.warning("initial commit failed", extra={"egress": self.egress.id, "error": repr(err)})
        self.ready.set()

    # ------------------------------------------------------------------------------------- delivery

    def _pump(self) -> None:
        """Start deliveries while there is room, round-robin over partitions."""
        progressed = True
        while progressed and self.in_flight < self.max_in_flight:
            progressed = False
            for state in self.partitions.values():
                if state.revoked or not state.backlog:
                    continue
                if self.egress.delivery_order == "ordered" and state.tasks:
                    continue
                record = state.backlog.popleft()
                progressed = True
                self._start(state, record)
                if self.in_flight >= self.max_in_flight:
                    break
            for state in self.partitions.values():
                if state.paused and len(state.backlog) < PAUSE_BACKLOG // 2 and self.consumer is not None:
                    self.consumer.resume(state.tp)
                    state.paused = False

    def _start(self, state: PartitionState, record: ConsumerRecord) -> None:
        tracker = state.start_at(record.offset)
        try:
            event = self.decode(record)
            selected = event is not None and self.filter(event.attributes)
        except Exception as err:  # an undecodable record cannot be delivered; it must not block the partition
            log.warning("skipping undecodable record", extra={"egress": self.egress.id, "error": repr(err)})
            event, selected = None, False
        if not selected or event is None:
            tracker.passed(record.offset)
            self.m_filtered.inc()
            return
        tracker.started(record.offset)
        self.in_flight += 1
        self.m_in_flight.inc()
        task = asyncio.create_task(self._deliver(state, tracker, record.offset, event))
        state.tasks.add(task)

    async def _deliver(
        self, state: PartitionState, tracker: OffsetTracker, offset: int, event: events.Event
    ) -> None:
        started = time.perf_counter()
        try:
            outcome = await self.deliverer.deliver(self.egress, event, on_retry=self.m_retries.inc)
            count, latency = self._by_code(outcome.last.code)
            count.inc()
            latency.observe((time.perf_counter() - started) * 1000)
            if not outcome.delivered:
                await self._give_up(event, outcome.last)
            timestamp = event.meta.get("timestamp")
            if isinstance(timestamp, int) and timestamp > 0:
                self.m_processing.observe(max(0, time.time() * 1000 - timestamp))
            tracker.finished(offset)
        except Exception:
            # A bug must not block the partition forever; the event is counted and logged as dropped.
            log.exception(
                "delivery crashed", extra={"egress": self.egress.id, "event_id": event.attributes.get("id")}
            )
            metrics.DROPPED.labels(*self.labels, "internal_error").inc()
            tracker.finished(offset)
        finally:
            self.in_flight -= 1
            self.m_in_flight.dec()
            task = asyncio.current_task()
            state.tasks.discard(task)  # type: ignore[arg-type]
            self._pump()

    def _by_code(self, code: int) -> tuple[Any, Any]:
        children = self._code_metrics.get(code)
        if children is None:
            text = str(code)
            children = (
                metrics.EVENT_COUNT.labels(*self.labels, text, f"{text[0]}xx"),
                metrics.EVENT_DISPATCH_LATENCIES.labels(*self.labels, f"{text[0]}xx"),
            )
            self._code_metrics[code] = children
        return children

    async def _give_up(self, event: events.Event, failed: Attempt) -> None:
        failed_url = self.egress.destination or self.egress.reply.url or ""
        if self.egress.delivery.dead_letter_url is None:
            metrics.DROPPED.labels(*self.labels, "no_dead_letter_sink").inc()
            log.warning(
                "dropping event: delivery failed and there is no dead-letter sink",
                extra={"egress": self.egress.id, "event_id": event.attributes.get("id"), "code": failed.code},
            )
            return
        if await self.deliverer.dead_letter(self.egress, event, failed, failed_url):
            metrics.DEAD_LETTERED.labels(*self.labels).inc()
        else:
            metrics.DROPPED.labels(*self.labels, "dead_letter_sink_failed").inc()

    # -------------------------------------------------------------------------------------- commits

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        consumer = self.consumer
        if consumer is None:
            return
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, state in self.partitions.items():
            if (only is not None and tp not in only) or state.tracker is None:
                continue
            position = state.tracker.committable()
            if position > state.committed:
                offsets[tp] = OffsetAndMetadata(position, "")
        if offsets:
            try:
                await consumer.commit(offsets)
            except KafkaError as err:
                log.warning("commit failed; will retry", extra={"egress": self.egress.id, "error": repr(err)})
                offsets = {}
        for tp, meta in offsets.items():
            if tp in self.partitions:
                self.partitions[tp].committed = meta.offset
        self._update_lag(consumer)

    def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Lag = records on the partition not yet committed; it grows while a subscriber is stuck."""
        for tp, state in self.partitions.items():
            highwater = consumer.highwater(tp)
            if highwater is not None and state.tracker is not None:
                lag = max(0, highwater - state.committed)
                metrics.CONSUMER_LAG.labels(*self.labels, str(tp.partition)).set(lag)

    def _forget_lag(self, partitions: list[TopicPartition]) -> None:
        """A partition this member no longer owns is reported by its new owner, not by us."""
        for tp in partitions:
            try:
                metrics.CONSUMER_LAG.remove(*self.labels, str(tp.partition))
            except KeyError:
                pass

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Let in-flight deliveries of revoked partitions finish briefly, commit, then abandon the rest
        (the next owner redelivers them: at least once)."""
        self._new_partitions -= set(revoked)
        states = [self.partitions[tp] for tp in revoked if tp in self.partitions]
        for state in states:
            state.revoked = True
            state.backlog.clear()
        tasks = [t for s in states for t in s.tasks]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await self._commit(set(revoked))
        for state in states:
            for task in state.tasks:
                task.cancel()
            self.partitions.pop(state.tp, None)
        self._forget_lag([state.tp for state in states])

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            self.partitions[tp] = PartitionState(tp)
        self._new_partitions |= set(assigned)
