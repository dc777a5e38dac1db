"""The scheduler's clock: wall time, or a manual clock that moves only when told (``POST /clock``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    manual: bool

    def now(self) -> datetime: ...


class WallClock:
    manual = False

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """Starts at wall time and then stands still; ``set`` and ``advance`` move it."""

    manual = True

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = moment.astimezone(UTC)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward; use set to reset it")
        self._now += timedelta(seconds=seconds)
