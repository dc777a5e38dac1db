"""PingSource and the timer IntegrationSource: a scheduler that sends each source's event at every tick.

A PingSource ticks on its cron schedule; a timer every ``period`` milliseconds from when it was scheduled,
``repeatCount`` times at most (counted by this runner: a runner that takes the source over starts again).
Like robfig/cron (what Knative uses), a schedule that fell behind fires once for its latest due tick and
then looks forward from now: ticks missed while nothing ran are not replayed. ``fire_due`` is the whole
decision and is driven either by wall time (``run``) or by whoever moves a manual clock.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from keventing import events
from keventing.contract import Source
from keventing.cron import parse_schedule
from keventing.resources.integrations import TIMER_EVENT_SOURCE, TIMER_EVENT_SUBJECT, TIMER_EVENT_TYPE
from keventing.resources.sources import PING_EVENT_TYPE, ping_event_source
from sources.clock import Clock

log = logging.getLogger("keventing.sources")

Send = Callable[[Source, events.Event], Coroutine[Any, Any, object]]
# Attributes an override must not replace: they say what the event is.
_RESERVED = frozenset({"specversion", "id", "type", "source"})
MAX_SLEEP = 30.0


def ping_event(source: Source, tick: datetime, event_id: str | None = None) -> events.Event:
    """The event a PingSource sends for ``tick``: Knative's type and source, the data, the overrides."""
    assert source.ping is not None
    attributes = {
        "specversion": events.SPECVERSION,
        "id": event_id or str(uuid.uuid4()),
        "source": ping_event_source(source.namespace, source.name),
        "type": PING_EVENT_TYPE,
        "time": tick.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    _override(attributes, source)
    ping = source.ping
    if ping.content_type:
        attributes["datacontenttype"] = ping.content_type
    data = base64.b64decode(ping.data_base64) if ping.data_base64 is not None else None
    return events.Event(attributes, data)


def timer_event(source: Source, tick: datetime, event_id: str | None = None) -> events.Event:
    """The event a timer IntegrationSource sends: Knative's timer connector's attributes, the message."""
    assert source.timer is not None
    attributes = {
        "specversion": events.SPECVERSION,
        "id": event_id or str(uuid.uuid4()),
        "source": TIMER_EVENT_SOURCE,
        "type": TIMER_EVENT_TYPE,
        "subject": TIMER_EVENT_SUBJECT,
        # Milliseconds: a timer's period is in milliseconds.
        "time": tick.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "datacontenttype": source.timer.content_type,
    }
    _override(attributes, source)
    return events.Event(attributes, source.timer.message.encode())


def _override(attributes: dict[str, str], source: Source) -> None:
    for name, value in source.ce_overrides.items():
        if name not in _RESERVED:
            attributes[name] = value


class Ticks(Protocol):
    def next_after(self, moment: datetime) -> datetime: ...

    def latest_at_or_before(self, moment: datetime) -> datetime: ...


@dataclass(frozen=True)
class Interval:
    """Ticks every ``period`` after ``start`` (not at it): a timer's."""

    start: datetime
    period: timedelta

    def next_after(self, moment: datetime) -> datetime:
        if moment < self.start:
            return self.start + self.period
        return self.start + self.period * ((moment - self.start) // self.period + 1)

    def latest_at_or_before(self, moment: datetime) -> datetime:
        return self.start + self.period * max(1, (moment - self.start) // self.period)


@dataclass
class Scheduled:
    source: Source
    schedule: Ticks
    next_tick: datetime | None
    # Ticks left (a timer's repeatCount); None: no end.
    remaining: int | None = None


class PingScheduler:
    def __init__(self, clock: Clock, send: Send) -> None:
        self.clock = clock
        self.send = send
        self.entries: dict[str, Scheduled] = {}
        self._wake = asyncio.Event()
        self._sending: set[asyncio.Task[object]] = set()

    def put(self, source: Source) -> None:
        current = self.entries.get(source.id)
        if current is not None and current.source == source:
            return
        now = self.clock.now()
        schedule: Ticks
        remaining = None
        if source.timer is not None:
            schedule = Interval(now, timedelta(milliseconds=source.timer.period_ms))
            remaining = source.timer.repeat_count
        else:
            assert source.ping is not None
            schedule = parse_schedule(source.ping.schedule, source.ping.timezone)
        self.entries[source.id] = Scheduled(source, schedule, schedule.next_after(now), remaining)
        self._wake.set()

    def remove(self, source_id: str) -> None:
        if self.entries.pop(source_id, None) is not None:
            self._wake.set()

    def reset(self) -> None:
        """Look forward from the clock's new time (after it was set rather than advanced)."""
        now = self.clock.now()
        for entry in self.entries.values():
            if isinstance(entry.schedule, Interval):  # a timer counts its periods from the new time
                entry.schedule = Interval(now, entry.schedule.period)
            if entry.next_tick is not None:
                entry.next_tick = entry.schedule.next_after(now)
        self._wake.set()

    def fire_due(self) -> int:
        """Send the event of every schedule whose tick has come; return how many were sent."""
        now = self.clock.now()
        fired = 0
        for entry in list(self.entries.values()):
            if entry.next_tick is None or entry.next_tick > now:
                continue
            tick = entry.schedule.latest_at_or_before(now)
            entry.next_tick = entry.schedule.next_after(now)
            if entry.remaining is not None:
                entry.remaining -= 1
                if entry.remaining <= 0:
                    entry.next_tick = None  # done: kept, so that the same source is not counted afresh
            make = timer_event if entry.source.timer is not None else ping_event
            task = asyncio.create_task(self.send(entry.source, make(entry.source, tick)))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
            fired += 1
        return fired

    async def run(self) -> None:
        try:
            while True:
                self.fire_due()
                self._wake.clear()
                timeout = None if self.clock.manual else self._seconds_to_next()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass
        finally:
            for task in list(self._sending):
                task.cancel()
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _seconds_to_next(self) -> float:
        if not self.entries:
            return MAX_SLEEP
        ticks = [entry.next_tick for entry in self.entries.values() if entry.next_tick is not None]
        if not ticks:
            return MAX_SLEEP
        earliest = min(ticks)
        return min(MAX_SLEEP, max(0.0, (earliest - self.clock.now()).total_seconds()))
