"""One consumer group per egress: moves records from Kafka to the dispatcher and offsets back to Kafka.

The poll loop never waits for a delivery: records queue in the schedule, deliveries run as tasks, and a
partition the schedule says is backed up is paused, so heartbeats and poll deadlines are always met however
slow the subscriber. What to deliver next and what to commit is the schedule's call (``scheduling``); what
happens to one event is the dispatcher's (``dispatch``).

Given a shared fetch (Triggers), the consumer keeps its group membership, heartbeats and commits, but pauses
every partition it is assigned and attaches it to the shared fetch, which feeds it its share of records
read once for every Trigger (``sharedfetch``). A partition backed up past the schedule's bound is detached:
the consumer seeks to where its share ended and reads it alone, until it caught up with the shared fetch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from dispatcher.dispatch import RecordDispatcher
from dispatcher.metrics import EgressMetrics
from dispatcher.scheduling import PartitionState, Schedule
from dispatcher.sharedfetch import Attributes, SharedFetch
from keventing import events
from keventing.contract import Egress
from keventing.kafka.client import make_consumer, stop_within
from keventing.kafka.connection import KafkaConnection
from keventing.kafka.rebalance import RebalanceListener
from keventing.restarting import restarting

log = logging.getLogger("keventing.dispatcher")

COMMIT_INTERVAL = 0.2
LAG_REFRESH = 1.0  # seconds between end-offset queries for paused partitions

State = PartitionState[TopicPartition, ConsumerRecord]


class EgressConsumer:
    def __init__(
        self,
        egress: Egress,
        connection: KafkaConnection,
        dispatcher: RecordDispatcher,
        metrics: EgressMetrics,
        max_in_flight: int,
        shared: SharedFetch | None = None,
        fetch_options: Mapping[str, int] | None = None,
    ) -> None:
        self.egress = egress
        self.fetch_options = dict(fetch_options or {})  # make_consumer's fetch_min_bytes, fetch_max_wait_ms
        # The egress's own cluster (a KafkaSource's, a Broker's kafka-broker-config's), else the dispatcher's.
        self.connection = egress.connection or connection
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.schedule: Schedule[TopicPartition, ConsumerRecord] = Schedule(
            max_in_flight, ordered=egress.delivery_order == "ordered"
        )
        self.deliveries: dict[asyncio.Task[None], State] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self._new_partitions: set[TopicPartition] = set()
        self._ends: dict[TopicPartition, int] = {}
        self._ends_at = 0.0
        self.ready = asyncio.Event()
        # Partitions the shared fetch reads for this consumer (paused in its own consumer meanwhile).
        self.shared = shared
        self.attached: set[TopicPartition] = set()
        self.stopping = False  # shutting down: a cancelled delivery must not start the next one

    # ------------------------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        await restarting(self._consume, log, "consumer failed; restarting", {"egress": self.egress.id})

    async def _consume(self) -> None:
        consumer = make_consumer(
            self.connection,
            self.egress.consumer_group,
            auto_offset_reset=self.egress.initial_offset,
            **self.fetch_options,
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
                if self.shared is not None and self.attached >= self.schedule.partitions.keys():
                    # Nothing to read of its own: poll only to keep its place in the group (the poll
                    # deadline, errors), and wake for commits; a hundred idle Triggers cost next to nothing.
                    batches = await consumer.getmany(timeout_ms=0)
                    await asyncio.sleep(COMMIT_INTERVAL)
                else:
                    batches = await consumer.getmany(timeout_ms=100, max_records=500)
                for tp, records in batches.items():
                    if tp in self.attached:
                        continue  # the shared fetch feeds it (paused here: only a race could get here)
                    if self.schedule.add(tp, records):
                        consumer.pause(tp)
                await self._init_new_partitions()
                self._pump()
                if time.monotonic() - last_commit >= COMMIT_INTERVAL:
                    self._rejoin()
                    await self._commit()
                    last_commit = time.monotonic()
        finally:
            await self._shutdown(consumer)

    async def _shutdown(self, consumer: AIOKafkaConsumer) -> None:
        self.stopping = True
        for tp in list(self.attached):
            self._detach(tp, read_alone=False)
        tasks = list(self.deliveries)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self._commit(), 5)
        except Exception:
            pass
        self._forget_lag(list(self.schedule.partitions))
        self.schedule.drop(list(self.schedule.partitions))
        self.consumer = None
        await stop_within(consumer)
        self.stopping = False  # restarting() may run _consume again

    async def _init_new_partitions(self) -> None:
        """Pin the start of newly assigned partitions: a group without offsets starts at the latest record,
        and committing that position at once means a restart never skips what arrives in between."""
        if not self._new_partitions or self.consumer is None:
            return
        consumer = self.consumer
        initial: dict[TopicPartition, OffsetAndMetadata] = {}
        # Taken now: a rebalance during the awaits below may revoke these and assign others (or these again).
        new, self._new_partitions = self._new_partitions, set()
        for tp in new:
            state = self.schedule.partitions.get(tp)
            if state is None:
                continue
            position = await consumer.position(tp)
            tracker = state.tracker or state.start_at(position)
            # aiokafka's committed() drops the metadata, where a previous owner left its retry state.
            committed = (await consumer._coordinator.fetch_committed_offsets([tp])).get(tp)
            if committed is None or committed.offset < 0:
                initial[tp] = OffsetAndMetadata(tracker.committable(), "")
            else:
                self.schedule.resume(tp, committed.metadata)
            if self.shared is not None and self.schedule.partitions.get(tp) is state and not state.revoked:
                # Paused since assigned: its own consumer's position is exactly where the share begins.
                self._attach(tp, position)
        if initial:
            try:
                await consumer.commit(initial)
            except KafkaError as err:
                log.warning("initial commit failed", extra={"egress": self.egress.id, "error": repr(err)})
        self.ready.set()

    # ------------------------------------------------------------------------------------- delivery

    def _pump(self) -> None:
        if self.stopping:
            return
        self.schedule.pump(self._start)
        if self.consumer is not None:
            for tp in self.schedule.resumable():
                if tp not in self.attached:
                    self.consumer.resume(tp)

    # --------------------------------------------------------------------------------- shared fetch

    def feed(
        self, partition: TopicPartition, records: Sequence[ConsumerRecord], attributes: Sequence[Attributes]
    ) -> None:
        """The shared fetch's share of a batch: binary-mode records the filter refuses are passed over here,
        on the attributes decoded once for every Trigger; the rest are queued as if fetched by this consumer."""
        accepts = self.dispatcher.accepts
        selected: Sequence[ConsumerRecord] = records
        if accepts is not None:
            try:
                selected = [
                    record
                    for record, attrs in zip(records, attributes, strict=True)
                    if attrs is None or "specversion" not in attrs or accepts(attrs)
                ]
            except Exception:  # the dispatcher's own selection logs what is wrong with the record
                selected = records
            if len(selected) < len(records):
                self.metrics.filtered.inc(len(records) - len(selected))
        if self.schedule.add(partition, selected, end=records[-1].offset):
            # Backed up: stop holding the others' records for it, read on alone once the backlog drained.
            self._detach(partition, read_alone=True)
        if selected:
            self._pump()

    def read_alone(self, partition: TopicPartition, offset: int) -> None:
        self.attached.discard(partition)
        self.metrics.attached.set(len(self.attached))
        consumer = self.consumer
        state = self.schedule.partitions.get(partition)
        if consumer is None or state is None or state.revoked:
            return
        consumer.seek(partition, offset)
        if not state.paused:  # a paused one is resumed by _pump once its backlog drained
            consumer.resume(partition)

    def _rejoin(self) -> None:
        """A partition read alone since it backed up goes back to the shared fetch once it caught up."""
        shared, consumer = self.shared, self.consumer
        if shared is None or consumer is None:
            return
        for tp, state in self.schedule.partitions.items():
            if tp in self.attached or state.revoked or state.paused or state.fed is None:
                continue
            if len(state.backlog) < self.schedule.pause_backlog // 2 and shared.near(
                tp, state.fed, consumer.highwater(tp)
            ):
                # Everything before ``fed`` is in the schedule; the shared fetch hands the rest.
                consumer.pause(tp)
                self._attach(tp, state.fed)

    def _attach(self, partition: TopicPartition, offset: int) -> None:
        assert self.shared is not None
        self.attached.add(partition)
        self.metrics.attached.set(len(self.attached))
        self.shared.attach(partition, self, offset)

    def _detach(self, partition: TopicPartition, read_alone: bool) -> None:
        if partition not in self.attached or self.shared is None:
            return
        offset = self.shared.detach(partition, self)
        self.attached.discard(partition)
        self.metrics.attached.set(len(self.attached))
        if read_alone and offset is not None:
            self.metrics.detached.inc()
            log.info(
                "Trigger backed up; reading the partition alone",
                extra={"egress": self.egress.id, "partition": partition.partition, "offset": offset},
            )
            self.read_alone(partition, offset)

    def _start(self, state: State, record: ConsumerRecord) -> bool:
        event = self.dispatcher.select(record)
        if event is None:
            return False
        self.metrics.in_flight.inc()
        task = asyncio.create_task(self._deliver(state, record.offset, event))
        self.deliveries[task] = state
        return True

    async def _deliver(self, state: State, offset: int, event: events.Event) -> None:
        done = False

        async def failed(attempts: int, due: float | None) -> None:
            # Persisted before the next attempt: a new owner of the partition resumes the count and the wait.
            self.schedule.attempted(state, offset, attempts, due)
            await self._commit({state.partition})

        try:
            made, due = self.schedule.failed_attempts(state, offset), self.schedule.due(state, offset)
            await self.dispatcher.dispatch(event, made, failed, due)
            done = True
        finally:
            if done:
                self.schedule.finished(state, offset)
            else:  # cancelled: the offset stays uncommitted
                self.schedule.abandoned(state, offset)
            self.metrics.in_flight.dec()
            self.deliveries.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._pump()

    # -------------------------------------------------------------------------------------- commits

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        consumer = self.consumer
        if consumer is None:
            return
        offsets = self.schedule.to_commit(only)
        if offsets:
            try:
                await consumer.commit(
                    {
                        tp: OffsetAndMetadata(offset, self.schedule.metadata(tp))
                        for tp, offset in offsets.items()
                    }
                )
            except KafkaError as err:
                log.warning("commit failed; will retry", extra={"egress": self.egress.id, "error": repr(err)})
                offsets = {}
        self.schedule.committed(offsets)
        ends = await self._paused_ends(consumer)
        for tp in self.schedule.partitions:
            highwater = consumer.highwater(tp)
            if tp in self.attached and self.shared is not None:
                highwater = self.shared.highwater(tp)
            if tp in ends:
                highwater = max(highwater or 0, ends[tp])
            lag = self.schedule.lag(tp, highwater)
            if lag is not None:
                self.metrics.lag(tp.partition).set(lag)

    async def _paused_ends(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
        """The end offsets of paused partitions. A paused partition is not fetched, so its high-water mark
        would stay where it was when it paused and the lag would under-report exactly when it matters:
        ask Kafka for them (ListOffsets) at most every LAG_REFRESH seconds."""
        # An attached partition is paused too, but the shared fetch knows its high-water mark.
        paused = [
            tp for tp in consumer.paused() if tp in self.schedule.partitions and tp not in self.attached
        ]
        now = time.monotonic()
        if paused and now - self._ends_at >= LAG_REFRESH:
            self._ends_at = now
            try:
                self._ends = dict(await consumer.end_offsets(paused))
            except KafkaError as err:
                log.debug("end offsets unavailable", extra={"egress": self.egress.id, "error": repr(err)})
        return {tp: end for tp, end in self._ends.items() if tp in paused}

    def _forget_lag(self, partitions: list[TopicPartition]) -> None:
        """A partition this member no longer owns is reported by its new owner, not by us."""
        for tp in partitions:
            self.metrics.forget_lag(tp.partition)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Let in-flight deliveries of revoked partitions finish briefly, commit, then abandon the rest
        (the next owner redelivers them: at least once)."""
        self._new_partitions -= set(revoked)
        for tp in revoked:
            self._detach(tp, read_alone=False)
        states = self.schedule.revoke(revoked)
        tasks = [task for task, state in self.deliveries.items() if state in states]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await self._commit(set(revoked))
        for task, state in list(self.deliveries.items()):
            if state in states:
                task.cancel()
        self.schedule.drop(state.partition for state in states)
        self._forget_lag([state.partition for state in states])

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.shared is not None and self.consumer is not None and assigned:
            # Before anything is fetched: the shared fetch reads these once they are positioned.
            self.consumer.pause(*assigned)
        self.schedule.assign(assigned)
        self._new_partitions |= set(assigned)
