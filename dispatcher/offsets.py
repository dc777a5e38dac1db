"""Offset tracking: which offset of a partition may be committed while deliveries finish out of order."""

from __future__ import annotations

import heapq


class OffsetTracker:
    """Tracks the offsets of one partition that were handed out and those that finished.

    The committable offset is the first offset still in flight (Kafka commits "the next offset to read"),
    or one past the highest finished offset when nothing is in flight.
    """

    def __init__(self, start: int) -> None:
        self._next = start  # one past the last offset handed out (or the start position)
        self._in_flight: set[int] = set()
        self._heap: list[int] = []

    def started(self, offset: int) -> None:
        self._in_flight.add(offset)
        heapq.heappush(self._heap, offset)
        if offset >= self._next:
            self._next = offset + 1

    def passed(self, offset: int) -> None:
        """An offset that needs no delivery (filtered out): it only moves the end forward."""
        if offset >= self._next:
            self._next = offset + 1

    def finished(self, offset: int) -> None:
        self._in_flight.discard(offset)

    def committable(self) -> int:
        heap = self._heap
        while heap and heap[0] not in self._in_flight:
            heapq.heappop(heap)
        return heap[0] if heap else self._next
