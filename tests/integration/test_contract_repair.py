"""The controller repairs its contract topic: whatever else writes a record there, forged, unsigned, a replay
or signed with a retired key, the last record of the key is soon the controller's own, signed version."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from controller.contracttopic import ContractTopic
from controller.dataplane import KafkaDataPlane
from keventing.contract import ContractEntry, Ingress
from keventing.contractauth import ContractKeys, new_key
from keventing.kafka.compacted import CompactedTopic, Record
from keventing.settings import CommonSettings

REPAIR_SECONDS = 10.0


def _entry(name: str, topic: str) -> ContractEntry:
    ingress = Ingress(
        id=f"Broker/ns/{name}", kind="Broker", namespace="ns", name=name, path=f"/ns/{name}", topic=topic
    )
    return ContractEntry(ingress=ingress)


async def _last_records(kafka: str, topic: str) -> dict[str, Record]:
    table = CompactedTopic(kafka, topic)
    return {record.key: record for record in await table.records()}


async def _until_repaired(
    kafka: str, topic: str, keys: ContractKeys, wanted: Mapping[str, bytes | None]
) -> None:
    """Until the last record of each key in ``wanted`` has that value (None: a tombstone) and a tag of
    ``keys``' signing key."""
    signer = ContractKeys(keys.keys[:1])
    deadline = time.monotonic() + REPAIR_SECONDS
    while True:
        last = await _last_records(kafka, topic)
        done = all(
            key in last
            and last[key].value == value
            and signer.verify(topic, key, value, last[key].headers) is None
            for key, value in wanted.items()
        )
        if done:
            return
        assert time.monotonic() < deadline, f"not repaired after {REPAIR_SECONDS} s: {last}"
        await asyncio.sleep(0.2)


async def test_the_controller_overwrites_forged_records_and_unsigned_tombstones(kafka: str) -> None:
    settings = CommonSettings(  # type: ignore[call-arg]
        KAFKA_BOOTSTRAP_SERVERS=kafka, KEVENTING_INSTANCE=f"repair-{uuid.uuid4().hex[:8]}"
    )
    keys = settings.contract_keys()
    topic = settings.contract_topic
    data_plane = KafkaDataPlane(settings)
    await data_plane.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka)
    await producer.start()
    try:
        a, b = _entry("a", "t-a"), _entry("b", "t-b")
        await data_plane.publish_contract({a.id: a, b.id: b})
        forged = _entry("a", "attacker").encode()
        await producer.send_and_wait(topic, forged, key=a.id.encode(), partition=0)
        await producer.send_and_wait(topic, None, key=b.id.encode(), partition=0)
        other = ContractKeys([new_key().encode()])
        evil = "Broker/ns/evil"
        await producer.send_and_wait(
            topic, forged, key=evil.encode(), partition=0, headers=other.headers(topic, evil, forged)
        )
        await _until_repaired(kafka, topic, keys, {a.id: a.encode(), b.id: b.encode(), evil: None})
        # A replay of a record the controller once signed is not its contract either.
        old_b = await _last_records(kafka, topic)
        changed = _entry("b", "t-b2")
        await data_plane.publish_contract({a.id: a, b.id: changed})
        replay = old_b[b.id]
        await producer.send_and_wait(
            topic, replay.value, key=b.id.encode(), partition=0, headers=list(replay.headers)
        )
        await _until_repaired(kafka, topic, keys, {b.id: changed.encode()})
        assert data_plane.published_contract == {a.id: a.encode(), b.id: changed.encode()}
    finally:
        await producer.stop()
        await data_plane.stop()


async def test_records_signed_with_a_retired_key_are_signed_again_with_the_current_one(kafka: str) -> None:
    topic = f"contract-{uuid.uuid4().hex[:8]}"
    old, new = new_key().encode(), new_key().encode()
    entry = _entry("a", "t-a")
    before = ContractTopic(CompactedTopic(kafka, topic), ContractKeys([old]), CollectorRegistry())
    await before.load()
    await before.publish({entry.id: entry.encode()})
    await before.table.stop()
    registry = CollectorRegistry()
    rotated = ContractTopic(CompactedTopic(kafka, topic), ContractKeys([new, old]), registry)
    await rotated.load()
    assert rotated.published == {entry.id: entry.encode()}  # the old key still verifies
    repair = asyncio.create_task(rotated.repair())
    try:
        await _until_repaired(kafka, topic, ContractKeys([new]), {entry.id: entry.encode()})
        assert registry.get_sample_value("keventing_contract_repaired_total", {"reason": "old-key"}) == 1
    finally:
        repair.cancel()
        await asyncio.gather(repair, return_exceptions=True)
        await rotated.table.stop()


async def test_a_contract_from_before_signing_is_taken_as_published_and_signed(kafka: str) -> None:
    topic = f"contract-{uuid.uuid4().hex[:8]}"
    entry = _entry("a", "t-a")
    legacy = CompactedTopic(kafka, topic)
    await legacy.ensure()
    await legacy.put(entry.id, entry.encode())  # as a controller from before contract signing wrote it
    await legacy.stop()
    keys = ContractKeys([new_key().encode()])
    registry = CollectorRegistry()
    upgraded = ContractTopic(CompactedTopic(kafka, topic), keys, registry)
    await upgraded.load()
    assert upgraded.published == {entry.id: entry.encode()}
    repair = asyncio.create_task(upgraded.repair())
    try:
        await _until_repaired(kafka, topic, keys, {entry.id: entry.encode()})
        assert registry.get_sample_value("keventing_contract_repaired_total", {"reason": "adopted"}) == 1
    finally:
        repair.cancel()
        await asyncio.gather(repair, return_exceptions=True)
        await upgraded.table.stop()
