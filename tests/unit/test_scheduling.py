"""Scheduling an egress's records without Kafka: in-flight limits, ordered gating, pause/resume, commits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.scheduling import PartitionState, Schedule


@dataclass(frozen=True)
class Record:
    offset: int
    wanted: bool = True  # False: filtered out, needs no delivery


State = PartitionState[int, Record]


class Starter:
    """Plays the consumer: starts a delivery for every wanted record and remembers it."""

    def __init__(self) -> None:
        self.started: list[tuple[State, int]] = []

    def __call__(self, state: State, record: Record) -> bool:
        if record.wanted:
            self.started.append((state, record.offset))
        return record.wanted


def _records(*offsets: int) -> list[Record]:
    return [Record(offset) for offset in offsets]


def test_deliveries_start_up_to_the_in_flight_limit_round_robin_over_partitions() -> None:
    schedule: Schedule[int, Record] = Schedule(max_in_flight=3, ordered=False)
    schedule.assign([0, 1])
    schedule.add(0, _records(10, 11, 12))
    schedule.add(1, _records(20, 21))
    starter = Starter()
    schedule.pump(starter)
    assert [(s.partition, offset) for s, offset in starter.started] == [(0, 10), (1, 20), (0, 11)]
    assert schedule.in_flight == 3
    state, offset = starter.started[0]
    schedule.finished(state, offset)
    schedule.pump(starter)
    assert len(starter.started) == 4  # one slot freed, one more started


def test_filtered_records_take_no_slot_and_move_the_commit_point() -> None:
    schedule: Schedule[int, Record] = Schedule(max_in_flight=1, ordered=False)
    schedule.assign([0])
    schedule.add(0, [Record(5, wanted=False), Record(6, wanted=False), Record(7)])
    starter = Starter()
    schedule.pump(starter)
    assert [o for _, o in starter.started] == [7]
    assert schedule.to_commit() == {0: 7}
    schedule.finished(*starter.started[0])
    assert schedule.to_commit() == {0: 8}


def test_ordered_mode_delivers_one_at_a_time() -> None:
    schedule: Schedule[int, Record] = Schedule(max_in_flight=100, ordered=True)
    schedule.assign([0])
    schedule.add(0, _records(0, 1, 2))
    starter = Starter()
    schedule.pump(starter)
    assert [o for _, o in starter.started] == [0]
    schedule.pump(starter)
    assert len(starter.started) == 1
    schedule.finished(*starter.started[0])
    schedule.pump(starter)
    assert [o for _, o in starter.started] == [0, 1]


def test_a_long_queue_pauses_the_partition_and_half_of_it_resumes_it() -> None:
    schedule: Schedule[int, Record] = Schedule(max_in_flight=1, ordered=False, pause_backlog=10)
    schedule.assign([0])
    assert not schedule.add(0, _records(*range(9)))
    assert schedule.add(0, _records(9, 10))  # 11 queued
    assert not schedule.add(0, _records(11))  # already paused
    assert schedule.resumable() == []
    starter = Starter()
    for _ in range(7):  # 12 queued; one delivery at a time drains it
        schedule.pump(starter)
        schedule.finished(*starter.started[-1])
    assert schedule.resumable() == []  # 5 queued: not below half yet
    schedule.pump(starter)
    assert schedule.resumable() == [0]  # 4 queued
    assert schedule.resumable() == []


def test_a_cancelled_delivery_frees_its_slot_but_is_never_committed() -> None:
    schedule: Schedule[int, Record] = Schedule(max_in_flight=2, ordered=False)
    schedule.assign([0])
    schedule.add(0, _records(3, 4))
    starter = Starter()
    schedule.pump(starter)
    schedule.abandoned(*starter.started[0])
    schedule.finished(*starter.started[1])
    assert schedule.in_flight == 0
    assert schedule.to_commit() == {}  # still at 3, where it started


def test_revoked_partitions_hand_out_nothing_and_drop_their_queue() -> None:
    schedule: Schedule[int, Record] = Schedule(max_in_flight=10, ordered=False)
    schedule.assign([0, 1])
    schedule.add(0, _records(0, 1))
    schedule.add(1, _records(0, 1))
    states = schedule.revoke({0})
    assert [s.partition for s in states] == [0]
    assert not schedule.add(0, _records(2))
    starter = Starter()
    schedule.pump(starter)
    assert {s.partition for s, _ in starter.started} == {1}
    schedule.drop([0])
    assert set(schedule.partitions) == {1}


def test_commits_report_only_offsets_past_the_last_commit_and_lag_counts_from_it() -> None:
    schedule: Schedule[int, Record] = Schedule(max_in_flight=10, ordered=False)
    schedule.assign([0])
    assert schedule.lag(0, 100) is None  # no known position yet
    schedule.add(0, _records(40, 41))
    starter = Starter()
    schedule.pump(starter)
    for started in starter.started:
        schedule.finished(*started)
    assert schedule.to_commit() == {0: 42}
    assert schedule.to_commit(only={1}) == {}
    schedule.committed({0: 42})
    assert schedule.to_commit() == {}
    assert schedule.lag(0, 50) == 8


# A scenario: records arrive on partitions, deliveries start, and finish in any order.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 2), st.integers(1, 6)),
        st.tuples(st.just("finish"), st.integers(0, 50), st.just(0)),
        st.tuples(st.just("pump"), st.just(0), st.just(0)),
    ),
    max_size=60,
)


Check = Callable[[Schedule[int, Record], list[tuple[State, int]]], None]


def _run(schedule: Schedule[int, Record], scenario: list[tuple[str, int, int]], check: Check) -> None:
    schedule.assign([0, 1, 2])
    next_offset = {0: 0, 1: 0, 2: 0}
    starter = Starter()
    running: list[tuple[State, int]] = []
    for action, a, b in scenario:
        if action == "add":
            records = [Record(next_offset[a] + i, wanted=(next_offset[a] + i) % 3 != 0) for i in range(b)]
            next_offset[a] += b
            schedule.add(a, records)
        elif action == "finish" and running:
            schedule.finished(*running.pop(a % len(running)))
        before = len(starter.started)
        schedule.pump(starter)
        running.extend(starter.started[before:])
        check(schedule, running)


@given(steps, st.integers(1, 5))
def test_the_commit_offset_never_passes_an_offset_in_flight(scenario: list, limit: int) -> None:
    def check(schedule: Schedule[int, Record], running: list[tuple[State, int]]) -> None:
        commits = schedule.to_commit()
        for state, offset in running:
            assert commits.get(state.partition, state.committed) <= offset
        assert schedule.in_flight == len(running) <= limit

    _run(Schedule(max_in_flight=limit, ordered=False), scenario, check)


@given(steps)
def test_ordered_mode_never_has_two_deliveries_of_a_partition_in_flight(scenario: list) -> None:
    def check(schedule: Schedule[int, Record], running: list[tuple[State, int]]) -> None:
        partitions = [state.partition for state, _ in running]
        assert len(partitions) == len(set(partitions))

    _run(Schedule(max_in_flight=8, ordered=True), scenario, check)


@given(st.lists(st.integers(1, 30), max_size=20), st.integers(2, 40))
def test_a_partition_is_paused_over_the_limit_and_resumed_below_half(batches: list[int], limit: int) -> None:
    schedule: Schedule[int, Record] = Schedule(max_in_flight=1, ordered=False, pause_backlog=limit)
    schedule.assign([0])
    offset = 0
    paused = False
    for size in batches:
        if schedule.add(0, _records(*range(offset, offset + size))):
            assert not paused
            paused = True
        offset += size
        queued = len(schedule.partitions[0].backlog)
        assert paused == (schedule.partitions[0].paused)
        if queued >= limit:
            assert paused
        starter = Starter()
        schedule.pump(starter)
        schedule.finished(*starter.started[0])
        resumed = schedule.resumable()
        if resumed:
            assert paused and len(schedule.partitions[0].backlog) < limit // 2
            paused = False
        elif paused:
            assert len(schedule.partitions[0].backlog) >= limit // 2


def test_failed_attempts_travel_in_the_commit_metadata_to_the_next_owner() -> None:
    first: Schedule[int, Record] = Schedule(max_in_flight=10, ordered=False)
    first.assign([0])
    first.add(0, _records(5, 6, 7))
    starter = Starter()
    first.pump(starter)
    (state, _), (_, _), (_, _) = starter.started
    first.committed(first.to_commit())
    assert first.to_commit() == {}
    first.attempted(state, 6, 2, due=1_700_000_000.25)
    first.attempted(state, 7, 1)
    assert first.to_commit() == {0: 5}  # the offset did not move, the retry state did
    metadata = first.metadata(0)
    first.committed({0: 5})
    assert first.to_commit() == {}
    first.finished(state, 7)
    assert "7:" not in first.metadata(0)

    # A new owner (after a crash) resumes from the committed position with the counts.
    second: Schedule[int, Record] = Schedule(max_in_flight=10, ordered=False)
    second.assign([0])
    second.resume(0, metadata)
    second.add(0, _records(5, 6, 7))
    restarted = Starter()
    second.pump(restarted)
    counts = {offset: second.failed_attempts(s, offset) for s, offset in restarted.started}
    assert counts == {5: 0, 6: 2, 7: 1}
    dues = {offset: second.due(s, offset) for s, offset in restarted.started}
    assert dues == {5: None, 6: 1_700_000_000.25, 7: None}


def test_commit_metadata_that_is_not_keventings_retry_state_is_ignored() -> None:
    schedule: Schedule[int, Record] = Schedule(max_in_flight=10, ordered=False)
    schedule.assign([0])
    for metadata in (None, "", "something else", "keventing-retries:x:1,5:y,:,7:"):
        schedule.resume(0, metadata)
    assert schedule.partitions[0].attempts == {}
    assert schedule.metadata(0) == ""


def test_records_filtered_out_before_queueing_are_passed_in_order_never_ahead_of_queued_ones() -> None:
    """A shared fetch queues only what the filter selected, with the end of the batch it came from."""
    schedule: Schedule[int, Record] = Schedule(max_in_flight=1, ordered=False)
    schedule.assign([0])
    schedule.partitions[0].start_at(10)
    schedule.add(0, [], end=12)  # 10..12 all filtered out: nothing queued, nothing to wait for
    assert schedule.to_commit() == {0: 13}
    schedule.add(0, _records(14), end=20)  # 13, 15..20 filtered out; 14 to deliver
    assert schedule.to_commit() == {0: 13}
    starter = Starter()
    schedule.pump(starter)
    assert [offset for _, offset in starter.started] == [14]
    assert schedule.to_commit() == {0: 14}  # 14 is in flight: 15..20 are not committed past it
    schedule.add(0, [], end=25)  # queued behind the marker of the previous batch
    schedule.finished(*starter.started[0])
    schedule.pump(starter)
    assert schedule.to_commit() == {0: 26}
    assert not schedule.partitions[0].backlog
