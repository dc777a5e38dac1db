"""The shared fetch's bookkeeping without Kafka: who gets which records of a partition read once for all."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.fanout import FanOut


@dataclass(frozen=True)
class Record:
    offset: int


def _records(*offsets: int) -> list[Record]:
    return [Record(offset) for offset in offsets]


def _shares(book: FanOut[int, str], records: list[Record]) -> dict[str, list[int]]:
    return {member: [r.offset for r in records[start:]] for member, start in book.split(0, records)}


def test_the_first_member_positions_the_shared_read_and_gets_every_record() -> None:
    book: FanOut[int, str] = FanOut()
    assert book.attach(0, "a", 10) == 10
    assert _shares(book, _records(10, 11, 12)) == {"a": [10, 11, 12]}
    assert book.partitions[0].cursor == 13


def test_a_member_behind_the_cursor_moves_it_back_and_the_others_get_nothing_twice() -> None:
    book: FanOut[int, str] = FanOut()
    book.attach(0, "a", 10)
    _shares(book, _records(10, 11, 12))
    assert book.attach(0, "b", 5) == 5  # the shared read seeks back to 5
    assert _shares(book, _records(5, 6, 7, 8, 9, 10, 11)) == {"b": [5, 6, 7, 8, 9, 10, 11]}
    assert _shares(book, _records(12, 13)) == {"a": [13], "b": [12, 13]}


def test_a_member_ahead_of_the_cursor_waits_for_its_own_offset() -> None:
    book: FanOut[int, str] = FanOut()
    book.attach(0, "a", 0)
    assert book.attach(0, "b", 3) is None  # no seek: the read goes on where it is
    assert _shares(book, _records(0, 1, 2)) == {"a": [0, 1, 2]}
    assert _shares(book, _records(3, 4)) == {"a": [3, 4], "b": [3, 4]}


def test_a_detaching_member_learns_where_its_share_ended_and_the_last_one_ends_the_read() -> None:
    book: FanOut[int, str] = FanOut()
    book.attach(0, "a", 0)
    book.attach(0, "b", 0)
    _shares(book, _records(0, 1, 2))
    assert book.detach(0, "a") == 3
    assert book.detach(0, "a") is None
    assert _shares(book, _records(3)) == {"b": [3]}
    assert book.detach(0, "b") == 4
    assert 0 not in book.partitions
    assert book.split(0, _records(4)) == []


# A member attaches at its position, detaches and reads alone, attaches again; the shared read reads at its
# cursor (seeking where the book says). Whatever the interleaving, each member sees every record of the log
# from where it started exactly once and in order: nothing skipped, nothing twice.
_OPS = st.lists(
    st.tuples(st.sampled_from(["attach", "detach", "read", "alone"]), st.integers(0, 3), st.integers(1, 7)),
    max_size=60,
)


@given(
    log=st.lists(st.integers(0, 3), min_size=1, max_size=80),
    starts=st.lists(st.integers(0, 40), min_size=4, max_size=4),
    ops=_OPS,
)
def test_every_member_gets_each_record_once_in_order_however_it_attaches_and_detaches(
    log: list[int], starts: list[int], ops: list[tuple[str, int, int]]
) -> None:
    offsets, at = [], 0
    for gap in log:  # offsets with gaps, as compaction or transaction markers leave them
        at += gap + 1
        offsets.append(at)
    book: FanOut[int, int] = FanOut()
    reader = 0  # the shared read's position
    position = dict(enumerate(starts))  # where each member reads next
    seen: dict[int, list[int]] = {m: [] for m in position}
    attached: set[int] = set()

    def read_from(start: int, count: int) -> list[Record]:
        return [Record(o) for o in offsets if o >= start][:count]

    for op, member, count in ops:
        if op == "attach" and member not in attached:
            seek = book.attach(0, member, position[member])
            attached.add(member)
            if seek is not None:
                reader = seek
        elif op == "detach" and member in attached:
            attached.discard(member)
            offset = book.detach(0, member)
            assert offset is not None
            position[member] = offset
        elif op == "read" and attached:
            records = read_from(reader, count)
            if records:
                for m, start in book.split(0, records):
                    seen[m] += [r.offset for r in records[start:]]
                reader = records[-1].offset + 1
        elif op == "alone" and member not in attached:
            records = read_from(position[member], count)
            seen[member] += [r.offset for r in records]
            if records:
                position[member] = records[-1].offset + 1
    for member in attached:
        offset = book.detach(0, member)
        assert offset is not None
        position[member] = offset
    for member, start in enumerate(starts):
        assert seen[member] == [o for o in offsets if start <= o < position[member]]
