"""Which Trigger gets which records of a partition that is read once for all of them — without Kafka.

A shared read of a partition has a cursor (the offset it reads next) and attached members, each with the
offset it is to be handed next. The cursor never passes a member: a member attaching behind it moves it
back (the others skip what they already have), and every batch read at the cursor is split so that each
member gets exactly the records from its own next offset on. A member detaching learns its next offset,
where it goes on reading alone: nothing is skipped, nothing handed twice.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Hashable, Sequence
from typing import Generic, TypeVar

from dispatcher.scheduling import HasOffset

P = TypeVar("P", bound=Hashable)  # a partition: aiokafka's TopicPartition
M = TypeVar("M")  # a member (hashable): a Trigger's consumer


class SharedPartition(Generic[M]):
    def __init__(self, cursor: int) -> None:
        self.cursor = cursor
        self.members: dict[M, int] = {}  # member -> the offset it is handed next


class FanOut(Generic[P, M]):
    def __init__(self) -> None:
        self.partitions: dict[P, SharedPartition[M]] = {}

    def attach(self, partition: P, member: M, offset: int) -> int | None:
        """``member`` is handed ``partition``'s records from ``offset`` on; the answer is the offset the
        shared read must seek to (a new partition, or a member behind the cursor), None to read on."""
        shared = self.partitions.get(partition)
        if shared is None:
            shared = self.partitions[partition] = SharedPartition(offset)
            shared.members[member] = offset
            return offset
        shared.members[member] = offset
        if offset < shared.cursor:
            shared.cursor = offset
            return offset
        return None

    def detach(self, partition: P, member: M) -> int | None:
        """The offset ``member`` is to read next on its own (None: it was not attached); a partition left
        without members is no longer read."""
        shared = self.partitions.get(partition)
        if shared is None:
            return None
        offset = shared.members.pop(member, None)
        if not shared.members:
            del self.partitions[partition]
        return offset

    def attached(self, partition: P, member: M) -> bool:
        shared = self.partitions.get(partition)
        return shared is not None and member in shared.members

    def split(self, partition: P, records: Sequence[HasOffset]) -> list[tuple[M, int]]:
        """Hand out a batch read at ``partition``'s cursor: each member whose next offset falls at or before
        the batch's last record, with the index of its first record in the batch. Those members, and the
        cursor, move past the batch."""
        shared = self.partitions.get(partition)
        if shared is None or not records:
            return []
        first, last = records[0].offset, records[-1].offset
        shares: list[tuple[M, int]] = []
        members = shared.members
        for member, offset in members.items():
            if offset > last:
                continue  # ahead of this batch (it attached ahead of the cursor)
            start = 0 if offset <= first else bisect_left(records, offset, key=_offset)
            shares.append((member, start))
            members[member] = last + 1
        shared.cursor = last + 1
        return shares


def _offset(record: HasOffset) -> int:
    return record.offset
