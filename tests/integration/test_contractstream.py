"""Following the contract: the first batch after a connect is the whole contract, without deleted entries,
and only what the controller signed is applied."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from keventing.contract import ContractEntry, Ingress
from keventing.contractauth import ContractKeys, new_key
from keventing.contractstream import follow_contract
from keventing.kafka.compacted import CompactedTopic

KEYS = ContractKeys([new_key().encode()])


def _entry(name: str, topic: str = "t") -> ContractEntry:
    ingress = Ingress(
        id=f"Broker/ns/{name}", kind="Broker", namespace="ns", name=name, path=f"/ns/{name}", topic=topic
    )
    return ContractEntry(ingress=ingress)


async def _signed(table: CompactedTopic, key: str, value: bytes | None) -> None:
    await table.put(key, value, KEYS.headers(table.topic, key, value))


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_snapshot_then_changes(kafka: str) -> None:
    topic = f"contract-{uuid.uuid4().hex[:8]}"
    table = CompactedTopic(kafka, topic)
    await table.ensure()
    for name in ("a", "b"):
        await _signed(table, f"Broker/ns/{name}", _entry(name).encode())
    await _signed(table, "Broker/ns/a", None)
    await _signed(table, "Broker/ns/bad", b'{"version": 99}')
    batches: list[tuple[dict, bool]] = []

    async def on_batch(changes: dict[str, ContractEntry | None], snapshot: bool) -> None:
        batches.append((changes, snapshot))

    follower = asyncio.create_task(
        follow_contract(kafka, topic, on_batch, KEYS, registry=CollectorRegistry())
    )
    try:
        await _until(lambda: bool(batches))
        changes, snapshot = batches[0]
        assert snapshot
        assert set(changes) == {"Broker/ns/b"}  # the deleted one and the unreadable one are absent
        await _signed(table, "Broker/ns/b", None)
        await _until(lambda: len(batches) > 1)
        assert batches[1] == ({"Broker/ns/b": None}, False)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await table.stop()


async def test_records_the_controller_did_not_sign_are_not_applied_and_are_counted(kafka: str) -> None:
    """A forged value (unsigned, or tagged with another key) and an unsigned tombstone, produced by a plain
    Kafka client: the follower keeps the signed version of the key, in the snapshot and afterwards."""
    topic = f"contract-{uuid.uuid4().hex[:8]}"
    table = CompactedTopic(kafka, topic)
    await table.ensure()
    real = _entry("a")
    await _signed(table, "Broker/ns/a", real.encode())
    producer = AIOKafkaProducer(bootstrap_servers=kafka)
    await producer.start()
    forged = _entry("a", topic="attacker").encode()
    other_key = ContractKeys([new_key().encode()]).headers(topic, "Broker/ns/a", forged)
    await producer.send_and_wait(topic, forged, key=b"Broker/ns/a", partition=0)
    await producer.send_and_wait(topic, forged, key=b"Broker/ns/a", partition=0, headers=other_key)
    await producer.send_and_wait(topic, forged, key=b"Broker/ns/new", partition=0)
    batches: list[tuple[dict, bool]] = []
    registry = CollectorRegistry()

    async def on_batch(changes: dict[str, ContractEntry | None], snapshot: bool) -> None:
        batches.append((changes, snapshot))

    def rejected(reason: str) -> float | None:
        return registry.get_sample_value("keventing_contract_rejected_total", {"reason": reason})

    follower = asyncio.create_task(follow_contract(kafka, topic, on_batch, KEYS, registry=registry))
    try:
        await _until(lambda: bool(batches))
        assert batches[0] == ({"Broker/ns/a": real}, True)
        assert rejected("unsigned") == 2
        assert rejected("bad-tag") == 1
        await producer.send_and_wait(topic, None, key=b"Broker/ns/a", partition=0)  # an unsigned tombstone
        await producer.send_and_wait(topic, forged, key=b"Broker/ns/a", partition=0)
        changed = _entry("a", topic="t2")
        await _signed(table, "Broker/ns/a", changed.encode())
        await _until(lambda: any("Broker/ns/a" in changes for changes, _ in batches[1:]))
        assert [changes for changes, _ in batches[1:] if changes] == [{"Broker/ns/a": changed}]
        assert rejected("unsigned") == 4
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await producer.stop()
        await table.stop()
