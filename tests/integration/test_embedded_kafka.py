"""A real embedded Kafka: start a second instance (free ports, tmp data dir), round-trip a record with aiokafka,
stop it, start it again and find the record and the committed offset still there, without Maven running.

Self-contained (no conftest). Uses the shared jar cache, so only the very first run on a machine downloads.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from kev.kafka.embedded import EmbeddedKafka, _port_open, free_port

pytestmark = pytest.mark.integration


def _free_ports() -> tuple[int, int]:
    port = free_port()
    controller_port = free_port()
    while controller_port == port:
        controller_port = free_port()
    return port, controller_port


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, value: bytes) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        metadata = await producer.send_and_wait(topic, value, key=b"k", headers=[("h", b"v")])
        return metadata.offset
    finally:
        await producer.stop()


async def _consume_one(bootstrap: str, topic: str, group: str) -> tuple[bytes, int, list[tuple[str, bytes]]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
        await consumer.commit()
        assert record.value is not None
        return record.value, record.offset, list(record.headers)
    finally:
        await consumer.stop()


async def _committed(bootstrap: str, topic: str, group: str) -> int | None:
    """The group's committed offset; right after a restart the coordinator may need a moment to load it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        for _ in range(100):
            committed = await consumer.committed(TopicPartition(topic, 0))
            if committed is not None:
                return committed
            await asyncio.sleep(0.2)
        return None
    finally:
        await consumer.stop()


async def test_start_produce_consume_stop_restart(tmp_path: Path) -> None:
    port, controller_port = _free_ports()
    data_dir = tmp_path / "kafka"
    messages: list[str] = []

    def make() -> EmbeddedKafka:
        return EmbeddedKafka(
            port=port,
            controller_port=controller_port,
            data_dir=data_dir,
            heap="512m",
            progress=messages.append,
        )

    kafka = make()
    bootstrap = kafka.bootstrap_servers
    topic, group, value = "embedded-test", f"g-{uuid.uuid4().hex[:8]}", b"hello kafka 4"
    try:
        # start() blocks while the JVM boots: keep the event loop free by running it in a thread.
        await asyncio.to_thread(kafka.start, 120.0)
        assert kafka.is_running()
        status = kafka.status()
        assert status["running"] and status["pid"] and status["bootstrap_servers"] == f"127.0.0.1:{port}"
        assert Path(status["log_file"]).is_file()  # log4j2 writes where we pointed it
        assert "Using G1" in kafka.gc_log_file.read_text()  # the JVM's GC log, where bench/ reads pauses
        assert any(message.startswith("Kafka ready in") for message in messages)
        first_pid = status["pid"]

        await asyncio.to_thread(kafka.start)  # idempotent: same data dir already running
        assert kafka.status()["pid"] == first_pid

        await _create_topic(bootstrap, topic)
        assert await _produce(bootstrap, topic, value) == 0
        assert await _consume_one(bootstrap, topic, group) == (value, 0, [("h", b"v")])

        await asyncio.to_thread(kafka.stop)
        assert not kafka.is_running()
        assert not kafka.pid_file.exists()
        assert not _port_open(port)

        # Second start: a fresh object, as a new CLI process would have. Maven must not run, storage must not
        # be re-formatted, and the data (record + committed group offset) must have survived.
        marker = kafka.dist_dir / ".complete"
        resolved_at = marker.stat().st_mtime_ns
        meta = (kafka.log_dirs / "meta.properties").read_text()
        messages.clear()
        kafka = make()
        await asyncio.to_thread(kafka.start, 120.0)
        assert "formatting KRaft storage…" not in messages
        assert not any("resolving" in message for message in messages), messages
        assert marker.stat().st_mtime_ns == resolved_at
        assert (kafka.log_dirs / "meta.properties").read_text() == meta  # same cluster id
        assert kafka.status()["pid"] != first_pid

        assert await _committed(bootstrap, topic, group) == 1
        fresh_group = f"g-{uuid.uuid4().hex[:8]}"
        assert await _consume_one(bootstrap, topic, fresh_group) == (value, 0, [("h", b"v")])
    finally:
        await asyncio.to_thread(kafka.stop)
    assert not kafka.is_running()
