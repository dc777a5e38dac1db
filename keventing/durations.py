"""ISO-8601 durations as Knative's DeliverySpec uses them (``PT1S``, ``PT0.5S``, ``P1DT2H``)."""

from __future__ import annotations

import re

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_SECONDS = {"weeks": 604800.0, "days": 86400.0, "hours": 3600.0, "minutes": 60.0, "seconds": 1.0}


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise ValueError with a hint when ``text`` is not ISO-8601."""
    match = _DURATION.match(text.strip().upper()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{text!r} is not an ISO-8601 duration (examples: PT1S, PT0.2S, PT10M)")
    return sum(float(v) * _SECONDS[k] for k, v in match.groupdict().items() if v)
