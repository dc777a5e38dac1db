"""The benchmarks start and write their results (``--smoke``: tiny counts; the numbers mean nothing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_bench_smoke_run_writes_results(kafka: str, tmp_path: Path) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--workers", "1", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=290,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    [results] = tmp_path.glob("*.json")
    doc = json.loads(results.read_text())
    assert doc["errors"] == {}
    assert set(doc["scenarios"]) == {
        "ingress",
        "http_ceiling",
        "kafka_ceiling",
        "end_to_end",
        "drain",
        "drain_baseline",
        "fanout",
        "per_core",
        "eventtypes",
    }
    assert doc["scenarios"]["ingress"]["verification"]["exact"] is True
    assert all(run["lost"] == 0 for run in doc["scenarios"]["end_to_end"]["runs"])
    # A Kafka of the user's (KAFKA_BOOTSTRAP_SERVERS, as here): its GC log is not read, and the table says so.
    assert all(run["kafka_gc"] is None for run in doc["scenarios"]["end_to_end"]["runs"])
    assert "— (not our Kafka)" in results.with_suffix(".md").read_text()
    core = doc["scenarios"]["per_core"]
    assert core["pinned"] is True  # two cores or more: the data plane had one to itself
    # Smoke counts are too small for CPU figures to mean anything (10 ms ticks): they must be there.
    assert core["ingress"]["cpu_s_per_10k"] is not None and core["drain"]["cpu_s_per_10k"] is not None
    assert (
        core["drain"]["lost"] == 0 and core["drain_baseline"]["lost"] == 0 and core["fanout10"]["lost"] == 0
    )
    assert results.with_suffix(".md").read_text().startswith("# keventing benchmark")
    assert "## Per core" in results.with_suffix(".md").read_text()
    listed = doc["scenarios"]["eventtypes"]
    # Every EventType applied is listed (-A also lists those auto-created by the other scenarios' events).
    assert listed["get_eventtypes_one_namespace_rows"] == listed["eventtypes"] == 200
    assert listed["get_eventtypes_all_rows"] >= 200
    assert "`kev get eventtypes` at the auto-create bound" in results.with_suffix(".md").read_text()
