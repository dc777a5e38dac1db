"""The Kafka ceiling: Apache Kafka's own producer benchmark (``org.apache.kafka.tools.ProducerPerformance``)
run from the embedded broker's jars against the same broker.

The tool lives in ``kafka-tools``. kev/kafka/jvm/pom.xml lists it, so a fresh jar cache has it; a cache
resolved before that holds only the broker's jars, and then this module fetches the one missing jar with
Maven (``dependency:copy``, no transitive dependencies: the broker's classpath already has them).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from kev.kafka.embedded import EmbeddedKafka, java_executable

MAIN_CLASS = "org.apache.kafka.tools.ProducerPerformance"
_SUMMARY = re.compile(
    r"(?P<records>\d+) records sent, (?P<rate>[\d.]+) records/sec \((?P<mb>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th, (?P<p999>\d+) ms 99.9th"
)


def classpath(kafka: EmbeddedKafka) -> list[Path]:
    """The broker's jars plus kafka-tools, fetching that jar once if the cache predates it."""
    jars = kafka.ensure_jars()
    tools = f"kafka-tools-{kafka.version}.jar"
    if any(jar.name == tools for jar in jars):
        return jars
    extra = kafka.dist_dir / "bench-tools"
    if not (extra / tools).is_file():
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError(f"{tools} is not cached and Maven is not on PATH to fetch it")
        extra.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy",
                f"-Dartifact=org.apache.kafka:kafka-tools:{kafka.version}",
                f"-DoutputDirectory={extra}",
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return [*jars, extra / tools]


def producer_performance(
    kafka: EmbeddedKafka, bootstrap: str, topic: str, records: int, size: int = 1024
) -> dict[str, object]:
    """Run ProducerPerformance with acks=all (and the tool's defaults otherwise); its summary as a dict."""
    cp = ":".join(str(jar) for jar in classpath(kafka))
    cmd = [
        java_executable(),
        "-Xmx512m",
        "-cp",
        cp,
        MAIN_CLASS,
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--record-size",
        str(size),
        "--throughput",
        "-1",
        "--producer-props",
        f"bootstrap.servers={bootstrap}",
        "acks=all",
        "enable.idempotence=true",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    match = None
    for line in result.stdout.splitlines():
        match = _SUMMARY.search(line) or match
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"ProducerPerformance failed ({result.returncode}): {result.stderr[-2000:]}")
    return {
        "tool": MAIN_CLASS,
        "records": int(match["records"]),
        "rate": float(match["rate"]),
        "mb_per_s": float(match["mb"]),
        "latency_ms": {
            "avg": float(match["avg"]),
            "p50": float(match["p50"]),
            "p99": float(match["p99"]),
            "p99.9": float(match["p999"]),
            "max": float(match["max"]),
        },
        "props": {"acks": "all", "enable.idempotence": "true", "record.size": size},
    }
