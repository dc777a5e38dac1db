"""PingSource schedules: standard five-field cron (plus ``@hourly``-style descriptors) in an IANA time zone.

Knative parses schedules with robfig/cron's ``ParseStandard``: five fields, descriptors such as ``@daily``,
``?`` as a synonym of ``*``, an optional ``CRON_TZ=<zone>`` prefix, and no ``@every``. This module accepts
the same language so that a schedule valid in Knative is valid here, and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


class InvalidSchedule(ValueError):
    """A schedule or time zone Knative would reject; ``field`` is ``schedule`` or ``timezone``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Schedule:
    expression: str
    zone: ZoneInfo | None = None

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment`` (an aware datetime), in UTC."""
        start = moment.astimezone(self.zone or UTC)
        tick: datetime = croniter(self.expression, start).get_next(datetime)
        return tick.astimezone(UTC)

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """The last tick at or before ``moment``, in UTC."""
        # croniter's get_prev is strict; a microsecond later makes a tick exactly at ``moment`` count.
        start = (moment + timedelta(microseconds=1)).astimezone(self.zone or UTC)
        tick: datetime = croniter(self.expression, start).get_prev(datetime)
        return tick.astimezone(UTC)


def parse_schedule(schedule: str, timezone: str | None = None) -> Schedule:
    """Validate ``schedule`` (and ``timezone``) the way Knative does; raise :class:`InvalidSchedule`."""
    expression = schedule.strip()
    zone_name = timezone or None
    for prefix in ("CRON_TZ=", "TZ="):
        if expression.startswith(prefix):
            zone_part, _, expression = expression[len(prefix) :].partition(" ")
            zone_name = zone_part  # the prefix wins, as in robfig/cron
            expression = expression.strip()
    if "@every" in expression:
        raise InvalidSchedule("schedule", "unsupported descriptor @every")
    if expression.startswith("@"):
        if expression not in DESCRIPTORS:
            raise InvalidSchedule("schedule", f"unrecognized descriptor: {expression}")
    elif len(expression.split()) != 5:
        raise InvalidSchedule(
            "schedule", f"expected exactly 5 fields (minute hour day month weekday), found {expression!r}"
        )
    if not croniter.is_valid(expression):
        raise InvalidSchedule("schedule", f"{expression!r} is not a valid cron expression")
    zone: ZoneInfo | None = None
    if zone_name:
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidSchedule(
                "timezone", f"provided bad location {zone_name}: unknown time zone"
            ) from None
    return Schedule(expression, zone)
