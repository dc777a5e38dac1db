"""bench.kafka_gc: the broker's pauses read from a JVM GC log, and the slow events they account for."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from bench import kafka_gc

# As the JVM writes them with -Xlog:gc:...:time,uptime (G1, then ZGC's shape).
LOG = """\
[2026-12-04T21:18:30.001+0000][0.004s] Using G1
[2026-12-04T21:18:36.076+0000][65.679s] GC(37) Pause Young (Normal) (G1 Evacuation Pause) 323M->175M(369M) 8.111ms
[2026-12-04T21:18:39.480+0000][69.083s] GC(38) Pause Young (Normal) (G1 Evacuation Pause) 323M->175M(369M) 10.937ms
[2026-12-04T21:18:40.000+0000][69.600s] GC(38) Concurrent Mark Cycle 120.000ms
[2026-12-04T21:18:47.121+0000][81.970s] GC(12) Pause Relocate Start 0.014ms
"""


def wall(clock: str) -> float:
    return datetime.strptime(f"2026-12-04T{clock}+0000", "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def test_pauses_are_read_with_their_start_and_end() -> None:
    pauses = kafka_gc.parse(LOG.splitlines())
    assert [round(p.ms, 3) for p in pauses] == [8.111, 10.937, 0.014]  # a concurrent phase is not a pause
    assert pauses[0].end == pytest.approx(wall("21:18:36.076"))
    assert pauses[0].start == pytest.approx(wall("21:18:36.076") - 0.008111)


def test_only_the_window_and_rotated_files_too(tmp_path: Path) -> None:
    path = tmp_path / "kafkaServer-gc.log"
    lines = LOG.splitlines()
    (tmp_path / "kafkaServer-gc.log.0").write_text("\n".join(lines[:2]) + "\n")  # the older, rotated half
    path.write_text("\n".join(lines[2:]) + "\n")
    every = kafka_gc.read(path, 0, wall("23:59:59.000"))
    assert [round(p.ms, 3) for p in every] == [8.111, 10.937, 0.014]
    assert [round(p.ms, 3) for p in kafka_gc.read(path, wall("21:18:37.000"), wall("21:18:40.000"))] == [
        10.937
    ]
    assert kafka_gc.read(tmp_path / "absent.log", 0, wall("23:59:59.000")) == []


def test_slow_events_in_flight_during_a_pause_are_counted() -> None:
    [pause] = kafka_gc.parse(LOG.splitlines()[2:3])  # 21:18:39.469 to 21:18:39.480
    slow = [
        (pause.start - 0.005, 0.020),  # sent before, answered after: in flight across it
        (pause.start + 0.002, 0.012),  # sent during it
        (pause.end + 0.001, 0.015),  # sent just after: late from the catch-up, not counted
        (pause.start - 0.050, 0.011),  # done before it began
    ]
    assert kafka_gc.overlapping(slow, [pause]) == 2
    summary = kafka_gc.summary([pause], slow)
    assert summary == {"pauses": 1, "total_ms": 10.9, "max_ms": 10.9, "slow_events": 4, "slow_in_pause": 2}
    assert kafka_gc.summary([], [])["max_ms"] == 0.0
