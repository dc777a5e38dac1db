"""KEVENTING_FETCH_MIN_BYTES and KEVENTING_FETCH_MAX_WAIT_MS: the dispatcher's fetches, shared ones too, wait
for that much data or that long, and a fetch that never gets its bytes still answers once the wait is over."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from dispatcher.metrics import METRICS
from dispatcher.settings import DispatcherSettings
from dispatcher.sharedfetch import Attributes, SharedFetch
from keventing.kafka.client import TopicSpec, admin_client, ensure_topic
from keventing.kafka.connection import KafkaConnection


def test_settings_come_from_the_environment_and_bad_values_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert DispatcherSettings().fetch_options == {"fetch_min_bytes": 1, "fetch_max_wait_ms": 100}
    monkeypatch.setenv("KEVENTING_FETCH_MIN_BYTES", "32768")
    monkeypatch.setenv("KEVENTING_FETCH_MAX_WAIT_MS", "3")
    assert DispatcherSettings().fetch_options == {"fetch_min_bytes": 32768, "fetch_max_wait_ms": 3}
    monkeypatch.setenv("KEVENTING_FETCH_MIN_BYTES", "0")
    with pytest.raises(ValidationError, match="KEVENTING_FETCH_MIN_BYTES"):
        DispatcherSettings()


class Recorder:
    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.arrived = asyncio.Event()

    def feed(
        self, partition: TopicPartition, records: Sequence[ConsumerRecord], attributes: Sequence[Attributes]
    ) -> None:
        self.offsets += [record.offset for record in records]
        self.arrived.set()

    def read_alone(self, partition: TopicPartition, offset: int) -> None:
        raise AssertionError("nothing here fails to be fed")


async def test_a_shared_fetch_waits_as_configured_and_still_delivers_what_never_fills_it(kafka: str) -> None:
    topic = f"fetch-settings-{uuid.uuid4().hex[:8]}"
    connection = KafkaConnection(bootstrap_servers=kafka)
    async with admin_client(connection) as admin:
        await ensure_topic(admin, TopicSpec(topic, partitions=1, replication_factor=1))
    # Far more than the one small record ever written: only the wait can answer the fetch.
    fetch = SharedFetch(connection, METRICS, {"fetch_min_bytes": 4 * 1024 * 1024, "fetch_max_wait_ms": 300})
    member = Recorder()
    partition = TopicPartition(topic, 0)
    fetch.start()
    try:
        fetch.attach(partition, member, 0)
        for _ in range(100):
            if fetch.consumer is not None:
                break
            await asyncio.sleep(0.1)
        assert fetch.consumer is not None
        assert (fetch.consumer._fetch_min_bytes, fetch.consumer._fetch_max_wait_ms) == (4 * 1024 * 1024, 300)
        producer = AIOKafkaProducer(bootstrap_servers=kafka)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"small", partition=0)
        finally:
            await producer.stop()
        await asyncio.wait_for(member.arrived.wait(), 15)
        assert member.offsets == [0]
    finally:
        await fetch.stop()
