"""Which record of an egress to deliver next, and which offsets may be committed — without Kafka.

Records queue per partition; deliveries start while fewer than the in-flight limit run (one at a time in
ordered mode), round-robin over partitions; a partition whose queue is long is paused and resumed once it
drained to half. The offset to commit is the first one still in flight (``OffsetTracker``). The consumer
feeds this what Kafka gives it and does what it answers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from typing import Generic, Protocol, TypeVar

from dispatcher.offsets import OffsetTracker

PAUSE_BACKLOG = 1000  # records queued in one partition before it is paused
# Commit metadata carrying retry state: "keventing-retries:<offset>:<failed attempts>[:<next attempt due, epoch
# ms>],…" for at most this many offsets (Kafka's offset.metadata.max.bytes is 4096 by default).
RETRY_STATE_PREFIX = "keventing-retries:"
MAX_RETRY_STATE = 96


class HasOffset(Protocol):
    @property
    def offset(self) -> int: ...


P = TypeVar("P", bound=Hashable)  # a partition: aiokafka's TopicPartition
R = TypeVar("R", bound=HasOffset)  # a record: aiokafka's ConsumerRecord


class Passed:
    """In a backlog: the records up to ``offset`` that were not queued need no delivery (filtered out)."""

    __slots__ = ("offset",)

    def __init__(self, offset: int) -> None:
        self.offset = offset


class PartitionState(Generic[P, R]):
    def __init__(self, partition: P) -> None:
        self.partition = partition
        # Created at the first known position: the first fetched record, or the position when idle.
        self.tracker: OffsetTracker | None = None
        self.backlog: deque[R | Passed] = deque()
        self.fed: int | None = None  # one past the last offset added: where the records added next begin
        self.in_flight = 0
        self.committed = -1
        self.paused = False
        self.revoked = False
        # Failed attempts of in-flight offsets (made here, or before a restart as the commit metadata says);
        # ``attempts_changed`` until committed with the offset.
        self.attempts: dict[int, int] = {}
        self.due: dict[int, float] = {}  # wall-clock seconds of the next attempt of a retried offset
        self.attempts_changed = False

    def start_at(self, offset: int) -> OffsetTracker:
        if self.tracker is None:
            self.tracker = OffsetTracker(offset)
            self.committed = offset
        return self.tracker


class Schedule(Generic[P, R]):
    def __init__(self, max_in_flight: int, ordered: bool, pause_backlog: int = PAUSE_BACKLOG) -> None:
        self.ordered = ordered
        self.max_in_flight = 1 if ordered else max_in_flight
        self.pause_backlog = pause_backlog
        self.partitions: dict[P, PartitionState[P, R]] = {}
        self.in_flight = 0

    # ----------------------------------------------------------------------------------- assignment

    def assign(self, partitions: Iterable[P]) -> None:
        for partition in partitions:
            self.partitions[partition] = PartitionState(partition)

    def revoke(self, partitions: Collection[P]) -> list[PartitionState[P, R]]:
        """Stop handing out records of ``partitions``; their deliveries in flight may still finish."""
        states = [self.partitions[p] for p in partitions if p in self.partitions]
        for state in states:
            state.revoked = True
            state.backlog.clear()
        return states

    def drop(self, partitions: Iterable[P]) -> None:
        for partition in partitions:
            self.partitions.pop(partition, None)

    # ------------------------------------------------------------------------------------- records

    def add(self, partition: P, records: Sequence[R], end: int | None = None) -> bool:
        """Queue fetched records; True when the partition is to be paused now.

        ``end``: the last offset of the batch the records were selected from, when the others were already
        found to need no delivery (a shared fetch filters once for many egresses); they are passed in order.
        """
        state = self.partitions.get(partition)
        if state is None or state.revoked:
            return False
        if end is None:
            if not records:
                return False
            end = records[-1].offset
        tracker = state.start_at(records[0].offset if records else end)
        state.fed = end + 1
        if records:
            state.backlog.extend(records)
        if not records or records[-1].offset < end:
            if state.backlog:
                state.backlog.append(Passed(end))
            else:
                tracker.passed(end)
        if len(state.backlog) >= self.pause_backlog and not state.paused:
            state.paused = True
            return True
        return False

    def pump(self, start: Callable[[PartitionState[P, R], R], bool]) -> None:
        """Hand out records while there is room, round-robin over partitions.

        ``start(state, record)`` answers whether it started a delivery (False: the record needs none, e.g.
        filtered out); each started one is to be ended with ``finished`` or ``abandoned``.
        """
        progressed = True
        while progressed and self.in_flight < self.max_in_flight:
            progressed = False
            for state in self.partitions.values():
                if state.revoked or not state.backlog:
                    continue
                if self.ordered and state.in_flight:
                    continue
                record = state.backlog.popleft()
                progressed = True
                tracker = state.start_at(record.offset)
                if isinstance(record, Passed):
                    tracker.passed(record.offset)
                    continue
                if start(state, record):
                    tracker.started(record.offset)
                    state.in_flight += 1
                    self.in_flight += 1
                else:
                    tracker.passed(record.offset)
                if self.in_flight >= self.max_in_flight:
                    break

    def resumable(self) -> list[P]:
        """Paused partitions whose queue drained to half: to be resumed now."""
        resumed = []
        for state in self.partitions.values():
            if state.paused and len(state.backlog) < self.pause_backlog // 2:
                state.paused = False
                resumed.append(state.partition)
        return resumed

    def finished(self, state: PartitionState[P, R], offset: int) -> None:
        """The delivery of ``offset`` ended (delivered, dead-lettered or given up on): it may be committed."""
        assert state.tracker is not None
        state.tracker.finished(offset)
        if state.attempts.pop(offset, None) is not None:
            state.attempts_changed = True
        state.due.pop(offset, None)
        self._release(state)

    # ------------------------------------------------------------------------------ retry state

    def failed_attempts(self, state: PartitionState[P, R], offset: int) -> int:
        return state.attempts.get(offset, 0)

    def due(self, state: PartitionState[P, R], offset: int) -> float | None:
        return state.due.get(offset)

    def attempted(
        self, state: PartitionState[P, R], offset: int, failed: int, due: float | None = None
    ) -> None:
        """``offset`` has failed ``failed`` times, the next attempt ``due`` then (wall-clock seconds; None:
        no more): to be committed with the partition's next commit."""
        state.attempts[offset] = failed
        if due is None:
            state.due.pop(offset, None)
        else:
            state.due[offset] = due
        state.attempts_changed = True

    def metadata(self, partition: P) -> str:
        """The commit metadata of ``partition``: the failed attempts of offsets not yet finished, so that a
        new owner (a restarted dispatcher, a rebalance) resumes their retries instead of starting over."""
        state = self.partitions.get(partition)
        if state is None or not state.attempts:
            return ""
        kept = sorted(state.attempts.items())[:MAX_RETRY_STATE]
        items = []
        for offset, failed in kept:
            due = state.due.get(offset)
            items.append(f"{offset}:{failed}" if due is None else f"{offset}:{failed}:{int(due * 1000)}")
        return RETRY_STATE_PREFIX + ",".join(items)

    def resume(self, partition: P, metadata: str | None) -> None:
        """Take the retry state a previous owner committed for ``partition`` (anything else is ignored)."""
        state = self.partitions.get(partition)
        if state is None or not metadata or not metadata.startswith(RETRY_STATE_PREFIX):
            return
        for item in metadata[len(RETRY_STATE_PREFIX) :].split(","):
            offset, _, rest = item.partition(":")
            failed, _, due = rest.partition(":")
            if offset.isdigit() and failed.isdigit() and int(offset) not in state.attempts:
                state.attempts[int(offset)] = int(failed)
                if due.isdigit():
                    state.due[int(offset)] = int(due) / 1000

    def abandoned(self, state: PartitionState[P, R], offset: int) -> None:
        """The delivery of ``offset`` was cancelled: it stays uncommitted, the partition's next owner redelivers."""
        self._release(state)

    def _release(self, state: PartitionState[P, R]) -> None:
        state.in_flight -= 1
        self.in_flight -= 1

    # ------------------------------------------------------------------------------------- commits

    def to_commit(self, only: Collection[P] | None = None) -> dict[P, int]:
        """The partitions whose committable offset moved past the last commit, with that offset."""
        offsets: dict[P, int] = {}
        for partition, state in self.partitions.items():
            if (only is not None and partition not in only) or state.tracker is None:
                continue
            position = state.tracker.committable()
            if position > state.committed or state.attempts_changed:
                offsets[partition] = position
        return offsets

    def committed(self, offsets: dict[P, int]) -> None:
        for partition, offset in offsets.items():
            state = self.partitions.get(partition)
            if state is not None:
                state.committed = offset
                state.attempts_changed = False

    def lag(self, partition: P, highwater: int | None) -> int | None:
        """Records on the partition not yet committed; it grows while a subscriber is stuck."""
        state = self.partitions.get(partition)
        if highwater is None or state is None or state.tracker is None:
            return None
        return max(0, highwater - state.committed)
