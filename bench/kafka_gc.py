"""The broker's stop-the-world pauses, from the GC log the embedded Kafka writes, and which slow events they
explain.

A JVM's young collection stops every broker thread: produce requests wait for their acknowledgement and
fetches for their answer, so every event in flight is late by the pause and by the catch-up after it. On a
two-core machine the end-to-end tail at 5,000 events/s follows those pauses (``kafkaServer-gc.log`` beside
the sink's slowest events), which is why the end-to-end scenario reports them: a p99 that moved because
the broker collected more often is told apart from one that moved because keventing got slower.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

# "[2026-12-04T21:18:36.076+0000][65.679s] GC(37) Pause Young (Normal) (G1 Evacuation Pause) 323M->175M(369M) 8.111ms"
# The line is written when the pause ends; ZGC's "Pause Mark Start 0.009ms" has the same shape.
_PAUSE = re.compile(r"^\[(?P<time>[^\]]+)\](?:\[[^\]]*\])* GC\(\d+\) Pause .* (?P<ms>\d+(?:\.\d+)?)ms$")


@dataclass(frozen=True)
class Pause:
    start: float  # wall-clock seconds
    end: float

    @property
    def ms(self) -> float:
        return (self.end - self.start) * 1000


def parse(lines: Iterable[str]) -> list[Pause]:
    """Every pause the lines record, in the order written (lines that are not a pause are skipped)."""
    pauses = []
    for line in lines:
        match = _PAUSE.match(line.rstrip())
        if match is None:
            continue
        end = datetime.strptime(match["time"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
        pauses.append(Pause(end - float(match["ms"]) / 1000, end))
    return pauses


def read(path: Path, since: float, until: float) -> list[Pause]:
    """The pauses that ended between ``since`` and ``until`` (wall-clock s), from ``path`` and the JVM's
    rotated files beside it (``path.0``, ``path.1``…)."""
    files = sorted(path.parent.glob(f"{path.name}.*")) + [path]
    pauses = [
        p for file in files if file.is_file() for p in parse(file.read_text(errors="replace").splitlines())
    ]
    return sorted((p for p in pauses if since <= p.end <= until), key=lambda p: p.end)


def overlapping(slow: Sequence[tuple[float, float]], pauses: Sequence[Pause]) -> int:
    """How many of the ``slow`` events (wall-clock send time, latency, both in s) were in flight while the
    broker was paused: an event sent just after a pause ended and late from the catch-up is not counted, so
    this is the least the pauses explain."""
    return sum(1 for sent, latency in slow if any(p.start < sent + latency and sent < p.end for p in pauses))


def summary(pauses: Sequence[Pause], slow: Sequence[tuple[float, float]]) -> dict[str, float | int | None]:
    """Count, total and longest pause; and of the events over the sink's slow threshold, how many were in
    flight during one."""
    return {
        "pauses": len(pauses),
        "total_ms": round(sum(p.ms for p in pauses), 1),
        "max_ms": round(max((p.ms for p in pauses), default=0.0), 1),
        "slow_events": len(slow),
        "slow_in_pause": overlapping(slow, pauses),
    }
